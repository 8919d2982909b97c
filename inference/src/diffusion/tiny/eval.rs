//! Measuring atelier-tiny: does an image show the colours its caption asks for?
//!
//! Dominant colours come from k-means in CIELAB over the image's pixels; a requested colour is
//! *present* when a dominant colour covering at least [`MIN_SHARE`] of the image lies within
//! CIEDE2000 [`MAX_DELTA_E`] of it. An image passes when every requested colour is present.

use palette::color_difference::Ciede2000;
use palette::{IntoColor, Lab, Srgb};

use super::data::{NamedColour, Scene};

/// Largest CIEDE2000 distance at which a requested colour counts as present.
pub const MAX_DELTA_E: f32 = 15.0;
/// Smallest share of the pixels a dominant colour must cover.
pub const MIN_SHARE: f32 = 0.02;

/// One cluster of an image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dominant {
    pub lab: Lab,
    /// Fraction of the pixels.
    pub share: f32,
}

fn to_lab(rgb: [u8; 3]) -> Lab {
    Srgb::new(rgb[0], rgb[1], rgb[2])
        .into_format::<f32>()
        .into_color()
}

/// The `k` dominant colours of RGB bytes (k-means in Lab, deterministic initialisation by
/// farthest-point seeding from the mean), largest first.
pub fn dominant_colours(rgb: &[u8], k: usize) -> Vec<Dominant> {
    let pixels: Vec<[f32; 3]> = rgb
        .chunks_exact(3)
        .map(|p| {
            let lab = to_lab([p[0], p[1], p[2]]);
            [lab.l, lab.a, lab.b]
        })
        .collect();
    if pixels.is_empty() || k == 0 {
        return Vec::new();
    }
    let dist = |a: &[f32; 3], b: &[f32; 3]| (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f32>();
    let n = pixels.len() as f32;
    let mean = pixels.iter().fold([0f32; 3], |acc, p| {
        [acc[0] + p[0] / n, acc[1] + p[1] / n, acc[2] + p[2] / n]
    });
    let mut centres: Vec<[f32; 3]> = Vec::with_capacity(k);
    let mut reference = mean;
    for _ in 0..k {
        let far = pixels
            .iter()
            .filter(|p| centres.iter().all(|c| dist(c, p) > 1e-6))
            .max_by(|a, b| {
                let da = centres
                    .iter()
                    .map(|c| dist(c, a))
                    .fold(dist(&reference, a), f32::min);
                let db = centres
                    .iter()
                    .map(|c| dist(c, b))
                    .fold(dist(&reference, b), f32::min);
                da.total_cmp(&db)
            });
        match far {
            Some(p) => centres.push(*p),
            None => break,
        }
        reference = centres[0];
    }
    let mut assign = vec![0usize; pixels.len()];
    for _ in 0..20 {
        let mut sums = vec![[0f32; 4]; centres.len()];
        for (i, p) in pixels.iter().enumerate() {
            let best = (0..centres.len())
                .min_by(|&a, &b| dist(&centres[a], p).total_cmp(&dist(&centres[b], p)))
                .unwrap_or(0);
            assign[i] = best;
            let s = &mut sums[best];
            s[0] += p[0];
            s[1] += p[1];
            s[2] += p[2];
            s[3] += 1.0;
        }
        let mut moved = 0f32;
        for (c, s) in centres.iter_mut().zip(&sums) {
            if s[3] > 0.0 {
                let next = [s[0] / s[3], s[1] / s[3], s[2] / s[3]];
                moved = moved.max(dist(c, &next));
                *c = next;
            }
        }
        if moved < 1e-3 {
            break;
        }
    }
    let mut counts = vec![0usize; centres.len()];
    for a in assign {
        counts[a] += 1;
    }
    let mut out: Vec<Dominant> = centres
        .iter()
        .zip(&counts)
        .filter(|(_, c)| **c > 0)
        .map(|(c, count)| Dominant {
            lab: Lab::new(c[0], c[1], c[2]),
            share: *count as f32 / n,
        })
        .collect();
    out.sort_by(|a, b| b.share.total_cmp(&a.share));
    out
}

/// For each requested colour, the CIEDE2000 distance to the nearest dominant colour that
/// covers at least [`MIN_SHARE`] of the image.
pub fn colour_distances(rgb: &[u8], requested: &[NamedColour]) -> Vec<f32> {
    let dominant: Vec<Dominant> = dominant_colours(rgb, requested.len() + 2)
        .into_iter()
        .filter(|d| d.share >= MIN_SHARE)
        .collect();
    requested
        .iter()
        .map(|c| {
            let want = to_lab(c.rgb);
            dominant
                .iter()
                .map(|d| want.difference(d.lab))
                .fold(f32::INFINITY, f32::min)
        })
        .collect()
}

/// The colours a caption's check looks for: confetti pieces are too small to be dominant, so
/// only its background counts; every other scene's colours all count.
pub fn checked_colours(scene: &Scene) -> Vec<NamedColour> {
    match scene {
        Scene::Confetti { background, .. } => vec![*background],
        other => other.colours(),
    }
}

/// True when every checked colour of the scene is present in the image.
pub fn passes(rgb: &[u8], scene: &Scene) -> bool {
    colour_distances(rgb, &checked_colours(scene))
        .iter()
        .all(|d| *d <= MAX_DELTA_E)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::tiny::data::{COLOURS, Generator};

    #[test]
    fn a_flat_fill_has_its_colour_and_not_others() {
        let red = COLOURS[0];
        let rgb: Vec<u8> = std::iter::repeat_n(red.rgb, 64 * 64).flatten().collect();
        let d = colour_distances(&rgb, &[red, COLOURS[8]]);
        assert!(d[0] < 0.5, "{d:?}");
        assert!(d[1] > 40.0, "{d:?}");
    }

    #[test]
    fn the_training_data_itself_passes() {
        // The check must accept what the generator draws for the caption, or it measures nothing.
        let g = Generator::new(64).unwrap_or_else(|| unreachable!());
        let total = 200;
        let passed = (0..total)
            .filter(|&i| {
                let s = g.sample(99, i);
                passes(&s.rgb, &s.scene)
            })
            .count();
        assert!(passed as f32 / total as f32 >= 0.95, "{passed}/{total}");
    }
}
