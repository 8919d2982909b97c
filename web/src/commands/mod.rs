//! The subcommands, and the composition root that turns settings into backends.

mod bench;
mod bench_agent;
mod bench_embed;
mod bench_unet;
mod bench_ws;
mod brands;
mod brief;
mod chat;
mod critique;
mod eval;
mod generate;
mod models;
mod post;
mod serve;
mod train;

use std::sync::Arc;

use anyhow::Context;
use atelier_inference::llm::{
    ChatModel, LlamaChatModel, LlamaConfig, OpenAiChatModel, OpenAiConfig,
};
use atelier_inference::models::Catalog;

use crate::cli::{BenchCommand, Cli, Command, ModelsCommand, TrainCommand};
use crate::settings::{BrandStoreKind, EmbedBackend, Environment, LlmBackend, Settings};
use atelier_inference::embed::{Embedder, MiniLmEmbedder, OpenAiEmbedder};
use atelier_tools::brand::{BrandStore, EdgeStore, ServerStore, ServerStoreConfig};

/// Run one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref(), &Environment::from_process())?;
    match cli.command {
        Command::Models(ModelsCommand::List { json }) => models::list(&settings, json),
        Command::Models(ModelsCommand::Pull(args)) => models::pull(&settings, args).await,
        Command::Chat(args) => chat::run(&settings, args).await,
        Command::Bench(BenchCommand::Llm(args)) => bench::llm(&settings, args).await,
        Command::Bench(BenchCommand::Embed(args)) => bench_embed::embed(&settings, args).await,
        Command::Bench(BenchCommand::BrandSearch(args)) => {
            bench_embed::brand_search(&settings, args).await
        }
        Command::Bench(BenchCommand::Tiny(args)) => bench_embed::tiny(&settings, args).await,
        Command::Bench(BenchCommand::Unet(args)) => bench_unet::unet(args).await,
        Command::Bench(BenchCommand::Agent(args)) => bench_agent::decisions(&settings, args).await,
        Command::Bench(BenchCommand::AgentOverhead(args)) => {
            bench_agent::overhead(&settings, args).await
        }
        Command::Bench(BenchCommand::Ws(args)) => bench_ws::run(args).await,
        Command::Brands(command) => brands::run(&settings, command).await,
        Command::Config => show_config(&settings),
        Command::Brief(args) => brief::run(&settings, args).await,
        Command::Serve(args) => serve::run(&settings, args).await,
        Command::Critique(args) => critique::run(&settings, args).await,
        Command::Eval(command) => eval::run(&settings, command).await,
        Command::Post(command) => post::run(&settings, command).await,
        Command::Generate(args) => generate::run(&settings, args).await,
        Command::Train(TrainCommand::Tiny(args)) => train::tiny(&settings, args).await,
        Command::Train(TrainCommand::TinyEval(args)) => train::tiny_eval(&settings, args).await,
        Command::Train(TrainCommand::TinyClassifier { steps, out }) => {
            train::tiny_classifier(steps, &out).await
        }
        Command::Train(TrainCommand::TinyData { count, seed, out }) => {
            train::tiny_data(count, seed, &out)
        }
    }
}

fn show_config(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    for secret in [
        &mut shown.llm.openai.api_key,
        &mut shown.models.hf_token,
        &mut shown.embed.openai.api_key,
        &mut shown.brands.qdrant.api_key,
    ] {
        if !secret.is_empty() {
            *secret = "********".into();
        }
    }
    println!("# data directory: {}", settings.home.display());
    println!("# model cache:    {}", settings.models_dir.display());
    print!("{}", toml::to_string_pretty(&shown)?);
    Ok(())
}

