//! `atelier critique`: the critique checks of one image file, against a brief and a brand.

use std::path::Path;

use anyhow::{Context, bail};
use atelier_inference::diffusion::tiny::data::COLOURS;
use atelier_tools::brand::kit::Hex;
use atelier_tools::brand::{Ingestor, KitSummary};
use atelier_tools::critique::{Critique, CritiqueInput, RequestedColour, critique_image};

use crate::cli::CritiqueArgs;
use crate::settings::Settings;

/// Largest image the command reads: 40 megapixels (8K × 5K).
pub const MAX_PIXELS: u64 = 40_000_000;

/// Decode `path` as an image, refusing empty, oversized and corrupt files with the reason.
pub fn load_image(path: &Path) -> anyhow::Result<image::RgbImage> {
    let mut reader = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if reader.format().is_none() {
        bail!("{} is not a PNG or JPEG image", path.display());
    }
    let (w, h) = reader.into_dimensions().map_err(|e| {
        anyhow::anyhow!(
            "{} is not a PNG or JPEG image this command can read ({e})",
            path.display()
        )
    })?;
    if w == 0 || h == 0 {
        bail!(
            "{} is {w}×{h}: an image needs at least one pixel",
            path.display()
        );
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS {
        bail!(
            "{} is {w}×{h} ({:.1} megapixels); at most {} megapixels",
            path.display(),
            pixels as f64 / 1e6,
            MAX_PIXELS / 1_000_000
        );
    }
    reader = image::ImageReader::open(path)?.with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + (1 << 20));
    reader.limits(limits);
    Ok(reader
        .decode()
        .with_context(|| {
            format!(
                "{} is not a readable image (corrupt or truncated?)",
                path.display()
            )
        })?
        .to_rgb8())
}

/// A colour named on the command line: `#RRGGBB`, a colour of the brand's palette, or a plain
/// colour word.
fn resolve(name: &str, kit: Option<&KitSummary>) -> anyhow::Result<RequestedColour> {
    if let Ok(hex) = name.parse::<Hex>() {
        return Ok(RequestedColour {
            name: name.to_string(),
            rgb: hex.rgb(),
        });
    }
    if let Some(c) = kit.and_then(|k| k.palette.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
    {
        return Ok(RequestedColour {
            name: c.name.clone(),
            rgb: c.rgb(),
        });
    }
    if let Some(c) = COLOURS.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
        return Ok(RequestedColour {
            name: c.name.to_string(),
            rgb: c.rgb,
        });
    }
    let mut known: Vec<String> = kit
        .map(|k| k.palette.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    known.extend(COLOURS.iter().map(|c| c.name.to_string()));
    bail!(
        "`--colour {name}`: not #RRGGBB, a colour of the brand or a plain colour; known: {}",
        known.join(", ")
    )
}

pub async fn run(settings: &Settings, args: CritiqueArgs) -> anyhow::Result<()> {
    let image = load_image(&args.image)?;
    let kit = match &args.brand {
        None => None,
        Some(brand) => {
            let tenant = args
                .tenant
                .clone()
                .unwrap_or_else(|| settings.brands.default_tenant.clone());
            let embedder = super::embedder(settings).await?;
            let store = super::brand_store(settings, embedder.dimensions()).await?;
            let ingestor = Ingestor::new(store.clone(), embedder);
            match ingestor.kit(&tenant, brand).await? {
                Some(kit) => Some(kit),
                None => {
                    let known = store.brands(&tenant).await?;
                    bail!(
                        "`--brand {brand}`: no such brand for tenant `{tenant}`; known: {} (`atelier brands ingest DIR` adds one)",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    );
                }
            }
        }
    };
    let requested = args
        .colours
        .iter()
        .map(|c| resolve(c, kit.as_ref()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let brief = args.brief.clone().unwrap_or_default();
    let target = match &args.channel {
        None => None,
        Some(name) => {
            let p = atelier_tools::resize::preset(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "`--channel {name}`: use one of {}",
                    atelier_tools::resize::PRESETS
                        .iter()
                        .map(|p| format!("{} ({}×{})", p.name, p.width, p.height))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            Some((p.width, p.height))
        }
    };
    let layout: Option<atelier_tools::layout::LayoutReport> = match &args.layout {
        None => None,
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "`--layout {}`: not a layout report (write one with `atelier post compose --report`)",
                    path.display()
                )
            })?)
        }
    };
    let critics = super::critics(settings).await?;
    let critique = tokio::task::spawn_blocking(move || {
        let seen = critics.look(&image, &brief);
        critique_image(CritiqueInput {
            image: &image,
            prompt: &brief,
            requested: &requested,
            kit: kit.as_ref(),
            target,
            layout: layout.as_ref(),
            pixels: &seen,
        })
    })
    .await
    .context("the critique thread failed")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&critique)?);
    } else {
        print_critique(&critique);
    }
    if args.fail && !critique.passed {
        bail!("the image did not pass every check");
    }
    Ok(())
}

fn print_critique(c: &Critique) {
    println!(
        "{} (score {:.2})",
        if c.passed { "PASS" } else { "FAIL" },
        c.score
    );
    for check in &c.checks {
        println!(
            "  {} {:<18} {:.2}  {}",
            if check.passed { "✓" } else { "✗" },
            check.name,
            check.score,
            check.detail
        );
        if let Some(fix) = &check.fix {
            println!("      fix: {fix}");
        }
    }
    for missing in &c.not_measured {
        println!("  - {:<18} not measured: {}", missing.name, missing.reason);
    }
}
