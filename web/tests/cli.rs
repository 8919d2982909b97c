//! The `atelier` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The shared model cache the test command fills.
fn models_dir() -> PathBuf {
    match std::env::var_os("ATELIER_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/atelier/models"),
    }
}

/// `atelier` with a clean environment: its own data dir, the given model cache, no overrides.
fn atelier(home: &Path, models: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atelier"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ATELIER") {
            cmd.env_remove(key);
        }
    }
    cmd.env("ATELIER_HOME", home)
        .env("ATELIER_MODELS", models)
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    (output, stdout, stderr)
}

#[test]
fn models_list_shows_every_card_and_its_cache_state() {
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(atelier(home.path(), home.path()).args(["models", "list"]));
    assert!(out.status.success(), "{stderr}");
    for name in [
        "smollm2-135m-instruct",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
        "all-minilm-l6-v2",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{stdout}"));
        assert!(
            line.contains(" no "),
            "nothing is cached in an empty dir: {line}"
        );
        assert!(line.contains("Apache-2.0"), "{line}");
    }
    let (out, stdout, _) =
        run(atelier(home.path(), home.path()).args(["models", "list", "--json"]));
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let smol = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "smollm2-135m-instruct")
        .unwrap();
    assert_eq!(
        smol["files"][0]["sha256"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    assert_eq!(smol["installed"], false);
}

#[test]
fn pulling_an_unknown_model_names_the_known_ones() {
    let home = tempfile::tempdir().unwrap();
    let (out, _, stderr) =
        run(atelier(home.path(), home.path()).args(["models", "pull", "gpt-17"]));
    assert!(!out.status.success());
    assert!(stderr.contains("unknown model `gpt-17`"), "{stderr}");
    assert!(stderr.contains("smollm2-135m-instruct"), "{stderr}");
    assert!(
        std::fs::read_dir(home.path()).unwrap().next().is_none(),
        "nothing was written"
    );
}

#[test]
fn invalid_settings_fail_at_start_with_key_value_and_range() {
    let home = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(atelier(home.path(), home.path())
        .env("ATELIER__LLM__PARALLEL", "0")
        .args(["models", "list"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("llm.parallel") && stderr.contains("1..=64"),
        "{stderr}"
    );
    // A database URL of another engine names the key and what is allowed, password hidden.
    let (out, _, stderr) = run(atelier(home.path(), home.path())
        .env(
            "ATELIER__DATABASE__URL",
            "mysql://atelier:hunter2@db/atelier",
        )
        .args(["models", "list"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("database.url")
            && stderr.contains("postgres://")
            && !stderr.contains("hunter2"),
        "{stderr}"
    );

    std::fs::write(
        home.path().join("atelier.toml"),
        "[llm]\nbackend = \"gpt\"\n",
    )
    .unwrap();
    let (out, _, stderr) = run(atelier(home.path(), home.path()).args(["models", "list"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("gpt") && stderr.contains("atelier.toml"),
        "{stderr}"
    );
}

#[test]
fn an_interrupted_pull_leaves_nothing_half_written_and_the_next_pull_succeeds() {
    let home = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let model_dir = cache.path().join("smollm2-135m-instruct");
    let final_file = model_dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");

    let mut child = atelier(home.path(), cache.path())
        .args(["models", "pull", "smollm2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while it writes the model file.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let writing = std::fs::read_dir(&model_dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.starts_with(".partial-SmolLM2")
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            });
        if writing {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "the pull never started writing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !final_file.exists(),
        "a killed pull must not leave the model file"
    );

    let (out, _, stderr) =
        run(atelier(home.path(), cache.path()).args(["models", "pull", "smollm2"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(std::fs::metadata(&final_file).unwrap().len(), 98_362_432);
    let names: Vec<String> = std::fs::read_dir(&model_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        vec!["SmolLM2-135M-Instruct.Q4_1.gguf".to_string()],
        "leftovers were swept"
    );
}

#[test]
fn chat_with_a_schema_prints_one_valid_json_value() {
    let home = tempfile::tempdir().unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "headline": {"type": "string", "maxLength": 50},
            "palette": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 2, "maxItems": 3}
        },
        "required": ["headline", "palette"]
    });
    let schema_path = home.path().join("banner.schema.json");
    std::fs::write(&schema_path, schema.to_string()).unwrap();
    let (out, stdout, stderr) = run(atelier(home.path(), &models_dir())
        .env("ATELIER__LLM__MODEL", "smollm2")
        .args([
            "chat",
            "A headline and palette for a summer sale banner",
            "--schema",
        ])
        .arg(&schema_path)
        .args(["--seed", "3", "--max-tokens", "200"]));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    let value: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(jsonschema::is_valid(&schema, &value), "{value}");
}

#[test]
fn chat_streams_plain_text_and_reports_stats() {
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(atelier(home.path(), &models_dir())
        .env("ATELIER__LLM__MODEL", "smollm2")
        .args([
            "chat",
            "Say hello to Atelier's users.",
            "--max-tokens",
            "16",
            "--stats",
        ]));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(
        stderr.contains("generated") && stderr.contains("tok/s"),
        "{stderr}"
    );
}

#[test]
fn chat_with_a_model_that_is_not_pulled_says_how_to_get_it() {
    let home = tempfile::tempdir().unwrap();
    let (out, _, stderr) = run(atelier(home.path(), home.path())
        .env("ATELIER__LLM__MODEL", "qwen1.5b")
        .args(["chat", "hi"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("atelier models pull qwen2.5-coder-1.5b-instruct"),
        "{stderr}"
    );
}

#[test]
fn chat_rejects_a_bad_schema_file_before_loading_anything() {
    let home = tempfile::tempdir().unwrap();
    let schema_path = home.path().join("bad.json");
    std::fs::write(&schema_path, "{ not json").unwrap();
    let (out, _, stderr) = run(atelier(home.path(), home.path())
        .args(["chat", "hi", "--schema"])
        .arg(&schema_path));
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.json") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn config_shows_effective_settings_with_secrets_masked() {
    let home = tempfile::tempdir().unwrap();
    let (out, stdout, stderr) = run(atelier(home.path(), home.path())
        .env("ATELIER__LLM__OPENAI__API_KEY", "sk-very-secret")
        .env("ATELIER__LLM__THREADS", "2")
        .arg("config"));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("threads = 2"), "{stdout}");
    assert!(stdout.contains("[llm.openai]"), "{stdout}");
    assert!(
        !stdout.contains("sk-very-secret"),
        "the key leaked: {stdout}"
    );
    assert!(stdout.contains("********"), "{stdout}");
}

#[test]
fn tiny_data_writes_a_grid_and_captions() {
    let home = tempfile::tempdir().unwrap();
    let grid = home.path().join("grid.png");
    let (out, stdout, stderr) = run(atelier(home.path(), home.path())
        .args(["train", "tiny-data", "--count", "8", "--out"])
        .arg(&grid));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 8, "{stdout}");
    let image = image::open(&grid).unwrap();
    assert_eq!(
        (image.width(), image.height()),
        (8 * 64 + 9 * 2, 64 + 2 * 2)
    );
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn generate_with_the_bundled_model_is_deterministic() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let mut images = Vec::new();
    for run_no in 0..2 {
        let out = home.path().join(format!("out{run_no}"));
        let (status, stdout, stderr) = run(atelier(home.path(), &models)
            .args([
                "generate",
                "a navy background with gold confetti",
                "--model",
                "tiny",
            ])
            .args(["--size", "128x128", "--steps", "4", "--seed", "3", "--out"])
            .arg(&out));
        assert!(status.status.success(), "{stderr}");
        let path = PathBuf::from(stdout.lines().next().unwrap().trim());
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (128, 128));
        images.push(image);
    }
    assert_eq!(images[0], images[1], "same seed, same bytes");

    let (status, _, stderr) =
        run(atelier(home.path(), &models).args(["generate", "x", "--model", "qwen"]));
    assert!(!status.status.success());
    assert!(
        stderr.contains("not an image model") && stderr.contains("atelier-tiny"),
        "{stderr}"
    );
}

#[test]
fn brands_ingest_search_list_and_delete() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let kit = repo().join("examples/brands/voltline");
    let (out, stdout, stderr) = run(atelier(home.path(), &models)
        .args(["brands", "ingest", "--tenant", "acme"])
        .arg(&kit));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("acme/voltline:") && stdout.contains("new or changed"),
        "{stdout}"
    );
    // The names the docs use are aliases of the same commands.
    let (_, again, _) = run(atelier(home.path(), &models)
        .args(["brand", "add", "--tenant", "acme"])
        .arg(&kit));
    assert!(again.contains("(0 new or changed, 0 removed"), "{again}");

    let (out, stdout, stderr) = run(atelier(home.path(), &models)
        .args(["brand", "show", "voltline", "--tenant", "acme", "--json"]));
    assert!(out.status.success(), "{stderr}");
    let shown: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["kit"]["name"], "Voltline", "{stdout}");
    assert!(
        shown["kit"]["palette"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["hex"] == "#FFD23F"),
        "{stdout}"
    );
    assert!(shown["passages"].as_u64().unwrap() > 20, "{stdout}");
    let (_, text, _) =
        run(atelier(home.path(), &models).args(["brand", "show", "voltline", "--tenant", "acme"]));
    assert!(
        text.contains("palette:") && text.contains("#FFD23F"),
        "{text}"
    );

    let (out, stdout, stderr) = run(atelier(home.path(), &models).args([
        "brands",
        "search",
        "voltline",
        "what must riders wear",
        "--tenant",
        "acme",
        "--k",
        "3",
        "--json",
    ]));
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["kit"]["brand"], "voltline", "{stdout}");
    let passages = v["passages"].as_array().unwrap();
    assert_eq!(passages.len(), 3);
    assert!(
        passages
            .iter()
            .any(|p| p["text"].as_str().unwrap().contains("helmet")),
        "{stdout}"
    );

    let (_, listed, _) =
        run(atelier(home.path(), &models).args(["brands", "list", "--tenant", "acme"]));
    assert!(
        listed.starts_with("voltline\t") && listed.contains("passages"),
        "{listed}"
    );

    // Another tenant sees nothing; a bad top-k names the field.
    let (out, _, stderr) = run(atelier(home.path(), &models).args([
        "brands", "search", "voltline", "helmet", "--tenant", "other",
    ]));
    assert!(
        !out.status.success() && stderr.contains("`brand`"),
        "{stderr}"
    );
    let (out, _, stderr) = run(atelier(home.path(), &models).args([
        "brands", "search", "voltline", "helmet", "--tenant", "acme", "--top-k", "50",
    ]));
    assert!(
        !out.status.success() && stderr.contains("`top_k`") && stderr.contains("1..=10"),
        "{stderr}"
    );

    // A broken kit fails with file, line and field, and changes nothing.
    let broken = home.path().join("kits/voltline");
    std::fs::create_dir_all(broken.join("guidelines")).unwrap();
    std::fs::copy(kit.join("logo.svg"), broken.join("logo.svg")).unwrap();
    let toml = std::fs::read_to_string(kit.join("brand.toml"))
        .unwrap()
        .replace("#FFD23F", "#FFD23");
    std::fs::write(broken.join("brand.toml"), toml).unwrap();
    let (out, _, stderr) = run(atelier(home.path(), &models)
        .args(["brands", "ingest", "--tenant", "acme"])
        .arg(&broken));
    assert!(!out.status.success());
    assert!(
        stderr.contains("brand.toml:") && stderr.contains("palette[2].hex"),
        "{stderr}"
    );
    let (_, listed_after, _) =
        run(atelier(home.path(), &models).args(["brands", "list", "--tenant", "acme"]));
    assert_eq!(listed, listed_after);

    let (out, stdout, stderr) = run(
        atelier(home.path(), &models).args(["brand", "remove", "voltline", "--tenant", "acme"])
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed"), "{stdout}");
    let (_, listed, _) =
        run(atelier(home.path(), &models).args(["brands", "list", "--tenant", "acme"]));
    assert!(listed.contains("no brands stored"), "{listed}");
}

#[test]
fn brief_runs_the_agent_and_prints_one_json_event_per_line() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let kit = repo().join("examples/brands/solstice");
    let (out, _, stderr) = run(atelier(home.path(), &models)
        .args(["brand", "add"])
        .arg(&kit));
    assert!(out.status.success(), "{stderr}");
    let brief = |cmd: &mut Command| {
        cmd.env("ATELIER__LLM__THREADS", "2")
            .env("ATELIER__AGENT__WIDTH", "64")
            .env("ATELIER__AGENT__HEIGHT", "64")
            .env("ATELIER__AGENT__MAX_ITERATIONS", "1")
            .env("ATELIER__AGENT__MAX_VARIANTS", "2");
    };
    // First process: asks, gets its answer, starts generating, and is stopped with SIGINT.
    let mut first = atelier(home.path(), &models);
    brief(&mut first);
    let mut child = first
        .args([
            "brief",
            "Make something.",
            "--answer",
            "a ceramic cup of coffee on a wooden table",
            "--out",
            "images",
            "--json",
        ])
        .stdout(Stdio::piped())
        // To a file: an unread stderr pipe could fill up and block the process.
        .stderr(std::fs::File::create(home.path().join("first.err")).unwrap())
        .spawn()
        .unwrap();
    let mut before = Vec::new();
    {
        use std::io::BufRead;
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines {
            let line = line.unwrap();
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            let kind = event["type"].as_str().unwrap().to_string();
            before.push(kind.clone());
            if kind == "tool_call" && !before.iter().any(|k| k == "stopped") {
                before.push("stopped".into());
                let interrupted = Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status()
                    .unwrap();
                assert!(interrupted.success());
            }
        }
    }
    let status = child.wait().unwrap();
    let first_err = std::fs::read_to_string(home.path().join("first.err")).unwrap();
    assert!(!status.success(), "stopped early: {first_err}");
    assert!(before.contains(&"question".to_string()), "{before:?}");
    let id = first_err
        .lines()
        .find_map(|l| l.strip_prefix("session "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session id in {first_err}"))
        .to_string();
    assert!(
        first_err.contains(&format!(
            "stopped; the session is saved: continue it with `atelier brief --resume {id}`"
        )),
        "{first_err}"
    );

    // Second process: continues the stored session to the end.
    let mut second = atelier(home.path(), &models);
    brief(&mut second);
    let (out, stdout, stderr) =
        run(second.args(["brief", "--resume", &id, "--out", "images", "--json"]));
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert!(
        stderr.contains(&format!("resuming session {id}")),
        "{stderr}"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(
        !types.contains(&"question"),
        "answered before the stop: {types:?}"
    );
    for t in ["tool_call", "tool_result", "image", "critique", "final"] {
        assert!(types.contains(&t), "no {t} in {types:?}");
    }
    assert_eq!(types.last(), Some(&"final"));
    let last = events.last().unwrap();
    let image = last["images"][0]["uri"].as_str().unwrap();
    assert!(
        home.path().join(image).is_file() || Path::new(image).is_file(),
        "{image}"
    );
    assert!(!last["message"].as_str().unwrap().is_empty());

    // The session is stored as done: it cannot be resumed again; an unknown id is refused.
    let (out, _, stderr) = run(atelier(home.path(), &models).args(["brief", "--resume", &id]));
    assert!(!out.status.success());
    assert!(stderr.contains("already ended (done)"), "{stderr}");
    let (out, _, stderr) =
        run(atelier(home.path(), &models).args(["brief", "--resume", "no-such-session"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("no stored session `no-such-session`"),
        "{stderr}"
    );
    assert!(home.path().join("atelier.db").is_file());

    // A brand that is not stored is refused before any work, naming the field.
    let (out, _, stderr) =
        run(atelier(home.path(), &models).args(["brief", "a cup", "--brand", "nobody"]));
    assert!(!out.status.success());
    assert!(
        stderr.contains("`brand`") && stderr.contains("solstice"),
        "{stderr}"
    );
}

#[test]
fn critique_reports_each_check_and_refuses_unreadable_images_clearly() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let (out, _, err) = run(atelier(home.path(), &models)
        .args(["brands", "ingest"])
        .arg(repo().join("examples/brands/solstice")));
    assert!(out.status.success(), "{err}");
    let dir = tempfile::tempdir().unwrap();
    // On brand: Crema ground with an Ember disc (both Solstice palette colours).
    let crema = [0xF5, 0xE6, 0xCC];
    let ember = [0xD9, 0x48, 0x0F];
    let on_brand = image::RgbImage::from_fn(128, 128, |x, y| {
        let (dx, dy) = (x as f32 - 64.0, y as f32 - 64.0);
        image::Rgb(if dx * dx + dy * dy < 1200.0 {
            ember
        } else {
            crema
        })
    });
    let good = dir.path().join("good.png");
    on_brand.save(&good).unwrap();
    let (out, stdout, err) = run(atelier(home.path(), &models)
        .arg("critique")
        .arg(&good)
        .args([
            "--brand",
            "solstice",
            "--brief",
            "a warm autumn post",
            "--json",
        ])
        .args(["--colour", "crema", "--colour", "#D9480F"]));
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "technical",
        "requested_colours",
        "brand_palette",
        "forbidden_colours",
        "safety",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let check = |r: &serde_json::Value, name: &str| {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(check(&report, "brand_palette")["passed"], true, "{report}");
    // The pixels were classified by open_nsfw (the model cache has it).
    let safety = check(&report, "safety");
    assert_eq!(safety["passed"], true, "{report}");
    assert!(
        safety["detail"].as_str().unwrap().contains("open_nsfw 0."),
        "{safety}"
    );
    assert_eq!(
        check(&report, "requested_colours")["passed"],
        true,
        "{report}"
    );

    // Off brand: a pure green image asked to show Ember fails with a fix, and --fail exits 1.
    let green = image::RgbImage::from_pixel(128, 128, image::Rgb([20, 200, 40]));
    let bad = dir.path().join("bad.png");
    green.save(&bad).unwrap();
    let (out, stdout, _) = run(atelier(home.path(), &models)
        .arg("critique")
        .arg(&bad)
        .args(["--brand", "solstice", "--colour", "ember", "--fail"]));
    assert!(!out.status.success());
    assert!(stdout.starts_with("FAIL"), "{stdout}");
    assert!(stdout.contains("fix:"), "{stdout}");

    // Unknown colour and brand name what is allowed.
    let (out, _, err) = run(atelier(home.path(), &models)
        .arg("critique")
        .arg(&good)
        .args(["--brand", "solstice", "--colour", "glitter"]));
    assert!(!out.status.success());
    assert!(err.contains("glitter") && err.contains("Crema"), "{err}");
    let (out, _, err) = run(atelier(home.path(), &models)
        .arg("critique")
        .arg(&good)
        .args(["--brand", "nope"]));
    assert!(!out.status.success());
    assert!(err.contains("known: solstice"), "{err}");

    // Garbage: a corrupt PNG, a file that is not an image, an image over 40 megapixels.
    let corrupt = dir.path().join("corrupt.png");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes).unwrap();
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").unwrap();
    let huge = dir.path().join("huge.png");
    image::GrayImage::new(8000, 6250).save(&huge).unwrap();
    for (path, expect) in [
        (&corrupt, "corrupt or truncated"),
        (&text, "not a PNG or JPEG"),
        (&huge, "50.0 megapixels"),
    ] {
        let (out, _, err) = run(atelier(home.path(), &models).arg("critique").arg(path));
        assert!(!out.status.success(), "{}", path.display());
        assert!(err.contains(expect), "{}: {err}", path.display());
    }
}

#[test]
fn eval_compare_and_report_gate_on_a_planted_regression() {
    let home = tempfile::tempdir().unwrap();
    let baseline = repo().join("evals/baselines/smoke");
    // Plant a regression in a copy of the baseline: fewer sessions completed.
    let planted = home.path().join("planted");
    std::fs::create_dir_all(&planted).unwrap();
    let mut results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(baseline.join("results.json")).unwrap())
            .unwrap();
    let completed = results["summary"]["completed"]["mean"].as_f64().unwrap();
    results["summary"]["completed"]["mean"] = serde_json::json!(completed - 0.25);
    std::fs::write(
        planted.join("results.json"),
        serde_json::to_string(&results).unwrap(),
    )
    .unwrap();

    let models = models_dir();
    let compare = |dir: &Path, extra: &[&str]| {
        let mut cmd = atelier(home.path(), &models);
        cmd.args(["eval", "compare"])
            .arg(dir)
            .arg(&baseline)
            .args(extra);
        run(&mut cmd)
    };
    let (out, stdout, stderr) = compare(&planted, &[]);
    assert!(!out.status.success(), "a regression must fail:\n{stdout}");
    assert!(
        stderr.contains("1 regression(s)") && stderr.contains("completed: fell from"),
        "{stderr}"
    );
    assert!(stdout.contains("REGRESSED"), "{stdout}");
    // The baseline against itself passes; a loose threshold lets the planted run through.
    let (out, stdout, stderr) = compare(&baseline, &[]);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("no regression"), "{stdout}");
    let (out, _, stderr) = compare(&planted, &["--threshold", "completed=0.3"]);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = compare(&planted, &["--threshold", "completed"]);
    assert!(!out.status.success());
    assert!(stderr.contains("NAME=VALUE"), "{stderr}");

    // The report of the planted run names the regression too, and exits non-zero.
    let (out, stdout, stderr) = run(atelier(home.path(), &models)
        .args(["eval", "report"])
        .arg(&planted)
        .arg("--baseline")
        .arg(&baseline));
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("completed"), "{stderr}");
    let html = std::fs::read_to_string(planted.join("report.html")).unwrap();
    assert!(
        html.contains("1 regression(s) against the baseline"),
        "report lacks the banner"
    );

    // Not a results file: a clear error naming it.
    std::fs::write(home.path().join("bad.json"), "{}").unwrap();
    let (out, _, stderr) = compare(&home.path().join("bad.json"), &[]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.json") && stderr.contains("not an Atelier results file"),
        "{stderr}"
    );
}

#[test]
fn eval_run_refuses_a_bad_suite_before_loading_models() {
    let home = tempfile::tempdir().unwrap();
    let suite = home.path().join("bad.toml");
    std::fs::write(
        &suite,
        "name = 'x'\n[[case]]\nid = 'a'\nbrief = 'b'\n[case.expect]\nchannel = 'tv'\n",
    )
    .unwrap();
    let (out, _, stderr) = run(atelier(home.path(), home.path())
        .args(["eval", "run"])
        .arg(&suite));
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("expect.channel")
            && stderr.contains("landscape"),
        "{stderr}"
    );
}

#[test]
fn post_resize_crops_to_a_preset_around_the_subject_and_refuses_bad_input() {
    let home = tempfile::tempdir().unwrap();
    // A beige square with a detailed block on the left edge.
    let img = image::RgbImage::from_fn(300, 300, |x, y| {
        if x < 80 && (100..200).contains(&y) {
            image::Rgb(if (x / 5 + y / 5) % 2 == 0 {
                [20, 40, 90]
            } else {
                [230, 120, 30]
            })
        } else {
            image::Rgb([240, 228, 204])
        }
    });
    let input = home.path().join("in.png");
    img.save(&input).unwrap();
    let out = home.path().join("out/story.jpg");
    let (status, stdout, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "resize"])
        .arg(&input)
        .args(["--preset", "story", "--out"])
        .arg(&out));
    assert!(status.status.success(), "{stderr}");
    assert!(
        stdout.contains("cropped") && stdout.contains("1080×1920"),
        "{stdout}"
    );
    let story = image::open(&out).unwrap().to_rgb8();
    assert_eq!(story.dimensions(), (1080, 1920));
    // The left-edge subject is in the frame: its navy and orange survive the crop.
    let dark = story
        .pixels()
        .filter(|p| p.0[2] > 60 && p.0[0] < 60)
        .count();
    assert!(
        dark > 10_000,
        "the subject was cropped away ({dark} navy pixels)"
    );

    let fitted = home.path().join("fit.png");
    let (status, _, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "resize"])
        .arg(&input)
        .args([
            "--width",
            "600",
            "--height",
            "300",
            "--mode",
            "fit",
            "--background",
            "#1E3A5F",
            "--out",
        ])
        .arg(&fitted));
    assert!(status.status.success(), "{stderr}");
    let fit = image::open(&fitted).unwrap().to_rgb8();
    assert_eq!(fit.dimensions(), (600, 300));
    assert_eq!(fit.get_pixel(5, 150).0, [0x1E, 0x3A, 0x5F]);

    for (args, expected) in [
        (vec!["--preset", "poster"], "presets: square"),
        (vec!["--width", "100"], "height"),
        (
            vec![
                "--preset",
                "square",
                "--mode",
                "fit",
                "--background",
                "navy",
            ],
            "#RRGGBB",
        ),
    ] {
        let (status, _, stderr) = run(atelier(home.path(), home.path())
            .args(["post", "resize"])
            .arg(&input)
            .args(&args)
            .arg("--out")
            .arg(home.path().join("x.png")));
        assert!(!status.status.success());
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (status, _, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "resize"])
        .arg(&input)
        .args(["--preset", "square", "--out"])
        .arg(home.path().join("x.gif")));
    assert!(!status.status.success());
    assert!(stderr.contains(".png, .jpg, .jpeg or .webp"), "{stderr}");
}

