//! `atelier post`: the post-processing tools on image files.

use anyhow::Context;
use atelier_tools::brand::KitSummary;
use atelier_tools::brand::kit::BrandKit;
use atelier_tools::convert::{self, Format, Metadata};
use atelier_tools::layout::{self, Assets, Template};
use atelier_tools::resize::{Mode, ResizeArgs, resize};

use atelier_tools::background::{Edge, RemoveBackgroundArgs, remove_background};
use atelier_tools::upscale::UpscaleArgs;

use crate::cli::{EdgeArg, PostCommand, ResizeMode};
use crate::settings::Settings;

pub async fn run(settings: &Settings, command: PostCommand) -> anyhow::Result<()> {
    match command {
        PostCommand::Upscale(args) => {
            let format = output_format(&args.out)?;
            let image = super::critique::load_image(&args.image)?;
            let upscalers = super::upscalers(settings).await?;
            let scale = args.scale;
            let done = tokio::task::spawn_blocking(move || {
                upscalers.upscale(&image, &UpscaleArgs { scale })
            })
            .await
            .context("the upscaling thread failed")??;
            write_image(&done.image, &args.out, format)?;
            println!("{}: {}", args.out.display(), done.summary);
            Ok(())
        }
        PostCommand::RemoveBackground(args) => {
            let format = match output_format(&args.out)? {
                image::ImageFormat::Jpeg => anyhow::bail!(
                    "--out {}: JPEG has no transparency; write .png or .webp",
                    args.out.display()
                ),
                other => other,
            };
            let image = super::critique::load_image(&args.image)?;
            let segmenter = super::segmenter(settings).await?;
            let edge = match args.edge {
                EdgeArg::Soft => Edge::Soft,
                EdgeArg::Hard => Edge::Hard,
            };
            let cut = tokio::task::spawn_blocking(move || {
                remove_background(&segmenter, &image, &RemoveBackgroundArgs { edge })
            })
            .await
            .context("the segmentation thread failed")??;
            create_parent(&args.out)?;
            cut.image
                .save_with_format(&args.out, format)
                .with_context(|| format!("writing {}", args.out.display()))?;
            if let Some(path) = &args.mask {
                create_parent(path)?;
                cut.mask
                    .save_with_format(path, image::ImageFormat::Png)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{}: {}", args.out.display(), cut.summary);
            Ok(())
        }
        PostCommand::Resize(args) => {
            let format = output_format(&args.out)?;
            let image = super::critique::load_image(&args.image)?;
            let resized = resize(
                &image,
                &ResizeArgs {
                    preset: args.preset,
                    width: args.width,
                    height: args.height,
                    mode: match args.mode {
                        ResizeMode::Crop => Mode::Crop,
                        ResizeMode::Fit => Mode::Fit,
                    },
                    background: args.background,
                },
            )?;
            write_image(&resized.image, &args.out, format)?;
            println!("{}: {}", args.out.display(), resized.summary);
            Ok(())
        }
        PostCommand::Convert(args) => {
            let format = args
                .out
                .extension()
                .and_then(|e| e.to_str())
                .and_then(Format::from_extension)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--out {}: write .png, .jpg, .jpeg or .webp",
                        args.out.display()
                    )
                })?;
            let input = std::fs::read(&args.image)
                .with_context(|| format!("reading {}", args.image.display()))?;
            let converted = convert::convert(
                &input,
                &convert::ConvertArgs {
                    format,
                    quality: args.quality,
                    metadata: if args.keep_metadata {
                        Metadata::Keep
                    } else {
                        Metadata::Strip
                    },
                },
            )?;
            create_parent(&args.out)?;
            std::fs::write(&args.out, &converted.bytes)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!("{}: {}", args.out.display(), converted.summary);
            Ok(())
        }
        PostCommand::Compose(args) => {
            let format = output_format(&args.out)?;
            let template = Template::ALL
                .into_iter()
                .find(|t| t.name() == args.template)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--template {}: use one of {}",
                        args.template,
                        Template::ALL.map(Template::name).join(", ")
                    )
                })?;
            let kit = BrandKit::load(&args.kit)?;
            let assets = Assets::of_kit(&kit)?;
            let image = super::critique::load_image(&args.image)?;
            let composed = layout::compose(
                &image,
                &KitSummary::of(&kit),
                &assets,
                &layout::ComposeArgs {
                    headline: args.headline,
                    subline: args.subline,
                    cta: args.cta,
                    template,
                    logo: Some(!args.no_logo),
                    preset: args.preset,
                },
            )?;
            write_image(&composed.image, &args.out, format)?;
            if let Some(path) = &args.report {
                let json = serde_json::to_vec_pretty(&composed.report)?;
                std::fs::write(path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("{}: {}", args.out.display(), composed.summary);
            Ok(())
        }
    }
}

fn write_image(
    image: &image::RgbImage,
    out: &std::path::Path,
    format: image::ImageFormat,
) -> anyhow::Result<()> {
    create_parent(out)?;
    image
        .save_with_format(out, format)
        .with_context(|| format!("writing {}", out.display()))
}

/// Creates the folder `out` goes in.
fn create_parent(out: &std::path::Path) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// The format the output's extension names.
fn output_format(path: &std::path::Path) -> anyhow::Result<image::ImageFormat> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "png" => Ok(image::ImageFormat::Png),
        "jpg" | "jpeg" => Ok(image::ImageFormat::Jpeg),
        "webp" => Ok(image::ImageFormat::WebP),
        _ => anyhow::bail!(
            "--out {}: write .png, .jpg, .jpeg or .webp (lossless; `atelier post convert` for lossy WebP)",
            path.display()
        ),
    }
}
