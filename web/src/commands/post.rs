//! `atelier post`: the post-processing tools on image files.

use anyhow::Context;
use atelier_tools::brand::KitSummary;
use atelier_tools::brand::kit::BrandKit;
use atelier_tools::convert::{self, Format, Metadata};
use atelier_tools::layout::{self, Assets, Template};
use atelier_tools::resize::{Mode, ResizeArgs, resize};

use crate::cli::{PostCommand, ResizeMode};

pub fn run(command: PostCommand) -> anyhow::Result<()> {
    match command {
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
