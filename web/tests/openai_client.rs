//! The official `openai` Python package as a client of the OpenAI-compatible endpoints
//! (`web/tests/openai_client.py`). scripts/test.sh makes the virtualenv
//! (`~/.cache/atelier/venv-openai`, or `ATELIER_OPENAI_PYTHON`) and sets
//! `ATELIER_REQUIRE_CLIENTS=1`; without the package the test says so and skips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use support::{TestServer, agent_config, scripted, server_config};

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("ATELIER_OPENAI_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cache/atelier/venv-openai/bin/python"))
        })?;
    let ok = std::process::Command::new(&path)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_python_client_generates_and_chats() {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("ATELIER_REQUIRE_CLIENTS").is_none(),
            "the openai client test is required but no Python with `openai` was found"
        );
        eprintln!("SKIPPED the openai client test: no Python with the `openai` package");
        return;
    };
    let server = TestServer::start(
        Arc::new(scripted(Duration::ZERO)),
        agent_config(),
        server_config(),
    )
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let run = tokio::process::Command::new(python)
        .arg(script)
        .arg(server.url("/v1"))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the openai client took over 180 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}\n{stderr}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{stdout}"
    );
    server.stop().await;
}
