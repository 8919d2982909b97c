//! The chat UI in a real browser: Playwright (`playwright-core` from npm) drives Debian's
//! Chromium against a server on port 0 (`web/tests/browser/chat.mjs` holds the steps).
//! Screenshots go to `runs/test-artifacts/`. Without node, the npm package or Chromium the test
//! says so and skips, unless `ATELIER_REQUIRE_BROWSER=1` (set by scripts/test.sh, which
//! installs them) makes that a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use support::{TestServer, agent_config, scripted, server_config};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn missing_tools() -> Option<String> {
    let dir = repo().join("web/tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Some(format!(
            "no playwright-core in {} (npm ci there)",
            dir.display()
        ));
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !PathBuf::from(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("no node".into());
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_ui_takes_a_brief_asks_shows_progress_and_the_image() {
    if let Some(why) = missing_tools() {
        assert!(
            std::env::var_os("ATELIER_REQUIRE_BROWSER").is_none(),
            "browser test required but {why}"
        );
        eprintln!("SKIPPED the browser test: {why}");
        return;
    }
    let agent = atelier_agent::AgentConfig {
        width: 128,
        height: 128,
        steps: 8,
        ..agent_config()
    };
    let server = TestServer::start(
        Arc::new(scripted(Duration::from_millis(300))),
        agent,
        server_config(),
    )
    .await;
    let out = repo().join("runs/test-artifacts");
    std::fs::create_dir_all(&out).unwrap();
    let url = server.url("/");
    let dir = repo().join("web/tests/browser");
    let run = tokio::process::Command::new("node")
        .arg("chat.mjs")
        .arg(&url)
        .arg(&out)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test took over 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "the browser steps failed:\n{stdout}\n{stderr}"
    );
    assert!(out.join("chat-finished.png").is_file());
    server.stop().await;
}
