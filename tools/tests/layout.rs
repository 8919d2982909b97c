//! `compose_layout` on the example brands: golden images, text that never overflows, legible
//! text on busy backgrounds, logo placement and the critique's layout check on the pixels.
//!
//! Golden images live in `tests/golden/`; after an intended change, look at the new output and
//! re-record with `ATELIER_BLESS=1 cargo test --workspace --test layout`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use atelier_tools::brand::KitSummary;
use atelier_tools::brand::kit::BrandKit;
use atelier_tools::critique::{CritiqueInput, critique_image};
use atelier_tools::layout::{
    Assets, ComposeArgs, Composed, ElementKind, LayoutReport, MIN_CONTRAST, Template, compose,
};
use atelier_tools::resize::Rect;
use image::{Rgb, RgbImage};

fn kit(name: &str) -> Result<(KitSummary, Assets)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/brands")
        .join(name);
    let kit = BrandKit::load(&dir)?;
    Ok((KitSummary::of(&kit), Assets::of_kit(&kit)?))
}

/// A sunrise: a sky gradient, a sun, dark hills and fine texture (busy, like a photo).
fn sunrise(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let hill = 0.62 + 0.08 * (fx * 9.0).sin() + 0.04 * (fx * 23.0).cos();
        let grain = ((x * 7 + y * 13) % 17) as f32 - 8.0;
        let (r, g, b) = if fy > hill {
            (70.0 + 30.0 * fx, 45.0, 35.0)
        } else {
            let (dx, dy) = (fx - 0.7, fy - 0.45);
            if dx * dx + dy * dy < 0.012 {
                (250.0, 225.0, 150.0)
            } else {
                (232.0 - 40.0 * fy, 163.0 - 60.0 * fy, 61.0 + 40.0 * fy)
            }
        };
        let c = |v: f32| (v + grain).clamp(0.0, 255.0) as u8;
        Rgb([c(r), c(g), c(b)])
    })
}

/// Black and white stripes: no single text colour reads on it.
fn stripes(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        if (x / 9) % 2 == 0 {
            Rgb([250, 250, 250])
        } else {
            Rgb([15, 15, 15])
        }
    })
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares with a golden image: mean absolute difference ≤ 0.5 per channel and at most 0.2%
/// of pixels off by more than 48 (rasterisers may differ by a shade at glyph edges).
fn matches_golden(name: &str, image: &RgbImage) -> Result<()> {
    let path = golden_dir().join(name);
    if std::env::var_os("ATELIER_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir())?;
        image.save(&path)?;
        return Ok(());
    }
    let golden = image::open(&path)
        .with_context(|| {
            format!(
                "{} is missing; record it with ATELIER_BLESS=1",
                path.display()
            )
        })?
        .to_rgb8();
    if golden.dimensions() != image.dimensions() {
        bail!(
            "{name}: {:?} vs golden {:?}",
            image.dimensions(),
            golden.dimensions()
        );
    }
    let mut sum = 0u64;
    let mut far = 0usize;
    for (a, b) in image.pixels().zip(golden.pixels()) {
        let d: Vec<u32> = (0..3).map(|i| u32::from(a.0[i].abs_diff(b.0[i]))).collect();
        sum += u64::from(d.iter().sum::<u32>());
        if d.iter().any(|&v| v > 48) {
            far += 1;
        }
    }
    let n = u64::from(image.width()) * u64::from(image.height());
    let mean = sum as f64 / (n * 3) as f64;
    let far_share = far as f64 / n as f64;
    if mean > 0.5 || far_share > 0.002 {
        let out = std::env::temp_dir().join(format!("actual-{name}"));
        image.save(&out)?;
        bail!(
            "{name} differs from its golden image: mean {mean:.3}, {:.3}% far pixels; actual in {}",
            far_share * 100.0,
            out.display()
        );
    }
    Ok(())
}

fn inside(r: Rect, area: Rect) -> bool {
    r.x >= area.x
        && r.y >= area.y
        && r.x + r.width <= area.x + area.width
        && r.y + r.height <= area.y + area.height
}

fn overlap(a: Rect, b: Rect) -> bool {
    a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
}

/// Every element inside the safe area, text clear of the logo, contrast as designed ≥ 4.5.
fn check_report(report: &LayoutReport) {
    let logo = report.element(ElementKind::Logo).map(|l| l.rect);
    for e in &report.elements {
        assert!(
            inside(e.rect, report.safe_area),
            "{:?} {:?} leaves the safe area {:?}",
            e.kind,
            e.rect,
            report.safe_area
        );
        if e.kind != ElementKind::Logo {
            if let Some(l) = logo {
                assert!(!overlap(e.rect, l), "{:?} overlaps the logo", e.kind);
            }
            let c = e.contrast.unwrap_or(0.0);
            assert!(c >= MIN_CONTRAST, "{:?} contrast {c}", e.kind);
        }
    }
}