#[test]
fn post_remove_background_cuts_the_subject_out() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    // A navy bottle-like shape on light grey: the subject's pixels are known.
    let subject = |x: u32, y: u32| {
        ((215..=265).contains(&x) && (50..=140).contains(&y))
            || ((170..=310).contains(&x) && (140..=310).contains(&y))
    };
    let img = image::RgbImage::from_fn(480, 360, |x, y| {
        image::Rgb(if subject(x, y) {
            [30, 60, 140]
        } else {
            [245, 245, 245]
        })
    });
    let input = home.path().join("product.jpg");
    img.save(&input).unwrap();
    let out = home.path().join("out/cut.png");
    let mask = home.path().join("out/mask.png");
    let (status, stdout, stderr) = run(atelier(home.path(), &models)
        .args(["post", "remove-background"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .arg("--mask")
        .arg(&mask));
    assert!(status.status.success(), "{stderr}");
    assert!(stdout.contains("cut out the subject"), "{stdout}");
    let cut = image::open(&out).unwrap().to_rgba8();
    assert_eq!(cut.dimensions(), (480, 360));
    // Opaque inside the subject, transparent in the background, colours kept.
    let inside = cut.get_pixel(240, 220).0;
    assert!(inside[3] > 230 && inside[2] > 100, "{inside:?}");
    assert!(
        cut.get_pixel(20, 20).0[3] < 25,
        "{:?}",
        cut.get_pixel(20, 20)
    );
    assert!(cut.get_pixel(460, 340).0[3] < 25);
    let m = image::open(&mask).unwrap().to_luma8();
    let (mut agree, mut total) = (0u32, 0u32);
    for (x, y, p) in m.enumerate_pixels() {
        total += 1;
        agree += u32::from((p.0[0] > 127) == subject(x, y));
    }
    assert!(agree as f64 / total as f64 > 0.97, "{agree}/{total}");

    // No transparency in JPEG: refused before any work, nothing written.
    let jpg = home.path().join("cut.jpg");
    let (status, _, stderr) = run(atelier(home.path(), &models)
        .args(["post", "remove-background"])
        .arg(&input)
        .arg("--out")
        .arg(&jpg));
    assert!(!status.status.success());
    assert!(stderr.contains("JPEG has no transparency"), "{stderr}");
    assert!(!jpg.exists());

    // Without the model: the command says how to install it.
    let empty = tempfile::tempdir().unwrap();
    let (status, _, stderr) = run(atelier(home.path(), empty.path())
        .args(["post", "remove-background"])
        .arg(&input)
        .arg("--out")
        .arg(home.path().join("x.png")));
    assert!(!status.status.success());
    assert!(stderr.contains("atelier models pull u2netp"), "{stderr}");
}

#[test]
fn post_upscale_enlarges_with_esrgan_and_names_the_allowed_scales() {
    let home = tempfile::tempdir().unwrap();
    let models = models_dir();
    let img = image::RgbImage::from_fn(120, 80, |x, y| {
        image::Rgb(if (x / 20 + y / 20) % 2 == 0 {
            [20, 40, 110]
        } else {
            [240, 200, 120]
        })
    });
    let input = home.path().join("small.png");
    img.save(&input).unwrap();
    let out = home.path().join("big.png");
    let (status, stdout, stderr) = run(atelier(home.path(), &models)
        .args(["post", "upscale"])
        .arg(&input)
        .args(["--scale", "4", "--out"])
        .arg(&out));
    assert!(status.status.success(), "{stderr}");
    assert!(stdout.contains("upscaled 120×80 to 480×320"), "{stdout}");
    let big = image::open(&out).unwrap().to_rgb8();
    assert_eq!(big.dimensions(), (480, 320));
    // The colours of the squares survive, away from their edges.
    let navy = big.get_pixel(40, 40).0;
    assert!(navy[2] > 90 && navy[0] < 45, "{navy:?}");
    let (status, _, stderr) = run(atelier(home.path(), &models)
        .args(["post", "upscale"])
        .arg(&input)
        .args(["--scale", "3", "--out"])
        .arg(home.path().join("no.png")));
    assert!(!status.status.success());
    assert!(stderr.contains("use 2 or 4"), "{stderr}");
    assert!(!home.path().join("no.png").exists());
}

#[test]
fn post_compose_and_convert_make_a_finished_design_for_the_web() {
    let home = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(400, 400, |x, y| {
        image::Rgb([(200 + x / 8) as u8, (150 + y / 8) as u8, 90])
    });
    let input = home.path().join("in.png");
    img.save(&input).unwrap();
    let out = home.path().join("design.png");
    let report = home.path().join("layout.json");
    let (status, stdout, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "compose"])
        .arg(&input)
        .arg("--kit")
        .arg(repo().join("examples/brands/solstice"))
        .args([
            "--headline",
            "Slow mornings",
            "--cta",
            "Find your roast",
            "--preset",
            "landscape",
            "--out",
        ])
        .arg(&out)
        .arg("--report")
        .arg(&report));
    assert!(status.status.success(), "{stderr}");
    assert!(
        stdout.contains("bottom-left") && stdout.contains("logo"),
        "{stdout}"
    );
    assert_eq!(
        image::open(&out).unwrap().to_rgb8().dimensions(),
        (1200, 628)
    );
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let kinds: Vec<&str> = layout["elements"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["logo", "headline", "cta"]);
    // Too long for the image: a clear error naming the field, and nothing written.
    let (status, _, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "compose"])
        .arg(&input)
        .arg("--kit")
        .arg(repo().join("examples/brands/solstice"))
        .args(["--headline", &"word ".repeat(30), "--out"])
        .arg(home.path().join("no.png")));
    assert!(!status.status.success());
    assert!(stderr.contains("`headline`"), "{stderr}");
    assert!(!home.path().join("no.png").exists());

    // The design as lossy WebP for the web: smaller than the PNG, same size in pixels.
    let webp = home.path().join("design.webp");
    let (status, stdout, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "convert"])
        .arg(&out)
        .args(["--quality", "80", "--out"])
        .arg(&webp));
    assert!(status.status.success(), "{stderr}");
    assert!(stdout.contains("WEBP at quality 80"), "{stdout}");
    let bytes = std::fs::read(&webp).unwrap();
    assert!(bytes.len() < std::fs::read(&out).unwrap().len());
    assert_eq!(
        image::load_from_memory(&bytes)
            .unwrap()
            .to_rgb8()
            .dimensions(),
        (1200, 628)
    );
    let (status, _, stderr) = run(atelier(home.path(), home.path())
        .args(["post", "convert"])
        .arg(&out)
        .args(["--quality", "80", "--keep-metadata", "--out"])
        .arg(&webp));
    assert!(!status.status.success());
    assert!(stderr.contains("`metadata`"), "{stderr}");
}

