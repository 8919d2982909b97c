//! `atelier generate`: text to images with an ImageGenerator, printing progress.

use anyhow::Context;
use atelier_inference::diffusion::{ImageGenerator, ImageRequest, InitImage, Progress};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::GenerateArgs;
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: GenerateArgs) -> anyhow::Result<()> {
    let (width, height) = parse_size(&args.size)?;
    let generator = super::image_generator(settings, &args.model, args.weights.as_deref()).await?;

    let prompts: Vec<String> = match (&args.prompt, &args.prompts) {
        (Some(prompt), _) => vec![prompt.clone()],
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        (None, None) => anyhow::bail!("give a prompt or --prompts FILE"),
    };
    anyhow::ensure!(
        !prompts.is_empty() && prompts.len() <= 256,
        "--prompts must hold 1..=256 prompts"
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut all = Vec::new();
    for (p, prompt) in prompts.iter().enumerate() {
        let images = one_prompt(generator.as_ref(), prompt, &args, width, height).await?;
        for (i, image) in images.into_iter().enumerate() {
            let name = if prompts.len() > 1 {
                format!("p{p:03}-image-{i}-seed{}.png", image.seed)
            } else {
                format!("image-{i}-seed{}.png", image.seed)
            };
            let path = args.out.join(name);
            image
                .image
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("{}", path.display());
            all.push(image.image);
        }
    }
    if let Some(grid) = &args.grid {
        atelier_inference::diffusion::grid(&all, 8, 4)
            .save(grid)
            .with_context(|| format!("writing {}", grid.display()))?;
        eprintln!("grid: {}", grid.display());
    }
    Ok(())
}

async fn one_prompt(
    generator: &dyn ImageGenerator,
    prompt: &str,
    args: &GenerateArgs,
    width: u32,
    height: u32,
) -> anyhow::Result<Vec<atelier_inference::diffusion::GeneratedImage>> {
    let mut request = ImageRequest::new(prompt.to_string());
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
    eprintln!(
        "{} image(s) in {} ms with {}: {prompt}",
        generation.images.len(),
        generation.total_ms,
        generation.model
    );
    Ok(generation.images)
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
