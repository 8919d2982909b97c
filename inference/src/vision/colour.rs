//! Colour analysis of images: dominant colours by k-means in CIELAB, distances by CIEDE2000.

use palette::color_difference::Ciede2000;
use palette::{IntoColor, Lab, Srgb};

/// One cluster of an image's pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dominant {
    pub lab: Lab,
    /// Fraction of the pixels.
    pub share: f32,
}

/// An sRGB colour in CIELAB (D65).
pub fn to_lab(rgb: [u8; 3]) -> Lab {
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

/// CIEDE2000 distance between two sRGB colours.
pub fn delta_e(a: [u8; 3], b: [u8; 3]) -> f32 {
    to_lab(a).difference(to_lab(b))
}

/// CIEDE2000 distance between a dominant colour and an sRGB colour.
pub fn delta_e_lab(a: Lab, b: [u8; 3]) -> f32 {
    a.difference(to_lab(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_flat_halves_give_two_dominant_colours_of_half_each() {
        let mut rgb = Vec::new();
        for i in 0..100 {
            rgb.extend(if i < 50 {
                [250, 250, 250]
            } else {
                [20, 30, 90]
            });
        }
        let d = dominant_colours(&rgb, 4);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!((d[0].share - 0.5).abs() < 1e-6);
        assert!(
            delta_e_lab(d[1].lab, [20, 30, 90]) < 0.5 || delta_e_lab(d[0].lab, [20, 30, 90]) < 0.5
        );
        assert!(delta_e([255, 0, 0], [0, 0, 255]) > 40.0);
    }
}