/// A loopback stand-in for the Hugging Face Hub's file endpoint as hf-hub reads it
/// (`/{owner}/{repo}/resolve/{revision}/{file}` with range requests, an `etag` and the
/// `x-repo-commit` header), serving the files of `dir`. Returns its base URL and a counter of
/// the requests it answered.
fn hub_server(dir: PathBuf) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    use sha2::Digest;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Served = (PathBuf, std::sync::Arc<AtomicUsize>);
    async fn file(
        State((dir, hits)): State<Served>,
        UrlPath((_owner, _repo, _rev, name)): UrlPath<(String, String, String, String)>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        hits.fetch_add(1, Ordering::SeqCst);
        let Ok(bytes) = std::fs::read(dir.join(&name)) else {
            return (StatusCode::NOT_FOUND, "Entry not found").into_response();
        };
        let len = bytes.len();
        let (start, stop) = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .map_or((0, len - 1), |(a, b)| (a, b.min(len - 1)));
        let etag = hex::encode(sha2::Sha256::digest(&bytes));
        (
            StatusCode::PARTIAL_CONTENT,
            [
                (
                    header::CONTENT_RANGE.as_str(),
                    format!("bytes {start}-{stop}/{len}"),
                ),
                (header::ETAG.as_str(), format!("\"{etag}\"")),
                (
                    "x-repo-commit",
                    "0123456789abcdef0123456789abcdef01234567".into(),
                ),
            ],
            bytes[start..=stop].to_vec(),
        )
            .into_response()
    }

    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let state: Served = (dir, hits.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new()
                .route(
                    "/{owner}/{repo}/resolve/{rev}/{*file}",
                    axum::routing::get(file),
                )
                .with_state(state);
            axum::serve(listener, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (format!("http://{addr}"), hits)
}

/// Alignment is reported as not measured without CLIP; with a CLIP checkpoint directory or a
/// Hugging Face repository (fetched once into the model cache) the report has an `alignment`
/// check; a broken checkpoint is an error naming the setting.
#[test]
fn critique_measures_alignment_with_a_configured_clip_and_says_when_it_cannot() {
    let home = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("navy.png");
    image::RgbImage::from_fn(96, 64, |x, _| {
        image::Rgb(if x < 48 { [20, 30, 90] } else { [212, 175, 55] })
    })
    .save(&image)
    .unwrap();
    let critique = |envs: &[(&str, &str)]| {
        let mut cmd = atelier(home.path(), models.path());
        cmd.arg("critique").arg(&image).args([
            "--brief",
            "a navy background with a gold circle",
            "--json",
        ]);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let alignment = |report: &serde_json::Value| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "alignment")
            .cloned()
    };

    let (out, stdout, err) = critique(&[]);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(alignment(&report).is_none(), "{report}");
    assert_eq!(report["not_measured"][0]["name"], "alignment", "{report}");
    assert!(
        report["not_measured"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("critique.clip"),
        "{report}"
    );

    let clip_dir = repo().join("inference/tests/data/clip");
    let (out, stdout, err) = critique(&[("ATELIER__CRITIQUE__CLIP", clip_dir.to_str().unwrap())]);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let local = alignment(&report).unwrap_or_else(|| panic!("no alignment check: {report}"));
    assert!(
        local["detail"]
            .as_str()
            .unwrap()
            .contains("atelier-test-clip"),
        "{local}"
    );
    assert!(report.get("not_measured").is_none(), "{report}");

    // From the hub: fetched into the model cache once, then read from there.
    let (endpoint, hits) = hub_server(clip_dir.clone());
    let hub = [
        ("ATELIER__CRITIQUE__CLIP", "hf:atelier/test-clip"),
        ("ATELIER__MODELS__HF_ENDPOINT", endpoint.as_str()),
    ];
    let (out, stdout, err) = critique(&hub);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        alignment(&report),
        Some(local.clone()),
        "same weights, same verdict"
    );
    let fetched = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        fetched >= 3,
        "config, tokenizer and weights were fetched ({fetched} requests)"
    );
    let (out, _, err) = critique(&hub);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        fetched,
        "the second run reads the model cache"
    );

    // A directory that is not a CLIP checkpoint, and a malformed hub name.
    let (out, _, err) = critique(&[("ATELIER__CRITIQUE__CLIP", dir.path().to_str().unwrap())]);
    assert!(!out.status.success());
    assert!(
        err.contains("critique.clip") && err.contains("config.json"),
        "{err}"
    );
    let (out, _, err) = critique(&[("ATELIER__CRITIQUE__CLIP", "hf:no-owner")]);
    assert!(!out.status.success());
    assert!(
        err.contains("critique.clip") && err.contains("hf:OWNER/REPO"),
        "{err}"
    );
}

