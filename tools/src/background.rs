//! `remove_background`: the subject cut out of its background, as an RGBA image and its mask.
//!
//! The mask is u2netp's foreground probability (see
//! [`atelier_inference::vision::segment`]). `soft` edges keep the probabilities as alpha, so
//! hair and anti-aliased outlines stay smooth; `hard` edges cut at one half, for flat artwork and
//! for masks other tools threshold themselves.

use atelier_inference::vision::segment::Segmenter;
use image::{GrayImage, Luma, RgbImage, Rgba, RgbaImage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest share of the image the subject must cover; below it there is no clear subject and
/// nothing is cut out.
pub const MIN_SUBJECT_SHARE: f32 = 0.005;

/// How the cut-out's outline is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// Alpha is the model's probability: smooth outlines.
    #[default]
    Soft,
    /// Alpha is 0 or 255, cut at probability one half.
    Hard,
}

/// Arguments of `remove_background`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveBackgroundArgs {
    /// `soft` (default) or `hard`.
    #[serde(default)]
    pub edge: Edge,
}

/// The result of `remove_background`.
#[derive(Debug, Clone)]
pub struct CutOut {
    /// The image with the background transparent.
    pub image: RgbaImage,
    /// The mask the alpha channel was made from (255: subject).
    pub mask: GrayImage,
    /// Share of the image that is subject (mask ≥ one half).
    pub subject_share: f32,
    /// The subject's bounding box, in pixels: `[x, y, width, height]`.
    pub bounds: [u32; 4],
    /// What was done, in words.
    pub summary: String,
}

/// Cut the subject of `image` out with `segmenter`.
pub fn remove_background(
    segmenter: &Segmenter,
    image: &RgbImage,
    args: &RemoveBackgroundArgs,
) -> Result<CutOut> {
    let mut mask = segmenter.mask(image)?;
    if args.edge == Edge::Hard {
        for p in mask.pixels_mut() {
            *p = Luma([if p.0[0] >= 128 { 255 } else { 0 }]);
        }
    }
    let (w, h) = image.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    let mut subject = 0u64;
    for (x, y, p) in mask.enumerate_pixels() {
        if p.0[0] >= 128 {
            subject += 1;
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    let share = subject as f32 / (u64::from(w) * u64::from(h)) as f32;
    if share < MIN_SUBJECT_SHARE {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!(
                "no clear subject: the segmentation model finds one in {:.2}% of the image \
                 (at least {:.1}% is needed); remove_background needs an object that stands out \
                 from its background",
                share * 100.0,
                MIN_SUBJECT_SHARE * 100.0
            ),
        });
    }
    let cut = RgbaImage::from_fn(w, h, |x, y| {
        let [r, g, b] = image.get_pixel(x, y).0;
        Rgba([r, g, b, mask.get_pixel(x, y).0[0]])
    });
    let bounds = [x0, y0, x1 - x0, y1 - y0];
    Ok(CutOut {
        summary: format!(
            "cut out the subject ({:.0}% of the image, {}×{} at ({x0}, {y0})) with {} edges",
            share * 100.0,
            bounds[2],
            bounds[3],
            match args.edge {
                Edge::Soft => "soft",
                Edge::Hard => "hard",
            }
        ),
        image: cut,
        mask,
        subject_share: share,
        bounds,
    })
}
