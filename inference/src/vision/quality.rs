//! Technical measurements of an image: exposure, contrast, clipping, sharpness.
//!
//! All values are on a 0–1 scale of Rec. 709 luma so thresholds read the same at any size.

use image::RgbImage;
use serde::{Deserialize, Serialize};

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Mean luma, 0 (black) to 1 (white).
    pub mean_luma: f32,
    /// Standard deviation of luma: 0 is one flat colour.
    pub contrast: f32,
    /// Share of pixels at the ends of the range (luma ≤ 2/255 or ≥ 253/255).
    pub clipped: f32,
    /// Root mean square of the 4-neighbour Laplacian of luma: edges and detail.
    pub sharpness: f32,
    /// Share of pixels whose colour differs from their right neighbour by more than 1/255 in
    /// any channel, counting isolated flips only: high values mean noise, not detail.
    pub speckle: f32,
}

fn luma(p: &image::Rgb<u8>) -> f32 {
    (0.2126 * f32::from(p[0]) + 0.7152 * f32::from(p[1]) + 0.0722 * f32::from(p[2])) / 255.0
}

/// Measure an image. An empty image measures as all zeros.
pub fn measure(image: &RgbImage) -> Quality {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return Quality {
            mean_luma: 0.0,
            contrast: 0.0,
            clipped: 0.0,
            sharpness: 0.0,
            speckle: 0.0,
        };
    }
    let y: Vec<f32> = image.pixels().map(luma).collect();
    let n = y.len() as f32;
    let mean = y.iter().sum::<f32>() / n;
    let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
    let clipped = y
        .iter()
        .filter(|&&v| v <= 2.0 / 255.0 || v >= 253.0 / 255.0)
        .count() as f32
        / n;
    let (w, h) = (w as usize, h as usize);
    let at = |x: usize, yy: usize| y[yy * w + x];
    let mut lap_sq = 0f64;
    let mut lap_n = 0usize;
    let mut speckles = 0usize;
    for yy in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let c = at(x, yy);
            let l = at(x - 1, yy) + at(x + 1, yy) + at(x, yy - 1) + at(x, yy + 1) - 4.0 * c;
            lap_sq += f64::from(l * l);
            lap_n += 1;
            // An isolated flip: differs from all four neighbours in the same direction.
            let d = [
                c - at(x - 1, yy),
                c - at(x + 1, yy),
                c - at(x, yy - 1),
                c - at(x, yy + 1),
            ];
            let t = 8.0 / 255.0;
            if d.iter().all(|v| *v > t) || d.iter().all(|v| *v < -t) {
                speckles += 1;
            }
        }
    }
    Quality {
        mean_luma: mean,
        contrast: var.sqrt(),
        clipped,
        sharpness: if lap_n == 0 {
            0.0
        } else {
            (lap_sq / lap_n as f64).sqrt() as f32
        },
        speckle: if lap_n == 0 {
            0.0
        } else {
            speckles as f32 / lap_n as f32
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_images_have_no_contrast_and_edges_have_sharpness() {
        let flat = RgbImage::from_pixel(32, 32, image::Rgb([128, 128, 128]));
        let q = measure(&flat);
        assert!(
            q.contrast < 1e-4 && q.sharpness < 1e-4 && q.clipped == 0.0,
            "{q:?}"
        );
        assert!((q.mean_luma - 128.0 / 255.0).abs() < 1e-3);

        let half = RgbImage::from_fn(32, 32, |x, _| {
            if x < 16 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let q = measure(&half);
        assert!((q.contrast - 0.5).abs() < 1e-3, "{q:?}");
        assert_eq!(q.clipped, 1.0);
        assert!(q.sharpness > 0.0 && q.speckle == 0.0);

        let noise = RgbImage::from_fn(32, 32, |x, y| {
            if (x + y) % 2 == 0 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        assert!(measure(&noise).speckle > 0.9);
        assert_eq!(measure(&RgbImage::new(0, 0)).contrast, 0.0);
    }
}