fn design(
    background: &RgbImage,
    brand: &str,
    args: &ComposeArgs,
) -> Result<(Composed, KitSummary)> {
    let (kit, assets) = kit(brand)?;
    Ok((compose(background, &kit, &assets, args)?, kit))
}

#[test]
fn golden_designs_for_both_brands() -> Result<()> {
    let (a, kit) = design(
        &sunrise(540, 540),
        "solstice",
        &ComposeArgs {
            headline: "Slow mornings, bright cups".into(),
            subline: Some("Our autumn single origins are in the roastery now.".into()),
            cta: Some("Find your roast".into()),
            ..ComposeArgs::default()
        },
    )?;
    check_report(&a.report);
    assert_eq!(
        a.report
            .element(ElementKind::Logo)
            .and_then(|l| l.file.as_deref()),
        Some("logo.svg")
    );
    let b = critique_image(CritiqueInput {
        image: &a.image,
        prompt: "a sunrise",
        requested: &[],
        kit: Some(&kit),
        target: Some((540, 540)),
        layout: Some(&a.report),
        pixels: &atelier_tools::critique::PixelFindings::default(),
    });
    let layout = b.checks.iter().find(|c| c.name == "layout");
    assert!(layout.is_some_and(|c| c.passed), "{layout:#?}");
    assert!(b.checks.iter().any(|c| c.name == "size" && c.passed));
    matches_golden("solstice-bottom-left.png", &a.image)?;

    let (panel, _) = design(
        &sunrise(600, 314),
        "voltline",
        &ComposeArgs {
            headline: "Charge further".into(),
            cta: Some("Book a test ride".into()),
            template: Template::Panel,
            ..ComposeArgs::default()
        },
    )?;
    check_report(&panel.report);
    matches_golden("voltline-panel.png", &panel.image)?;
    Ok(())
}

