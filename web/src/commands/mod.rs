//! The subcommands, and the composition root that turns settings into backends.

mod bench;
mod chat;
mod generate;
mod models;
mod train;

use std::sync::Arc;

use anyhow::Context;
use atelier_inference::llm::{
    ChatModel, LlamaChatModel, LlamaConfig, OpenAiChatModel, OpenAiConfig,
};
use atelier_inference::models::Catalog;

use crate::cli::{BenchCommand, Cli, Command, ModelsCommand, TrainCommand};
use crate::settings::{Environment, LlmBackend, Settings};

/// Run one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref(), &Environment::from_process())?;
    match cli.command {
        Command::Models(ModelsCommand::List { json }) => models::list(&settings, json),
        Command::Models(ModelsCommand::Pull(args)) => models::pull(&settings, args).await,
        Command::Chat(args) => chat::run(&settings, args).await,
        Command::Bench(BenchCommand::Llm(args)) => bench::llm(&settings, args).await,
        Command::Config => show_config(&settings),
        Command::Generate(args) => generate::run(&settings, args).await,
        Command::Train(TrainCommand::Tiny(args)) => train::tiny(&settings, args).await,
        Command::Train(TrainCommand::TinyData { count, seed, out }) => {
            train::tiny_data(count, seed, &out)
        }
    }
}

fn show_config(settings: &Settings) -> anyhow::Result<()> {
    let mut shown = settings.clone();
    for secret in [&mut shown.llm.openai.api_key, &mut shown.models.hf_token] {
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
            }))
        }
    })
}