/// Load the llama.cpp model named `name` (card name or alias) with the settings' runtime
/// options; `parallel` overrides the worker count.
pub async fn load_llama(
    settings: &Settings,
    name: &str,
    parallel: usize,
    threads: Option<u32>,
) -> anyhow::Result<LlamaChatModel> {
    let catalog = Catalog::builtin()?;
    let card = catalog.get(name)?;
    let path = card.installed_path(&settings.models_dir)?;
    let llm = &settings.llm;
    let config = LlamaConfig {
        model_path: path,
        name: card.name.clone(),
        context_size: llm.context_size,
        parallel,
        threads: threads.unwrap_or(llm.threads),
        threads_batch: threads.unwrap_or(llm.threads_batch),
        batch_size: llm.batch_size,
        gpu_layers: llm.gpu_layers,
    };
    tokio::task::spawn_blocking(move || LlamaChatModel::load(config))
        .await
        .context("model loading thread failed")?
        .map_err(Into::into)
}

/// The chat model the settings choose; `model` overrides the configured name.
pub async fn chat_model(
    settings: &Settings,
    model: Option<&str>,
    parallel: usize,
) -> anyhow::Result<Arc<dyn ChatModel>> {
    Ok(match settings.llm.backend {
        LlmBackend::Llama => {
            let name = model.unwrap_or(&settings.llm.model);
            Arc::new(load_llama(settings, name, parallel, None).await?)
        }
        LlmBackend::Openai => {
            let openai = &settings.llm.openai;
            Arc::new(OpenAiChatModel::new(OpenAiConfig {
                base_url: openai.base_url.clone(),
                api_key: openai.api_key.clone(),
                model: model.unwrap_or(&openai.model).to_string(),
                structured: openai.structured,
            }))
        }
    })
}

/// The embedder the settings choose.
pub async fn embedder(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    Ok(match settings.embed.backend {
        EmbedBackend::Minilm => embedder_minilm(settings).await?,
        EmbedBackend::Openai => {
            let o = &settings.embed.openai;
            Arc::new(OpenAiEmbedder::new(
                OpenAiConfig {
                    base_url: o.base_url.clone(),
                    api_key: o.api_key.clone(),
                    model: o.model.clone(),
                    structured: Default::default(),
                },
                o.dimensions,
            )?)
        }
    })
}

/// The brand store the settings choose, for vectors of `dims` dimensions.
pub async fn brand_store(settings: &Settings, dims: usize) -> anyhow::Result<Arc<dyn BrandStore>> {
    Ok(match settings.brands.store {
        BrandStoreKind::Embedded => {
            let path = settings.home.join("brands");
            Arc::new(
                EdgeStore::open(&path, dims)
                    .await
                    .with_context(|| format!("opening the brand store in {}", path.display()))?,
            )
        }
        BrandStoreKind::Server => {
            let q = &settings.brands.qdrant;
            let config = ServerStoreConfig {
                url: q.url.clone(),
                api_key: q.api_key.clone(),
                collection: q.collection.clone(),
                timeout: std::time::Duration::from_secs(q.timeout_seconds),
            };
            Arc::new(
                ServerStore::connect(&config, dims)
                    .await
                    .with_context(|| format!("connecting to the Qdrant server at {}", q.url))?,
            )
        }
    })
}

/// The image model named `name`: `openai` is the OpenAI-compatible service of
/// `[images.openai]`; a directory holding a diffusers checkpoint (`unet/config.json`, …) or
/// `hf:OWNER/REPO[@REVISION]` is Stable Diffusion 1.x / 2.x / Turbo on candle; anything else is
/// Atelier's own model (see [`tiny_generator`]).
pub async fn image_generator(
    settings: &Settings,
    name: &str,
    weights: Option<&std::path::Path>,
) -> anyhow::Result<Arc<dyn atelier_inference::diffusion::ImageGenerator>> {
    if name == OPENAI_IMAGES {
        let config = settings.images.openai.clone();
        anyhow::ensure!(
            weights.is_none(),
            "--weights is for atelier-tiny; the `openai` image model is a remote service"
        );
        anyhow::ensure!(
            !config.base_url.trim().is_empty(),
            "the `openai` image model needs images.openai.base_url (and model, api_key) in the \
             settings, e.g. ATELIER__IMAGES__OPENAI__BASE_URL=https://api.openai.com/v1"
        );
        let generator = atelier_inference::diffusion::openai::OpenAiImages::new(config)
            .context("images.openai")?;
        return Ok(Arc::new(generator));
    }
    if let Some(hub) = name.strip_prefix("hf:") {
        let dir = pull_stable_diffusion(settings, hub).await?;
        return Ok(Arc::new(load_stable_diffusion(dir, hub).await?));
    }
    let dir = std::path::Path::new(name);
    if dir.join("unet/config.json").is_file() {
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        return Ok(Arc::new(
            load_stable_diffusion(dir.to_path_buf(), &label).await?,
        ));
    }
    Ok(Arc::new(tiny_generator(settings, name, weights).await?))
}

