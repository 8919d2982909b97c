//! Shared set-up of the agent tests: the real MiniLM embedder, the bundled atelier-tiny model,
//! an embedded Qdrant store with both example brands, and checks on event streams.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use atelier_agent::{AgentEvent, allowed_tools};
use atelier_inference::diffusion::tiny::TinyGenerator;
use atelier_inference::embed::{Embedder, MiniLmEmbedder};
use atelier_inference::llm::{ChatModel, LlamaChatModel, LlamaConfig};
use atelier_inference::models::Catalog;
use atelier_inference::vision::safety::NsfwClassifier;
use atelier_tools::brand::{BrandKit, BrandStore, EdgeStore, Ingestor};
use atelier_tools::upscale::Upscalers;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn models_dir() -> PathBuf {
    match std::env::var_os("ATELIER_MODELS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/atelier/models"),
    }
}

/// Path of an installed model's main file; panics with the command that installs it.
pub fn installed(name: &str) -> PathBuf {
    let card = Catalog::builtin().unwrap().get(name).unwrap().clone();
    card.installed_path(&models_dir()).unwrap_or_else(|e| {
        panic!("{e}\nrun `atelier models pull {name}` (scripts/test.sh does this)")
    })
}

pub fn embedder() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<MiniLmEmbedder>> = OnceLock::new();
    E.get_or_init(|| {
        let path = installed("all-minilm-l6-v2");
        Arc::new(MiniLmEmbedder::load(path.parent().unwrap()).unwrap())
    })
    .clone()
}

/// The default chat model, Qwen2.5-Coder-0.5B in llama.cpp (2 threads, one worker), loaded once
/// per test binary.
pub const MODEL: &str = "qwen2.5-coder-0.5b-instruct";

pub fn llm() -> Arc<dyn ChatModel> {
    static M: OnceLock<Arc<LlamaChatModel>> = OnceLock::new();
    M.get_or_init(|| {
        let path = installed(MODEL);
        Arc::new(
            LlamaChatModel::load(LlamaConfig {
                model_path: path,
                name: MODEL.into(),
                context_size: 4096,
                parallel: 1,
                threads: 2,
                threads_batch: 2,
                batch_size: 512,
                gpu_layers: 0,
            })
            .unwrap(),
        )
    })
    .clone()
}

/// The real open_nsfw classifier, loaded once per test binary.
/// The small random-weight CLIP checkpoint of the inference tests (Hugging Face layout,
/// written by scripts/reference/clip.py): real loading and scoring code, meaningless scores.
pub fn test_clip() -> Arc<atelier_inference::vision::clip::ClipScorer> {
    static C: OnceLock<Arc<atelier_inference::vision::clip::ClipScorer>> = OnceLock::new();
    C.get_or_init(|| {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/tests/data/clip");
        Arc::new(atelier_inference::vision::clip::ClipScorer::load(&dir).unwrap())
    })
    .clone()
}

pub fn nsfw() -> Arc<NsfwClassifier> {
    static C: OnceLock<Arc<NsfwClassifier>> = OnceLock::new();
    C.get_or_init(|| {
        let path = installed("open-nsfw");
        Arc::new(NsfwClassifier::load(&path).unwrap())
    })
    .clone()
}

/// ESRGAN-slim ×2 and ×4, loaded once per test binary.
pub fn upscalers() -> Arc<Upscalers> {
    static U: OnceLock<Arc<Upscalers>> = OnceLock::new();
    U.get_or_init(|| {
        let path = installed("esrgan-slim");
        Arc::new(Upscalers::load(path.parent().unwrap()).unwrap())
    })
    .clone()
}

/// The shipped atelier-tiny weights.
pub fn tiny() -> Arc<TinyGenerator> {
    static G: OnceLock<Arc<TinyGenerator>> = OnceLock::new();
    G.get_or_init(|| {
        Arc::new(TinyGenerator::load(&repo().join("models/atelier-tiny"), embedder()).unwrap())
    })
    .clone()
}

/// One embedded store for the whole test binary, with tenant `one` holding Solstice and tenant
/// `two` holding Solstice and Voltline. Built on its own runtime so any test may use it.
pub fn brands() -> Ingestor {
    static I: OnceLock<(Ingestor, tempfile::TempDir)> = OnceLock::new();
    I.get_or_init(|| {
        std::thread::spawn(|| {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let e = embedder();
                let store: Arc<dyn BrandStore> = Arc::new(
                    EdgeStore::open(&dir.path().join("brands"), e.dimensions())
                        .await
                        .unwrap(),
                );
                let ing = Ingestor::new(store, e);
                let kits = repo().join("examples/brands");
                let solstice = BrandKit::load(&kits.join("solstice")).unwrap();
                let voltline = BrandKit::load(&kits.join("voltline")).unwrap();
                ing.ingest("one", &solstice).await.unwrap();
                ing.ingest("two", &solstice).await.unwrap();
                ing.ingest("two", &voltline).await.unwrap();
                (ing, dir)
            })
        })
        .join()
        .unwrap()
    })
    .0
    .clone()
}

/// Check that an event stream is well formed: one terminal event, last; every tool call
/// answered once by a result with its id, after it; only tools the phase allows; every image
/// on disk.
pub fn assert_well_formed(events: &[AgentEvent]) {
    let terminal: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.is_terminal())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        terminal,
        [events.len() - 1],
        "one terminal event, last: {events:#?}"
    );
    let mut open: HashMap<u32, String> = HashMap::new();
    let mut phase = None;
    for e in events {
        match e {
            AgentEvent::Status { phase: p, .. } => phase = Some(*p),
            AgentEvent::ToolCall { id, tool, .. } => {
                let p = phase.expect("a tool call before any status");
                assert!(
                    allowed_tools(p).iter().any(|t| t.name() == tool),
                    "{tool} called in {p:?}"
                );
                assert!(
                    open.insert(*id, tool.clone()).is_none(),
                    "tool call id {id} reused"
                );
            }
            AgentEvent::ToolResult { id, tool, .. } => {
                assert_eq!(
                    open.remove(id).as_deref(),
                    Some(tool.as_str()),
                    "result {id} without its call"
                );
            }
            AgentEvent::Image { image, .. } => {
                assert!(Path::new(&image.uri).is_file(), "{} missing", image.uri);
            }
            _ => {}
        }
    }
    assert!(open.is_empty(), "tool calls without results: {open:?}");
}

/// The `type` tags of the events, in order, without progress and status.
pub fn kinds(events: &[AgentEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(AgentEvent::kind)
        .filter(|k| !matches!(*k, "progress" | "status" | "message_delta"))
        .collect()
}
