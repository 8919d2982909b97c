//! `atelier post`: the post-processing tools on image files.

use anyhow::Context;
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
            if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            resized
                .image
                .save_with_format(&args.out, format)
                .with_context(|| format!("writing {}", args.out.display()))?;
            println!("{}: {}", args.out.display(), resized.summary);
            Ok(())
        }
    }
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
        _ => anyhow::bail!(
            "--out {}: write .png, .jpg or .jpeg (WebP is not built in yet)",
            path.display()
        ),
    }
}
