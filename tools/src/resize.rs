//! `resize`: an image to a channel preset (1080×1080, 1200×628, 1080×1920, 1920×1080) or a
//! custom size, either by cropping to the target's aspect ratio while keeping the subject
//! (`crop`, the default) or by fitting the whole image on a background (`fit`).
//!
//! The smart crop looks for the subject where the detail is: it measures edge energy (luma
//! gradient magnitude) on a reduced copy, slides a window of the target's aspect ratio — as large
//! as the image allows — along the free axis, and keeps the window with the most energy, with a
//! slight pull towards the centre so a uniform image is cropped in the middle.

use std::str::FromStr;

use image::imageops::FilterType;
use image::{Rgb, RgbImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::brand::kit::Hex;
use crate::error::{Error, Result};

/// A named output size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Preset {
    pub name: &'static str,
    pub width: u32,
    pub height: u32,
    /// Where it is used.
    pub use_for: &'static str,
}

/// The channel presets.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "square",
        width: 1080,
        height: 1080,
        use_for: "Instagram and Facebook posts",
    },
    Preset {
        name: "landscape",
        width: 1200,
        height: 628,
        use_for: "web banners, link previews, LinkedIn and X posts",
    },
    Preset {
        name: "story",
        width: 1080,
        height: 1920,
        use_for: "Instagram and Facebook stories, Reels, TikTok",
    },
    Preset {
        name: "widescreen",
        width: 1920,
        height: 1080,
        use_for: "YouTube thumbnails, presentations, displays",
    },
];

/// The preset called `name`.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

/// Smallest and largest side of an output, in pixels.
pub const SIDE_RANGE: std::ops::RangeInclusive<u32> = 16..=8192;
/// Most pixels of an output (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Longest side of the copy the smart crop measures energy on.
const ENERGY_SIDE: u32 = 256;
/// How much the centre is preferred: at the edge a window's energy counts this much less.
const CENTRE_PULL: f64 = 0.15;

/// How to reach the target's aspect ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Fill the frame: crop to the aspect ratio, keeping the subject.
    #[default]
    Crop,
    /// Show the whole image: scale it to fit and fill the rest with `background`.
    Fit,
}

/// Arguments of `resize`: a `preset`, or `width` and `height`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeArgs {
    /// `square` (1080×1080), `landscape` (1200×628), `story` (1080×1920) or `widescreen`
    /// (1920×1080).
    #[serde(default)]
    pub preset: Option<String>,
    /// Custom width in pixels (with `height`, instead of a preset).
    #[serde(default)]
    pub width: Option<u32>,
    /// Custom height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub mode: Mode,
    /// `fit` only: the colour around the image, `#RRGGBB` (default white).
    #[serde(default)]
    pub background: Option<String>,
}

/// A rectangle of the source image, in its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The result of `resize`.
#[derive(Debug, Clone)]
pub struct Resized {
    pub image: RgbImage,
    /// The part of the source that was kept (the whole image for `fit`).
    pub source: Rect,
    /// What was done, in words, for the agent and the user.
    pub summary: String,
}

