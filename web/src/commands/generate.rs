//! `atelier generate`: text to images with an ImageGenerator, printing progress.

use std::sync::Arc;

use anyhow::Context;
use atelier_inference::diffusion::tiny::TinyGenerator;
use atelier_inference::diffusion::{ImageGenerator, ImageRequest, InitImage, Progress};
use atelier_inference::embed::MiniLmEmbedder;
use atelier_inference::models::Catalog;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::GenerateArgs;
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: GenerateArgs) -> anyhow::Result<()> {
    let (width, height) = parse_size(&args.size)?;
    let catalog = Catalog::builtin()?;
    let minilm = catalog.get("all-minilm-l6-v2")?;
    minilm.installed_path(&settings.models_dir)?;
    let embedder = Arc::new(MiniLmEmbedder::load(&minilm.dir(&settings.models_dir))?);
    let generator = TinyGenerator::load(&args.weights, embedder)
        .with_context(|| format!("loading atelier-tiny from {}", args.weights.display()))?;

    let mut request = ImageRequest::new(args.prompt.clone());
    request.width = width;
    request.height = height;
    request.steps = args.steps;
    request.seed = args.seed;
    request.count = args.n;
    request.guidance = args.guidance;
    request.negative_prompt = args.negative.clone();
    if let Some(path) = &args.init {
        let image = image::open(path)
            .with_context(|| format!("reading the init image {}", path.display()))?
            .to_rgb8();
        request.init = Some(InitImage {
            image,
            strength: args.strength,
        });
    }
    request.validate(&generator.limits())?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;

    let bar = ProgressBar::new(u64::from(args.steps) * u64::from(args.n));
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(generator.name().to_string());
    let progress_bar = bar.clone();
    let progress = Box::new(move |_p: Progress| progress_bar.inc(1));
    let generation = generator.generate(request, Some(progress)).await?;
    bar.finish_and_clear();
    for (i, image) in generation.images.iter().enumerate() {
        let path = args.out.join(format!("image-{i}-seed{}.png", image.seed));
        image
            .image
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    eprintln!(
        "{} image(s) in {} ms with {}",
        generation.images.len(),
        generation.total_ms,
        generation.model
    );
    Ok(())
}

fn parse_size(size: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = size
        .split_once(['x', 'X', '×'])
        .context("--size must look like 256x256")?;
    Ok((
        w.trim().parse().context("--size width is not a number")?,
        h.trim().parse().context("--size height is not a number")?,
    ))
}