/// `atelier generate --model DIR` runs a Stable Diffusion checkpoint in diffusers layout (here a
/// small random-weight one), deterministically; `--model hf:OWNER/REPO` fetches the same files
/// through the hub protocol into the model cache, with the repository's own CLIP tokenizer
/// (`vocab.json` and `merges.txt`, as diffusers repositories ship it). The checkpoint is an
/// SDXL-Turbo one, so the hub fetch brings its second text tower and tokenizer too.
#[test]
fn generate_runs_a_stable_diffusion_checkpoint_from_a_directory_or_the_hub() {
    use atelier_inference::diffusion::sd::testing::{Family, random_checkpoint};
    let home = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let ckpt = tempfile::tempdir().unwrap();
    random_checkpoint(ckpt.path(), Family::SdxlTurbo);
    let generate = |model: &str, out: &Path, envs: &[(&str, &str)]| {
        let mut cmd = atelier(home.path(), models.path());
        cmd.args(["generate", "a red scooter", "--model", model])
            .args(["--size", "32x24", "--steps", "2", "--seed", "7", "--n", "2"])
            .arg("--out")
            .arg(out);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        run(&mut cmd)
    };
    let local = home.path().join("local");
    let (out, stdout, err) = generate(ckpt.path().to_str().unwrap(), &local, &[]);
    assert!(out.status.success(), "{err}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    let first = image::open(local.join("image-0-seed7.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(first.dimensions(), (32, 24));

    // Limits come back named: turbo models take at most 4 steps.
    let mut cmd = atelier(home.path(), models.path());
    cmd.args(["generate", "x", "--model"])
        .arg(ckpt.path())
        .args(["--steps", "9", "--size", "32x24", "--out"])
        .arg(home.path().join("bad"));
    let (out, _, err) = run(&mut cmd);
    assert!(!out.status.success());
    assert!(err.contains("steps") && err.contains("1..=4"), "{err}");

    // From the hub: the repository has no tokenizer.json, so its vocab.json and merges.txt
    // are fetched.
    assert!(!ckpt.path().join("tokenizer/tokenizer.json").exists());
    assert!(ckpt.path().join("tokenizer/merges.txt").is_file());
    let (endpoint, hits) = hub_server(ckpt.path().to_path_buf());
    let from_hub = home.path().join("hub");
    let (out, _, err) = generate(
        "hf:stabilityai/sdxl-turbo",
        &from_hub,
        &[("ATELIER__MODELS__HF_ENDPOINT", endpoint.as_str())],
    );
    assert!(out.status.success(), "{err}");
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) >= 7);
    let hub_first = image::open(from_hub.join("image-0-seed7.png"))
        .unwrap()
        .to_rgb8();
    assert!(hub_first == first, "same checkpoint, same seed, same bytes");
}
