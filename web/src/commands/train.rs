//! `atelier train tiny`: train Atelier's offline image model on the procedural dataset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use atelier_inference::diffusion::tiny::model::TinyConfig;
use atelier_inference::diffusion::tiny::train::{TrainOptions, train};
use atelier_inference::embed::MiniLmEmbedder;
use atelier_inference::models::Catalog;

use crate::cli::{TinyPreset, TrainTinyArgs};
use crate::settings::Settings;

pub async fn tiny(settings: &Settings, args: TrainTinyArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.batch >= 1 && args.batch <= 1024,
        "--batch must be in 1..=1024"
    );
    anyhow::ensure!(args.lr > 0.0 && args.lr < 1.0, "--lr must be in (0, 1)");
    anyhow::ensure!(
        args.checkpoint_minutes > 0.0,
        "--checkpoint-minutes must be positive"
    );
    let catalog = Catalog::builtin()?;
    let minilm = catalog.get("all-minilm-l6-v2")?;
    minilm.installed_path(&settings.models_dir)?;
    let embedder = MiniLmEmbedder::load(&minilm.dir(&settings.models_dir))?;

    let mut options = TrainOptions::new(&args.out);
    options.config = match args.preset {
        TinyPreset::Base => TinyConfig::base(),
        TinyPreset::Toy => TinyConfig::toy(),
    };
    if let Some(patch) = args.patch {
        options.config.patch = patch;
    }
    if let Some(dim) = args.dim {
        options.config.dim = dim;
    }
    if let Some(depth) = args.depth {
        options.config.depth = depth;
    }
    options
        .config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid network shape: {e}"))?;
    options.steps = args.steps;
    options.batch = args.batch;
    options.lr = args.lr;
    options.seed = args.seed;
    options.checkpoint_every = Duration::from_secs_f64(args.checkpoint_minutes * 60.0);
    options.resume = args.resume.clone();

    let stop = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let stop = stop.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping after this step (a checkpoint is written first)…");
                stop.store(true, Ordering::SeqCst);
            }
        }
    });
    eprintln!(
        "training atelier-tiny to step {} (batch {}, lr {}) into {}{}",
        options.steps,
        options.batch,
        options.lr,
        args.out.display(),
        args.resume
            .as_ref()
            .map(|r| format!(", resuming from {}", r.display()))
            .unwrap_or_default()
    );
    let started = Instant::now();
    let state = tokio::task::spawn_blocking(move || {
        let mut last_print = Instant::now();
        train(&options, &embedder, |p| {
            if last_print.elapsed() >= Duration::from_secs(10)
                || p.checkpoint.is_some()
                || p.step <= 3
            {
                last_print = Instant::now();
                let note = p
                    .checkpoint
                    .as_ref()
                    .map(|c| format!("  checkpoint → {}", c.display()))
                    .unwrap_or_default();
                eprintln!(
                    "step {:>6}  loss {:.4}  smoothed {:.4}  {:.1} img/s{note}",
                    p.step, p.loss, p.smoothed, p.images_per_sec
                );
            }
            !stop.load(Ordering::SeqCst)
        })
    })
    .await
    .context("the training thread failed")??;
    eprintln!(
        "done: step {} after {:.1} min this run ({:.1} h in all); model in {}",
        state.step,
        started.elapsed().as_secs_f64() / 60.0,
        state.seconds / 3600.0,
        args.out.join("model").display()
    );
    Ok(())
}

pub fn tiny_data(count: u32, seed: u64, out: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!((1..=1024).contains(&count), "--count must be in 1..=1024");
    let generator =
        atelier_inference::diffusion::tiny::data::Generator::new(64).context("generator size")?;
    let mut images = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let sample = generator.sample(seed, i);
        println!("{i:>4}  {}", sample.caption);
        let image = image::RgbImage::from_raw(sample.size, sample.size, sample.rgb)
            .context("sample size")?;
        images.push(image);
    }
    let grid = atelier_inference::diffusion::grid(&images, 8, 2);
    grid.save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