impl ResizeArgs {
    /// The output size, checked: a known preset, or both sides within [`SIDE_RANGE`] and
    /// [`MAX_PIXELS`].
    pub fn target(&self) -> Result<(u32, u32)> {
        let bad = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        match (&self.preset, self.width, self.height) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => bad(
                "preset",
                "give a preset or width and height, not both".into(),
            ),
            (Some(name), None, None) => PRESETS
                .iter()
                .find(|p| p.name == name.trim())
                .map(|p| (p.width, p.height))
                .map_or_else(
                    || {
                        bad(
                            "preset",
                            format!(
                                "`{name}` is not a preset; presets: {}",
                                PRESETS
                                    .iter()
                                    .map(|p| format!("{} ({}×{})", p.name, p.width, p.height))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    },
                    Ok,
                ),
            (None, Some(w), Some(h)) => {
                for (field, v) in [("width", w), ("height", h)] {
                    if !SIDE_RANGE.contains(&v) {
                        return bad(
                            field,
                            format!(
                                "{v} px is outside {}..={}",
                                SIDE_RANGE.start(),
                                SIDE_RANGE.end()
                            ),
                        );
                    }
                }
                if u64::from(w) * u64::from(h) > MAX_PIXELS {
                    return bad("width", format!("{w}×{h} is more than {MAX_PIXELS} pixels"));
                }
                Ok((w, h))
            }
            (None, Some(_), None) => bad("height", "give height with width".into()),
            (None, None, Some(_)) => bad("width", "give width with height".into()),
            (None, None, None) => bad(
                "preset",
                "give a preset (square, landscape, story, widescreen) or width and height".into(),
            ),
        }
    }

    fn background(&self) -> Result<[u8; 3]> {
        match &self.background {
            None => Ok([255, 255, 255]),
            Some(s) => {
                Hex::from_str(s.trim())
                    .map(Hex::rgb)
                    .map_err(|reason| Error::InvalidRequest {
                        field: "background",
                        reason,
                    })
            }
        }
    }
}

/// Resize `image` as `args` say.
pub fn resize(image: &RgbImage, args: &ResizeArgs) -> Result<Resized> {
    let (w, h) = args.target()?;
    let background = args.background()?;
    if args.background.is_some() && args.mode == Mode::Crop {
        return Err(Error::InvalidRequest {
            field: "background",
            reason: "only `fit` has a background; `crop` fills the frame".into(),
        });
    }
    if image.width() == 0 || image.height() == 0 {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: "the image is empty (0 pixels)".into(),
        });
    }
    match args.mode {
        Mode::Crop => {
            let rect = smart_crop(image, w, h);
            let part = image::imageops::crop_imm(image, rect.x, rect.y, rect.width, rect.height)
                .to_image();
            Ok(Resized {
                image: image::imageops::resize(&part, w, h, FilterType::Lanczos3),
                source: rect,
                summary: format!(
                    "cropped {}×{} at ({}, {}) of the {}×{} image around its subject, scaled to {w}×{h}",
                    rect.width,
                    rect.height,
                    rect.x,
                    rect.y,
                    image.width(),
                    image.height()
                ),
            })
        }
        Mode::Fit => {
            let scale = (f64::from(w) / f64::from(image.width()))
                .min(f64::from(h) / f64::from(image.height()));
            let fw = ((f64::from(image.width()) * scale).round() as u32).clamp(1, w);
            let fh = ((f64::from(image.height()) * scale).round() as u32).clamp(1, h);
            let scaled = image::imageops::resize(image, fw, fh, FilterType::Lanczos3);
            let mut out = RgbImage::from_pixel(w, h, Rgb(background));
            image::imageops::replace(
                &mut out,
                &scaled,
                i64::from((w - fw) / 2),
                i64::from((h - fh) / 2),
            );
            Ok(Resized {
                image: out,
                source: Rect {
                    x: 0,
                    y: 0,
                    width: image.width(),
                    height: image.height(),
                },
                summary: format!(
                    "fitted the {}×{} image into {w}×{h} ({fw}×{fh}, centred on #{:02X}{:02X}{:02X})",
                    image.width(),
                    image.height(),
                    background[0],
                    background[1],
                    background[2]
                ),
            })
        }
    }
}