async fn load_stable_diffusion(
    dir: std::path::PathBuf,
    name: &str,
) -> anyhow::Result<atelier_inference::diffusion::sd::StableDiffusion> {
    use atelier_inference::diffusion::sd::{SdOptions, StableDiffusion};
    let options = SdOptions {
        name: Some(name.to_string()),
        ..SdOptions::default()
    };
    tokio::task::spawn_blocking(move || {
        StableDiffusion::load(&dir, options)
            .with_context(|| format!("loading Stable Diffusion from {}", dir.display()))
    })
    .await
    .context("model loading thread failed")?
}

/// Fetch a diffusers Stable Diffusion repository (`OWNER/REPO[@REVISION]`) into the model
/// cache; returns its snapshot directory. Its tokenizer is its own: `tokenizer/tokenizer.json`
/// when the repository has one, else CLIP's `tokenizer/vocab.json` and `tokenizer/merges.txt`
/// (what diffusers repositories usually ship). SDXL repositories (a `text_time` UNet) also
/// give `text_encoder_2/` and `tokenizer_2/`.
async fn pull_stable_diffusion(
    settings: &Settings,
    hub: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use atelier_inference::models::{Fetcher, NoProgress};
    let (repo, revision) = match hub.split_once('@') {
        Some((repo, rev)) => (repo, Some(rev)),
        None => (hub, None),
    };
    anyhow::ensure!(
        repo.split('/').count() == 2 && !repo.starts_with('/') && !repo.ends_with('/'),
        "`hf:{hub}`: an image model from the hub is named hf:OWNER/REPO or hf:OWNER/REPO@REVISION"
    );
    let fetcher = Fetcher::new(settings.fetcher_config(), Arc::new(NoProgress));
    let files: [&[&str]; 7] = [
        &["unet/config.json"],
        &[
            "unet/diffusion_pytorch_model.safetensors",
            "unet/diffusion_pytorch_model.fp16.safetensors",
        ],
        &["vae/config.json"],
        &[
            "vae/diffusion_pytorch_model.safetensors",
            "vae/diffusion_pytorch_model.fp16.safetensors",
        ],
        &["text_encoder/config.json"],
        &[
            "text_encoder/model.safetensors",
            "text_encoder/model.fp16.safetensors",
        ],
        &["scheduler/scheduler_config.json"],
    ];
    let dir = fetcher
        .pull_hub_snapshot(repo, revision, &files)
        .await
        .with_context(|| format!("fetching Stable Diffusion from {repo}"))?;
    pull_clip_tokenizer(&fetcher, repo, revision, "tokenizer").await?;
    // SDXL: a second text tower and tokenizer.
    let unet_path = dir.join("unet/config.json");
    let unet: atelier_inference::diffusion::sd::UNetJson = serde_json::from_str(
        &std::fs::read_to_string(&unet_path)
            .with_context(|| format!("reading {}", unet_path.display()))?,
    )
    .with_context(|| format!("{}: not a diffusers UNet config", unet_path.display()))?;
    if unet.addition_embed_type.as_deref() == Some("text_time") {
        let files: [&[&str]; 2] = [
            &["text_encoder_2/config.json"],
            &[
                "text_encoder_2/model.safetensors",
                "text_encoder_2/model.fp16.safetensors",
            ],
        ];
        fetcher
            .pull_hub_snapshot(repo, revision, &files)
            .await
            .with_context(|| format!("fetching SDXL's second text encoder from {repo}"))?;
        pull_clip_tokenizer(&fetcher, repo, revision, "tokenizer_2").await?;
    }
    Ok(dir)
}

