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
    /// How strongly edges line up on a grid of [`Quality::block_size`] pixels: on the grid's
    /// lines, the share of the crossing pixels with a luma step, less that share on a typical
    /// line (medians over lines, both directions). About 0 for photographs, drawings and
    /// shapes; above [`BLOCKY`] a tiled or JPEG-blocked image.
    #[serde(default)]
    pub blockiness: f32,
    /// The grid period of [`Quality::blockiness`], in pixels (0: none found).
    #[serde(default)]
    pub block_size: u32,
}

/// Blockiness above which an image reads as a patchwork of tiles.
pub const BLOCKY: f32 = 0.25;

/// Grid periods looked for, in pixels.
const BLOCK_SIZES: [usize; 4] = [4, 8, 16, 32];

/// A luma step that counts as an edge.
const EDGE_STEP: f32 = 6.0 / 255.0;

/// The strongest grid among the lines of one axis, given each line's edge occupancy (the share
/// of its pixels with a step across the line): for each phase of the period, the median
/// occupancy of its lines; the peak phase less the median phase. Medians, so that one shape's
/// edge on one line does not make a grid.
fn grid_strength(occupancy: &[f32], period: usize) -> f32 {
    // At least 8 grid lines per phase, so that a median means something.
    if occupancy.len() < period * 8 {
        return 0.0;
    }
    let mut lines: Vec<Vec<f32>> = vec![Vec::new(); period];
    for (i, o) in occupancy.iter().enumerate().skip(1) {
        lines[i % period].push(*o);
    }
    let mut medians: Vec<f32> = lines
        .iter_mut()
        .map(|l| {
            l.sort_by(f32::total_cmp);
            l.get(l.len() / 2).copied().unwrap_or(0.0)
        })
        .collect();
    let peak = medians.iter().copied().fold(0.0, f32::max);
    medians.sort_by(f32::total_cmp);
    (peak - medians[period / 2]).max(0.0)
}

/// The strongest block grid of a luma plane `y` (`w` × `h`): (blockiness, period).
fn blockiness(y: &[f32], w: usize, h: usize) -> (f32, u32) {
    if w < 2 || h < 2 {
        return (0.0, 0);
    }
    let edge = |a: f32, b: f32| f32::from(u8::from((a - b).abs() > EDGE_STEP));
    // Occupancy of each column boundary (x-1 | x) and each row boundary.
    let mut cols = vec![0f32; w];
    let mut rows = vec![0f32; h];
    for r in 0..h {
        for x in 1..w {
            cols[x] += edge(y[r * w + x], y[r * w + x - 1]);
        }
    }
    for r in 1..h {
        for x in 0..w {
            rows[r] += edge(y[r * w + x], y[(r - 1) * w + x]);
        }
    }
    cols.iter_mut().for_each(|c| *c /= h as f32);
    rows.iter_mut().for_each(|c| *c /= w as f32);
    let mut best = (0.0f32, 0u32);
    for period in BLOCK_SIZES {
        // A tile grid shows in both directions.
        let b = grid_strength(&cols, period).min(grid_strength(&rows, period));
        // A grid of period 2p also shows at period p's phases: prefer the larger period only
        // when it is clearly stronger.
        if b > 0.0 && b > best.0 * 1.25 {
            best = (b, period as u32);
        }
    }
    best
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
            blockiness: 0.0,
            block_size: 0,
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
    let (blocky, block_size) = blockiness(&y, w, h);
    Quality {
        mean_luma: mean,
        blockiness: blocky,
        block_size,
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

        // A patchwork of 16-pixel tiles is blocky with period 16; a disc on a ground, a
        // smooth gradient and noise are not.
        let tiles = RgbImage::from_fn(160, 160, |x, y| {
            let t = ((x / 16) * 7 + (y / 16) * 13) % 5;
            image::Rgb([40 + 40 * t as u8, 90, 200 - 30 * t as u8])
        });
        let q = measure(&tiles);
        assert!(q.blockiness > BLOCKY && q.block_size == 16, "{q:?}");
        let disc = RgbImage::from_fn(160, 160, |x, y| {
            let (dx, dy) = (x as f32 - 80.0, y as f32 - 80.0);
            image::Rgb(if dx * dx + dy * dy < 1800.0 {
                [217, 72, 15]
            } else {
                [245, 230, 204]
            })
        });
        assert!(measure(&disc).blockiness < BLOCKY, "{:?}", measure(&disc));
        let gradient = RgbImage::from_fn(160, 160, |x, y| image::Rgb([x as u8, y as u8, 90]));
        assert!(
            measure(&gradient).blockiness < BLOCKY,
            "{:?}",
            measure(&gradient)
        );
        let noisy = RgbImage::from_fn(160, 160, |x, y| {
            let v = ((x * 7919 + y * 104_729) % 251) as u8;
            image::Rgb([v, v, v])
        });
        assert!(measure(&noisy).blockiness < BLOCKY, "{:?}", measure(&noisy));
        assert_eq!(measure(&RgbImage::new(0, 0)).contrast, 0.0);
    }
}