#[test]
fn text_never_overflows_it_shrinks_or_fails_naming_the_field() -> Result<()> {
    let words = [
        "summer", "sale", "bright", "mornings", "roasted", "slowly", "for", "you", "and",
        "everyone", "electric", "rides", "across", "the", "city", "tonight",
    ];
    let sizes = [(1080, 1080), (1200, 628), (1080, 1920), (320, 240)];
    let (kit, assets) = kit("solstice")?;
    let mut composed = 0;
    let mut refused = 0;
    for (i, &(w, h)) in sizes.iter().enumerate() {
        let bg = sunrise(w, h);
        for n in [1usize, 4, 9, 14] {
            let headline: Vec<&str> = (0..n).map(|k| words[(k * 7 + i) % words.len()]).collect();
            let headline = headline.join(" ");
            for template in Template::ALL {
                let args = ComposeArgs {
                    headline: headline.chars().take(90).collect(),
                    subline: (n > 4).then(|| "Fresh from the roastery every week.".into()),
                    cta: (n % 2 == 0).then(|| "Shop now".into()),
                    template,
                    ..ComposeArgs::default()
                };
                match compose(&bg, &kit, &assets, &args) {
                    Ok(c) => {
                        eprintln!("{w}×{h} {template:?} n={n}: {}", c.summary);
                        check_report(&c.report);
                        assert_eq!(c.image.dimensions(), (w, h));
                        composed += 1;
                    }
                    Err(atelier_tools::Error::InvalidRequest { field, reason }) => {
                        assert!(
                            ["headline", "subline", "cta"].contains(&field),
                            "{field}: {reason}"
                        );
                        assert!(reason.contains("does not fit"), "{reason}");
                        refused += 1;
                    }
                    Err(e) => bail!("{w}×{h} {template:?}: {e}"),
                }
            }
        }
    }
    // The usual sizes take every headline; the tiny 320×240 refuses some, never overflows.
    assert!(composed >= 56, "composed {composed}, refused {refused}");
    // Stories keep clear of the apps' bars: 13% of the height at top and bottom.
    let story = compose(
        &sunrise(1080, 1920),
        &kit,
        &assets,
        &ComposeArgs {
            headline: "Slow mornings".into(),
            ..ComposeArgs::default()
        },
    )?;
    assert_eq!(story.report.safe_area.y, 250);
    assert_eq!(story.report.safe_area.height, 1920 - 500);
    check_report(&story.report);
    // A word that cannot fit the width even at the smallest size.
    let err = compose(
        &sunrise(320, 240),
        &kit,
        &assets,
        &ComposeArgs {
            headline: "Pneumonoultramicroscopicsilicovolcanoconiosis".into(),
            ..ComposeArgs::default()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("`headline`") && err.contains("wider than"),
        "{err}"
    );
    Ok(())
}

#[test]
fn busy_backgrounds_get_a_scrim_so_text_reads() -> Result<()> {
    let (c, kit) = design(
        &stripes(800, 800),
        "solstice",
        &ComposeArgs {
            headline: "Winter blend".into(),
            template: Template::Centre,
            ..ComposeArgs::default()
        },
    )?;
    check_report(&c.report);
    assert!(
        c.report.notes.iter().any(|n| n.contains("scrim")),
        "{:?}",
        c.report.notes
    );
    let critique = critique_image(CritiqueInput {
        image: &c.image,
        prompt: "stripes",
        requested: &[],
        kit: Some(&kit),
        target: None,
        layout: Some(&c.report),
        pixels: &atelier_tools::critique::PixelFindings::default(),
    });
    let layout = critique.checks.iter().find(|c| c.name == "layout");
    assert!(layout.is_some_and(|c| c.passed), "{layout:#?}");
    Ok(())
}

#[test]
fn the_critique_catches_text_that_does_not_read() -> Result<()> {
    // Lay out on a light ground, then claim the text is Crema (the ground's own colour).
    let (c, kit) = design(
        &RgbImage::from_pixel(600, 600, Rgb([0xF5, 0xE6, 0xCC])),
        "solstice",
        &ComposeArgs {
            headline: "Good morning".into(),
            logo: Some(false),
            ..ComposeArgs::default()
        },
    )?;
    check_report(&c.report);
    let mut report = c.report.clone();
    let blank = RgbImage::from_pixel(600, 600, Rgb([0xF5, 0xE6, 0xCC]));
    let critique = critique_image(CritiqueInput {
        image: &blank,
        prompt: "x",
        requested: &[],
        kit: Some(&kit),
        target: Some((1080, 1920)),
        layout: Some(&report),
        pixels: &atelier_tools::critique::PixelFindings::default(),
    });
    let layout = critique.checks.iter().find(|c| c.name == "layout");
    assert!(
        layout.is_some_and(|c| !c.passed && c.detail.contains("not visible")),
        "{layout:#?}"
    );
    let size = critique.checks.iter().find(|c| c.name == "size");
    assert!(size.is_some_and(|c| !c.passed), "{size:#?}");
    // A headline moved into the margin is outside the safe area.
    if let Some(h) = report
        .elements
        .iter_mut()
        .find(|e| e.kind == ElementKind::Headline)
    {
        h.rect.x = 0;
    }
    let critique = critique_image(CritiqueInput {
        image: &c.image,
        prompt: "x",
        requested: &[],
        kit: Some(&kit),
        target: None,
        layout: Some(&report),
        pixels: &atelier_tools::critique::PixelFindings::default(),
    });
    let layout = critique.checks.iter().find(|c| c.name == "layout");
    assert!(
        layout.is_some_and(|c| !c.passed && c.detail.contains("safe area")),
        "{layout:#?}"
    );
    Ok(())
}

#[test]
fn bad_arguments_name_the_field() -> Result<()> {
    let (kit, assets) = kit("solstice")?;
    let bg = sunrise(400, 400);
    let cases = [
        (
            ComposeArgs {
                headline: "  ".into(),
                ..ComposeArgs::default()
            },
            "headline",
            "empty",
        ),
        (
            ComposeArgs {
                headline: "x".repeat(91),
                ..ComposeArgs::default()
            },
            "headline",
            "at most 90",
        ),
        (
            ComposeArgs {
                headline: "ok".into(),
                cta: Some("a\u{7}b".into()),
                ..ComposeArgs::default()
            },
            "cta",
            "control character",
        ),
        (
            ComposeArgs {
                headline: "ok".into(),
                preset: Some("poster".into()),
                ..ComposeArgs::default()
            },
            "preset",
            "not a preset",
        ),
    ];
    for (args, field, hint) in cases {
        match compose(&bg, &kit, &assets, &args) {
            Err(atelier_tools::Error::InvalidRequest { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                assert!(reason.contains(hint), "{reason}");
            }
            other => bail!("{args:?}: {:?}", other.map(|c| c.summary)),
        }
    }
    let small = compose(
        &sunrise(150, 400),
        &kit,
        &assets,
        &ComposeArgs {
            headline: "ok".into(),
            ..ComposeArgs::default()
        },
    );
    assert!(small.err().is_some_and(|e| e.to_string().contains("≥ 200")));
    // Without the logo files (a brand stored before logos were), the design goes without one.
    let c = compose(
        &bg,
        &kit,
        &Assets::stored(Vec::new()),
        &ComposeArgs {
            headline: "ok".into(),
            ..ComposeArgs::default()
        },
    )?;
    assert!(c.report.element(ElementKind::Logo).is_none());
    assert!(
        c.report.notes.iter().any(|n| n.contains("not available")),
        "{:?}",
        c.report.notes
    );
    Ok(())
}
