//! Salient-object segmentation with U²-Net-p (u2netp, 4.6 MB): the mask behind background
//! removal.
//!
//! The image is resized to the model's 320×320 input (Lanczos), scaled by its largest channel
//! value and normalised with the ImageNet mean and deviation, as rembg feeds it; the first of the
//! model's seven side outputs (the fused one) is the foreground probability. The mask is those
//! probabilities resized back to the image's size. Unlike rembg the probabilities are not
//! stretched to 0–1 per image, so a picture without a clear subject gives a faint mask instead
//! of an invented one.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{GrayImage, ImageBuffer, Luma, RgbImage};

use super::onnx::{self, Plan};
use crate::error::{Error, Result};

/// Side of the model's square input.
pub const INPUT_SIDE: u32 = 320;
/// Most pixels of an image the segmenter accepts (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// ImageNet mean per RGB channel.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation per RGB channel.
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The u2netp segmenter, loaded once and shared (`&self` methods, thread-safe).
pub struct Segmenter {
    plan: Plan,
}

impl std::fmt::Debug for Segmenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segmenter").finish_non_exhaustive()
    }
}

/// Checks an image's size against what a vision model accepts.
pub(crate) fn check_size(image: &RgbImage, max_pixels: u64) -> Result<()> {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!("the image is {w}×{h}; it needs at least one pixel each way"),
        });
    }
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!(
                "the image is {w}×{h} ({:.1} megapixels); at most {} megapixels",
                pixels as f64 / 1e6,
                max_pixels / 1_000_000
            ),
        });
    }
    Ok(())
}

impl Segmenter {
    /// Loads `u2netp.onnx`.
    pub fn load(path: &Path) -> Result<Self> {
        let side = INPUT_SIDE as usize;
        Ok(Self {
            plan: onnx::load(path, &[1, 3, side, side])?,
        })
    }

    /// The foreground probability of every pixel of `image` (0 background, 255 foreground),
    /// at the image's size.
    pub fn mask(&self, image: &RgbImage) -> Result<GrayImage> {
        check_size(image, MAX_PIXELS)?;
        let side = INPUT_SIDE as usize;
        let small = imageops::resize(image, INPUT_SIDE, INPUT_SIDE, FilterType::Lanczos3);
        let peak = f32::from(small.as_raw().iter().copied().max().unwrap_or(0).max(1));
        let mut input = vec![0f32; 3 * side * side];
        for (i, px) in small.pixels().enumerate() {
            for c in 0..3 {
                let v = f32::from(px.0[c]) / peak;
                input[c * side * side + i] = (v - MEAN[c]) / STD[c];
            }
        }
        let (shape, out) = onnx::run(&self.plan, onnx::tensor(&[1, 3, side, side], input)?)?;
        if shape != [1, 1, side, side] {
            return Err(Error::Onnx {
                action: "read the mask",
                detail: format!("expected a 1×1×{side}×{side} output, got {shape:?}"),
            });
        }
        let probabilities: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(INPUT_SIDE, INPUT_SIDE, out).ok_or_else(|| Error::Onnx {
                action: "read the mask",
                detail: "output size does not match its shape".into(),
            })?;
        let (w, h) = image.dimensions();
        let full = imageops::resize(&probabilities, w, h, FilterType::Lanczos3);
        Ok(GrayImage::from_fn(w, h, |x, y| {
            Luma([(full.get_pixel(x, y).0[0].clamp(0.0, 1.0) * 255.0).round() as u8])
        }))
    }
}
