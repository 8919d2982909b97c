//! `atelier train tiny`: train Atelier's offline image model on the procedural dataset.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use atelier_inference::diffusion::tiny::model::TinyConfig;
use atelier_inference::diffusion::tiny::train::{TrainOptions, train};
use atelier_inference::embed::MiniLmEmbedder;
use atelier_inference::models::Catalog;

use crate::cli::{TinyEvalArgs, TinyPreset, TrainTinyArgs};
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
    anyhow::ensure!(
        (1.0..=100.0).contains(&args.foreground_weight),
        "--foreground-weight must be in 1..=100 (got {})",
        args.foreground_weight
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
    if let Some(size) = args.image_size {
        options.config.image_size = size;
    }
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
    options.decay_steps = args.decay_steps;
    options.seed = args.seed;
    options.checkpoint_every = Duration::from_secs_f64(args.checkpoint_minutes * 60.0);
    options.resume = args.resume.clone();
    options.add_cross_attention = args.cross_attention;
    options.add_final_conv = args.final_conv;
    options.add_refiner = args.refiner.map_or(0, usize::from);
    options.foreground_weight = args.foreground_weight;

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
        "training atelier-tiny to step {} (batch {}, lr {}, foreground weight {}) into {}{}",
        options.steps,
        options.batch,
        options.lr,
        options.foreground_weight,
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

/// Generate one image per held-out caption and check its colours against the caption's.
pub async fn tiny_eval(settings: &Settings, args: TinyEvalArgs) -> anyhow::Result<()> {
    use atelier_inference::diffusion::ImageRequest;
    use atelier_inference::diffusion::tiny::data::{Generator, Scene};
    use atelier_inference::diffusion::tiny::eval::{
        MAX_DELTA_E, checked_colours, colour_distances,
    };
    use std::collections::BTreeMap;

    anyhow::ensure!(
        (1..=10_000).contains(&args.captions),
        "--captions must be in 1..=10000"
    );
    anyhow::ensure!(
        args.seed != 1,
        "--seed 1 is the training stream; use another for held-out captions"
    );
    let generator =
        super::tiny_generator(settings, "atelier-tiny", args.weights.as_deref()).await?;
    let data = Generator::new(64).context("generator size")?;

    let kind = |s: &Scene| {
        serde_json::to_value(s)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default()
    };
    // kind → (images, passed, passed by the training image itself)
    let mut by_kind: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let mut distances = Vec::new();
    let mut grid = Vec::new();
    let started = Instant::now();
    for i in 0..args.captions {
        let sample = data.sample(args.seed, i);
        let mut request = ImageRequest::new(sample.caption.clone());
        request.width = 64;
        request.height = 64;
        request.steps = args.steps;
        request.guidance = args.guidance;
        request.seed = i;
        let image = generator
            .generate_blocking(&request, None)?
            .images
            .remove(0)
            .image;
        let wanted = checked_colours(&sample.scene);
        let d = colour_distances(image.as_raw(), &wanted);
        let ok = d.iter().all(|x| *x <= MAX_DELTA_E);
        let reference_ok = colour_distances(&sample.rgb, &wanted)
            .iter()
            .all(|x| *x <= MAX_DELTA_E);
        let entry = by_kind.entry(kind(&sample.scene)).or_default();
        entry.0 += 1;
        entry.1 += u32::from(ok);
        entry.2 += u32::from(reference_ok);
        distances.extend(d);
        if grid.len() < 64 {
            grid.push(image);
        }
        if (i + 1) % 20 == 0 {
            eprintln!(
                "{}/{} captions, {:.1} s",
                i + 1,
                args.captions,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let total: u32 = by_kind.values().map(|v| v.0).sum();
    let passed: u32 = by_kind.values().map(|v| v.1).sum();
    let reference: u32 = by_kind.values().map(|v| v.2).sum();
    distances.sort_by(|a, b| a.total_cmp(b));
    let median = distances
        .get(distances.len() / 2)
        .copied()
        .unwrap_or(f32::NAN);
    let pct = |a: u32, b: u32| 100.0 * a as f64 / b.max(1) as f64;
    let mut md = format!(
        "| scene | captions | colours within ΔE2000 {MAX_DELTA_E} | training images themselves |\n|---|---|---|---|\n"
    );
    for (k, (n, p, r)) in &by_kind {
        md.push_str(&format!(
            "| {k} | {n} | {:.0}% | {:.0}% |\n",
            pct(*p, *n),
            pct(*r, *n)
        ));
    }
    md.push_str(&format!(
        "| **all** | **{total}** | **{:.1}%** | {:.1}% |\n\nMedian ΔE2000 of a requested colour to the nearest dominant colour: {median:.1}. \
         Held-out stream seed {}, {} steps, guidance {}, 64×64.\n",
        pct(passed, total),
        pct(reference, total),
        args.seed,
        args.steps,
        args.guidance
    ));
    if args.classifier.is_file() {
        md.push_str(&shape_adherence(&generator, &args)?);
    } else {
        md.push_str(&format!(
            "\nShape and position adherence not measured: {} is missing (`atelier train tiny-classifier`).\n",
            args.classifier.display()
        ));
    }
    print!("{md}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.grid {
        atelier_inference::diffusion::grid(&grid, 8, 2)
            .save(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Generate the held-out shape captions and let the classifier say what was drawn.
fn shape_adherence(
    generator: &atelier_inference::diffusion::tiny::TinyGenerator,
    args: &TinyEvalArgs,
) -> anyhow::Result<String> {
    use atelier_inference::diffusion::ImageRequest;
    use atelier_inference::diffusion::tiny::classifier::{
        ShapeClassifier, evaluate_real, images_tensor, shape_samples,
    };
    use atelier_inference::diffusion::tiny::data::{Generator, Position, Shape};
    use image::imageops::FilterType;

    anyhow::ensure!(
        (1..=5_000).contains(&args.shape_captions),
        "--shape-captions must be in 1..=5000"
    );
    let classifier = ShapeClassifier::load(&args.classifier)?;
    let real = evaluate_real(&classifier, args.seed, 512)?;
    let data = Generator::new(64).context("generator size")?;
    let samples = shape_samples(args.seed, 0, args.shape_captions);
    // The control: the generator's own image of each caption at the network's size, upsampled
    // as the network's output is. If the classifier cannot read those, it cannot judge the model.
    let native = generator.config().image_size as u32;
    let small = Generator::new(native).context("generator size")?;
    // confusion[asked][judged]: what the classifier called the model's image of each shape (a
    // row's sum is the captions asking for it, its diagonal cell the agreements); and how often
    // it agreed on the control.
    let mut confusion = vec![vec![0u32; Shape::ALL.len()]; Shape::ALL.len()];
    let mut shape_control = vec![0u32; Shape::ALL.len()];
    // (captions, classifier agrees on the model's image, on the control)
    let mut per_position = vec![(0u32, 0u32, 0u32); Position::ALL.len()];
    for (n, (index, _, shape, position)) in samples.iter().enumerate() {
        let caption = data.sample(args.seed, *index).caption;
        let mut request = ImageRequest::new(caption);
        request.width = 64;
        request.height = 64;
        request.steps = args.steps;
        request.guidance = args.guidance;
        request.seed = *index;
        let image = generator
            .generate_blocking(&request, None)?
            .images
            .remove(0)
            .image;
        let reference = small.sample(args.seed, *index);
        let reference = image::RgbImage::from_raw(native, native, reference.rgb)
            .context("control image size")?;
        let reference = image::imageops::resize(&reference, 64, 64, FilterType::Lanczos3);
        let x = images_tensor(&[image.as_raw().as_slice(), reference.as_raw().as_slice()])?;
        let predictions = classifier.predict(&x)?;
        let &[(ps, pp), (rs, rp)] = predictions.as_slice() else {
            anyhow::bail!("{} predictions for 2 images", predictions.len());
        };
        confusion[*shape][ps] += 1;
        shape_control[*shape] += u32::from(rs == *shape);
        per_position[*position].0 += 1;
        per_position[*position].1 += u32::from(pp == *position);
        per_position[*position].2 += u32::from(rp == *position);
        if (n + 1) % 30 == 0 {
            eprintln!("{}/{} shape captions", n + 1, samples.len());
        }
    }
    let pct = |n: u32, ok: u32| 100.0 * ok as f64 / n.max(1) as f64;
    let mut md = format!(
        "\nShape and position adherence on {} held-out shape captions, judged by a CNN trained on the generator \
         (its accuracy on real held-out samples: shape {:.0}%, position {:.0}%). The control column classifies \
         the generator's own image of each caption drawn at the network's {native}×{native} and upsampled to 64×64 \
         as the network's output is.\n\n| label | captions | classifier agrees | control: training image at {native}×{native} | chance |\n|---|---|---|---|---|\n",
        samples.len(),
        real.shape_accuracy * 100.0,
        real.position_accuracy * 100.0
    );
    for (i, s) in Shape::ALL.iter().enumerate() {
        let n = confusion[i].iter().sum();
        md.push_str(&format!(
            "| shape: {} | {n} | {:.0}% | {:.0}% | 33% |\n",
            s.word(),
            pct(n, confusion[i][i]),
            pct(n, shape_control[i])
        ));
    }
    for (p, (n, ok, control)) in Position::ALL.iter().zip(&per_position) {
        md.push_str(&format!(
            "| position: {p:?} | {n} | {:.0}% | {:.0}% | 20% |\n",
            pct(*n, *ok),
            pct(*n, *control)
        ));
    }
    md.push_str("\nWhat the classifier called the model's image of each shape (rows: asked for):\n\n| asked \\ judged |");
    for s in Shape::ALL {
        md.push_str(&format!(" {} |", s.word()));
    }
    md.push_str(&format!("\n|---|{}\n", "---|".repeat(Shape::ALL.len())));
    for (s, row) in Shape::ALL.iter().zip(&confusion) {
        md.push_str(&format!("| {} |", s.word()));
        for count in row {
            md.push_str(&format!(" {count} |"));
        }
        md.push('\n');
    }
    Ok(md)
}

pub async fn tiny_classifier(steps: usize, out: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=100_000).contains(&steps),
        "--steps must be in 1..=100000"
    );
    let out = out.to_path_buf();
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        atelier_inference::diffusion::tiny::classifier::train_classifier(7, steps, &out)
            .map(|r| (r, out))
    })
    .await
    .context("the training thread failed")??;
    eprintln!(
        "trained in {:.0} s; on held-out real samples: shape {:.1}%, position {:.1}%; weights in {}",
        started.elapsed().as_secs_f64(),
        report.0.shape_accuracy * 100.0,
        report.0.position_accuracy * 100.0,
        report.1.display()
    );
    Ok(())
}