/// The largest window of aspect `w:h` inside `image` that holds the most edge energy.
pub fn smart_crop(image: &RgbImage, w: u32, h: u32) -> Rect {
    let (iw, ih) = (image.width(), image.height());
    let target = f64::from(w) / f64::from(h);
    // The largest window with the target aspect ratio.
    let (cw, ch) = if f64::from(iw) / f64::from(ih) > target {
        (((f64::from(ih) * target).round() as u32).clamp(1, iw), ih)
    } else {
        (iw, ((f64::from(iw) / target).round() as u32).clamp(1, ih))
    };
    if cw == iw && ch == ih {
        return Rect {
            x: 0,
            y: 0,
            width: iw,
            height: ih,
        };
    }
    let horizontal = cw < iw;
    // Energy per column (or row) of a reduced copy.
    let scale = (f64::from(ENERGY_SIDE) / f64::from(iw.max(ih))).min(1.0);
    let sw = ((f64::from(iw) * scale).round() as u32).max(2);
    let sh = ((f64::from(ih) * scale).round() as u32).max(2);
    let small = image::imageops::resize(image, sw, sh, FilterType::Triangle);
    let luma = |x: u32, y: u32| {
        let p = small.get_pixel(x, y).0;
        0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])
    };
    let lines = if horizontal { sw } else { sh };
    let mut energy = vec![0.0f64; lines as usize];
    for y in 0..sh {
        for x in 0..sw {
            let dx = luma((x + 1).min(sw - 1), y) - luma(x.saturating_sub(1), y);
            let dy = luma(x, (y + 1).min(sh - 1)) - luma(x, y.saturating_sub(1));
            let e = dx.abs() + dy.abs();
            energy[if horizontal { x } else { y } as usize] += e;
        }
    }
    // Slide the window (in reduced pixels) and keep the best.
    let full = if horizontal { iw } else { ih };
    let window = if horizontal { cw } else { ch };
    let win = ((f64::from(window) * scale).round() as usize).clamp(1, lines as usize);
    let mut prefix = vec![0.0f64; energy.len() + 1];
    for (i, e) in energy.iter().enumerate() {
        prefix[i + 1] = prefix[i] + e;
    }
    let positions = energy.len() - win + 1;
    let centre = (positions - 1) as f64 / 2.0;
    let best = (0..positions)
        .map(|start| {
            let sum = prefix[start + win] - prefix[start];
            let off = if centre > 0.0 {
                (start as f64 - centre).abs() / centre
            } else {
                0.0
            };
            (start, sum * (1.0 - CENTRE_PULL * off) + 1e-9 * (1.0 - off))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |b| b.0);
    let offset = ((best as f64 / scale).round() as u32).min(full - window);
    if horizontal {
        Rect {
            x: offset,
            y: 0,
            width: cw,
            height: ch,
        }
    } else {
        Rect {
            x: 0,
            y: offset,
            width: cw,
            height: ch,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat beige square with a detailed subject (a checkered block) at `x0..x1`, `y0..y1`.
    fn scene(size: u32, x0: u32, x1: u32, y0: u32, y1: u32) -> RgbImage {
        RgbImage::from_fn(size, size, |x, y| {
            if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                if (x / 6 + y / 6) % 2 == 0 {
                    Rgb([20, 40, 90])
                } else {
                    Rgb([230, 120, 30])
                }
            } else {
                Rgb([240, 228, 204])
            }
        })
    }

    fn contains(r: Rect, x0: u32, x1: u32, y0: u32, y1: u32) -> bool {
        r.x <= x0 && x1 <= r.x + r.width && r.y <= y0 && y1 <= r.y + r.height
    }

    #[test]
    fn the_crop_keeps_an_off_centre_subject() -> Result<()> {
        // Subject on the left: a centred portrait window (x 88..313) would cut it away.
        let img = scene(400, 20, 110, 150, 250);
        let args = ResizeArgs {
            preset: Some("story".into()),
            ..ResizeArgs::default()
        };
        let out = resize(&img, &args)?;
        assert_eq!(out.image.dimensions(), (1080, 1920));
        assert!(contains(out.source, 20, 110, 150, 250), "{:?}", out.source);
        assert_eq!(out.source.height, 400);
        // Subject at the bottom; a landscape window keeps the full width.
        let img = scene(400, 150, 250, 290, 380);
        let out = resize(
            &img,
            &ResizeArgs {
                preset: Some("landscape".into()),
                ..ResizeArgs::default()
            },
        )?;
        assert_eq!(out.image.dimensions(), (1200, 628));
        assert!(contains(out.source, 150, 250, 290, 380), "{:?}", out.source);
        assert_eq!(out.source.width, 400);
        Ok(())
    }

    #[test]
    fn a_uniform_image_is_cropped_in_the_middle() {
        let img = RgbImage::from_pixel(300, 100, Rgb([10, 20, 30]));
        let r = smart_crop(&img, 100, 100);
        // Middle to within a pixel (the energy map is measured on a reduced copy).
        assert!(r.x.abs_diff(100) <= 1, "{r:?}");
        assert_eq!((r.y, r.width, r.height), (0, 100, 100));
        // Same aspect: nothing is cropped.
        let r = smart_crop(&img, 600, 200);
        assert_eq!(
            r,
            Rect {
                x: 0,
                y: 0,
                width: 300,
                height: 100
            }
        );
    }

    #[test]
    fn fit_keeps_the_whole_image_on_the_background() -> Result<()> {
        let img = RgbImage::from_pixel(100, 100, Rgb([200, 0, 0]));
        let out = resize(
            &img,
            &ResizeArgs {
                width: Some(300),
                height: Some(100),
                mode: Mode::Fit,
                background: Some("#1E3A5F".into()),
                ..ResizeArgs::default()
            },
        )?;
        assert_eq!(out.image.dimensions(), (300, 100));
        assert_eq!(out.image.get_pixel(150, 50).0, [200, 0, 0]);
        assert_eq!(out.image.get_pixel(10, 50).0, [0x1E, 0x3A, 0x5F]);
        assert_eq!(out.image.get_pixel(290, 50).0, [0x1E, 0x3A, 0x5F]);
        Ok(())
    }

    #[test]
    fn bad_arguments_name_the_field_and_what_is_allowed() {
        let img = RgbImage::from_pixel(10, 10, Rgb([0, 0, 0]));
        let cases = [
            (
                ResizeArgs {
                    preset: Some("poster".into()),
                    ..ResizeArgs::default()
                },
                "preset",
                "landscape (1200×628)",
            ),
            (ResizeArgs::default(), "preset", "width and height"),
            (
                ResizeArgs {
                    width: Some(100),
                    ..ResizeArgs::default()
                },
                "height",
                "with width",
            ),
            (
                ResizeArgs {
                    width: Some(9000),
                    height: Some(100),
                    ..ResizeArgs::default()
                },
                "width",
                "16..=8192",
            ),
            (
                ResizeArgs {
                    width: Some(8000),
                    height: Some(8000),
                    ..ResizeArgs::default()
                },
                "width",
                "40000000 pixels",
            ),
            (
                ResizeArgs {
                    preset: Some("square".into()),
                    mode: Mode::Fit,
                    background: Some("navy".into()),
                    ..ResizeArgs::default()
                },
                "background",
                "#RRGGBB",
            ),
            (
                ResizeArgs {
                    preset: Some("square".into()),
                    background: Some("#000000".into()),
                    ..ResizeArgs::default()
                },
                "background",
                "only `fit`",
            ),
        ];
        for (args, field, hint) in cases {
            match resize(&img, &args) {
                Err(Error::InvalidRequest { field: f, reason }) => {
                    assert_eq!(f, field, "{reason}");
                    assert!(reason.contains(hint), "{reason}");
                }
                other => panic!("{args:?} gave {:?}", other.map(|r| r.summary)),
            }
        }
        let empty = RgbImage::new(0, 0);
        assert!(
            resize(
                &empty,
                &ResizeArgs {
                    preset: Some("square".into()),
                    ..ResizeArgs::default()
                }
            )
            .is_err()
        );
    }
}