/// A diffusers repository's CLIP tokenizer in `sub/`: its `tokenizer.json` when it has one,
/// else `vocab.json` and `merges.txt`; and `tokenizer_config.json` when present (the padding
/// token: SD 2 pads with `!`).
async fn pull_clip_tokenizer(
    fetcher: &atelier_inference::models::Fetcher,
    repo: &str,
    revision: Option<&str>,
    sub: &str,
) -> anyhow::Result<()> {
    let file = |name: &str| format!("{sub}/{name}");
    let (config, json) = (file("tokenizer_config.json"), file("tokenizer.json"));
    let _ = fetcher
        .pull_hub_snapshot(repo, revision, &[&[config.as_str()]])
        .await;
    if fetcher
        .pull_hub_snapshot(repo, revision, &[&[json.as_str()]])
        .await
        .is_err()
    {
        let (vocab, merges) = (file("vocab.json"), file("merges.txt"));
        fetcher
            .pull_hub_snapshot(repo, revision, &[&[vocab.as_str()], &[merges.as_str()]])
            .await
            .with_context(|| format!("fetching the CLIP tokenizer ({sub}/) of {repo}"))?;
    }
    Ok(())
}

/// The image model name that selects the `[images.openai]` service.
pub const OPENAI_IMAGES: &str = "openai";

/// Atelier's own image model: `name` from the catalog (the bundled weights are written into the
/// cache on first use, offline), or the weights in `weights` when given.
pub async fn tiny_generator(
    settings: &Settings,
    name: &str,
    weights: Option<&std::path::Path>,
) -> anyhow::Result<atelier_inference::diffusion::tiny::TinyGenerator> {
    use atelier_inference::models::{Fetcher, ModelKind, NoProgress, Source};
    let catalog = Catalog::builtin()?;
    let dir = match weights {
        Some(dir) => dir.to_path_buf(),
        None => {
            let card = catalog.get(name)?;
            anyhow::ensure!(
                card.kind == ModelKind::Image && card.bundled,
                "`{name}` is not an image model this build can run; image models: {}",
                catalog
                    .cards()
                    .iter()
                    .filter(|c| c.kind == ModelKind::Image)
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Fetcher::new(settings.fetcher_config(), Arc::new(NoProgress))
                .pull(card, Source::Registry)
                .await?
        }
    };
    let embedder = embedder_minilm(settings).await?;
    let generator = tokio::task::spawn_blocking(move || {
        atelier_inference::diffusion::tiny::TinyGenerator::load(&dir, embedder)
            .with_context(|| format!("loading atelier-tiny from {}", dir.display()))
    })
    .await
    .context("model loading thread failed")??;
    Ok(generator)
}

/// The open_nsfw classifier for the critique's safety check, when it is in the model cache.
/// Without it the critique checks prompts only and says the pixels were not classified.
async fn nsfw_classifier(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<atelier_inference::vision::safety::NsfwClassifier>>> {
    let card = Catalog::builtin()?.get("open-nsfw")?.clone();
    let Ok(path) = card.installed_path(&settings.models_dir) else {
        tracing::warn!(
            "open-nsfw is not installed: images are not classified for safety \
             (`atelier models pull open-nsfw` installs it)"
        );
        return Ok(None);
    };
    let classifier = tokio::task::spawn_blocking(move || {
        atelier_inference::vision::safety::NsfwClassifier::load(&path)
            .with_context(|| format!("loading open_nsfw from {}", path.display()))
    })
    .await
    .context("model loading thread failed")??;
    Ok(Some(Arc::new(classifier)))
}

/// The models behind the critique's pixel checks: open_nsfw when it is in the model cache,
/// CLIP when `critique.clip` names one (a directory, or a Hugging Face repository fetched into
/// the model cache). A configured CLIP that cannot be loaded is an error, not a silent skip.
pub async fn critics(settings: &Settings) -> anyhow::Result<atelier_tools::critique::Critics> {
    use crate::settings::ClipSource;
    use atelier_inference::models::{Fetcher, NoProgress};
    let safety = nsfw_classifier(settings).await?;
    let dir = match settings.critique.clip_source()? {
        None => None,
        Some(ClipSource::Dir(dir)) => Some(dir),
        Some(ClipSource::Hub { repo, revision }) => {
            let fetcher = Fetcher::new(settings.fetcher_config(), Arc::new(NoProgress));
            let files: [&[&str]; 3] = [
                &["config.json"],
                &["tokenizer.json"],
                &["model.safetensors", "pytorch_model.bin"],
            ];
            Some(
                fetcher
                    .pull_hub_snapshot(&repo, revision.as_deref(), &files)
                    .await
                    .with_context(|| format!("fetching the CLIP weights of {repo}"))?,
            )
        }
    };
    let alignment = match dir {
        None => None,
        Some(dir) => {
            let scorer = tokio::task::spawn_blocking(move || {
                atelier_inference::vision::clip::ClipScorer::load(&dir).with_context(|| {
                    format!(
                        "loading CLIP from {} (critique.clip; empty it to run without the \
                         alignment check)",
                        dir.display()
                    )
                })
            })
            .await
            .context("model loading thread failed")??;
            Some(atelier_tools::critique::ClipCritic {
                scorer: Arc::new(scorer),
                threshold: settings.critique.alignment_threshold,
            })
        }
    };
    Ok(atelier_tools::critique::Critics { safety, alignment })
}

/// The u2netp segmenter behind `remove_background` (`atelier models pull u2netp` installs it).
pub async fn segmenter(
    settings: &Settings,
) -> anyhow::Result<atelier_inference::vision::segment::Segmenter> {
    let path = Catalog::builtin()?
        .get("u2netp")?
        .installed_path(&settings.models_dir)?;
    tokio::task::spawn_blocking(move || {
        atelier_inference::vision::segment::Segmenter::load(&path)
            .with_context(|| format!("loading u2netp from {}", path.display()))
    })
    .await
    .context("model loading thread failed")?
}

/// ESRGAN-slim ×2 and ×4 behind `upscale` (`atelier models pull esrgan-slim` installs them).
pub async fn upscalers(settings: &Settings) -> anyhow::Result<atelier_tools::upscale::Upscalers> {
    let card = Catalog::builtin()?.get("esrgan-slim")?.clone();
    card.installed_path(&settings.models_dir)?;
    let dir = card.dir(&settings.models_dir);
    tokio::task::spawn_blocking(move || {
        atelier_tools::upscale::Upscalers::load(&dir)
            .with_context(|| format!("loading ESRGAN-slim from {}", dir.display()))
    })
    .await
    .context("model loading thread failed")?
}

/// ESRGAN-slim when it is in the model cache, for the agent: without it images smaller than
/// their channel are enlarged by interpolation.
pub async fn optional_upscalers(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<atelier_tools::upscale::Upscalers>>> {
    let card = Catalog::builtin()?.get("esrgan-slim")?.clone();
    if !card.is_installed(&settings.models_dir) {
        tracing::warn!(
            "esrgan-slim is not installed: images smaller than their channel are enlarged by \
             interpolation (`atelier models pull esrgan-slim` installs it)"
        );
        return Ok(None);
    }
    Ok(Some(Arc::new(upscalers(settings).await?)))
}

/// The in-process MiniLM embedder on `embed.engine` (atelier-tiny is conditioned on exactly
/// this model).
async fn embedder_minilm(settings: &Settings) -> anyhow::Result<Arc<dyn Embedder>> {
    let catalog = Catalog::builtin()?;
    let card = catalog.get("all-minilm-l6-v2")?;
    card.installed_path(&settings.models_dir)?;
    let dir = card.dir(&settings.models_dir);
    let engine = settings.embed.engine.into();
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || MiniLmEmbedder::load_with(&dir, engine))
            .await
            .context("embedder loading thread failed")??,
    ))
}
