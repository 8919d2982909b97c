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

/// Most pixels the clustering looks at; larger images are sampled at an even stride (shares
/// are estimated from the sample: a 1080² design clusters in a tenth of the time).
pub const MAX_CLUSTER_SAMPLES: usize = 65_536;

/// The `k` dominant colours of RGB bytes (k-means in Lab, deterministic initialisation by
/// farthest-point seeding from the mean), largest first. Images of more than
/// [`MAX_CLUSTER_SAMPLES`] pixels are sampled evenly.
pub fn dominant_colours(rgb: &[u8], k: usize) -> Vec<Dominant> {
    let count = rgb.len() / 3;
    let stride = count.div_ceil(MAX_CLUSTER_SAMPLES).max(1);
    let pixels: Vec<[f32; 3]> = rgb
        .chunks_exact(3)
        .step_by(stride)
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

/// CIEDE2000 between two CIELAB colours given as `[L, a, b]` (D65), in double precision.
pub fn ciede2000(a: [f64; 3], b: [f64; 3]) -> f64 {
    let lab = |c: [f64; 3]| Lab::<palette::white_point::D65, f64>::new(c[0], c[1], c[2]);
    lab(a).difference(lab(b))
}

/// A CIELAB (D65) colour back in sRGB, clamped to the gamut.
pub fn lab_to_rgb(lab: Lab) -> [u8; 3] {
    let rgb: Srgb<f32> = lab.into_color();
    let c = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    [c(rgb.red), c(rgb.green), c(rgb.blue)]
}

/// WCAG 2.1 relative luminance of an sRGB colour (0 black … 1 white).
pub fn relative_luminance(rgb: [u8; 3]) -> f32 {
    use palette::color_difference::Wcag21RelativeContrast;
    Srgb::new(rgb[0], rgb[1], rgb[2])
        .into_format::<f32>()
        .relative_luminance()
        .luma
}

/// WCAG 2.1 contrast ratio of two sRGB colours: 1 (none) … 21 (black on white). Body text needs
/// 4.5, large text 3.
pub fn contrast_ratio(a: [u8; 3], b: [u8; 3]) -> f32 {
    contrast_of_luminances(relative_luminance(a), relative_luminance(b))
}

/// WCAG 2.1 contrast ratio of two relative luminances.
pub fn contrast_of_luminances(a: f32, b: f32) -> f32 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    (hi + 0.05) / (lo + 0.05)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 34 test pairs of Sharma, Wu and Dalal, "The CIEDE2000 color-difference formula:
    /// implementation notes, supplementary test data, and mathematical observations" (Color
    /// Research & Application 30(1), 2005), table 1: L*a*b* of each sample and the difference.
    const SHARMA: [([f64; 3], [f64; 3], f64); 34] = [
        ([50.0, 2.6772, -79.7751], [50.0, 0.0, -82.7485], 2.0425),
        ([50.0, 3.1571, -77.2803], [50.0, 0.0, -82.7485], 2.8615),
        ([50.0, 2.8361, -74.0200], [50.0, 0.0, -82.7485], 3.4412),
        ([50.0, -1.3802, -84.2814], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -1.1848, -84.8006], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, -0.9009, -85.5211], [50.0, 0.0, -82.7485], 1.0000),
        ([50.0, 0.0, 0.0], [50.0, -1.0, 2.0], 2.3669),
        ([50.0, -1.0, 2.0], [50.0, 0.0, 0.0], 2.3669),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0009], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0010], 7.1792),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0011], 7.2195),
        ([50.0, 2.4900, -0.0010], [50.0, -2.4900, 0.0012], 7.2195),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0009, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0010, -2.4900], 4.8045),
        ([50.0, -0.0010, 2.4900], [50.0, 0.0011, -2.4900], 4.7461),
        ([50.0, 2.5000, 0.0], [50.0, 0.0, -2.5000], 4.3065),
        ([50.0, 2.5000, 0.0], [73.0, 25.0, -18.0], 27.1492),
        ([50.0, 2.5000, 0.0], [61.0, -5.0, 29.0], 22.8977),
        ([50.0, 2.5000, 0.0], [56.0, -27.0, -3.0], 31.9030),
        ([50.0, 2.5000, 0.0], [58.0, 24.0, 15.0], 19.4535),
        ([50.0, 2.5000, 0.0], [50.0, 3.1736, 0.5854], 1.0000),
        ([50.0, 2.5000, 0.0], [50.0, 3.2972, 0.0], 1.0000),
        ([50.0, 2.5000, 0.0], [50.0, 1.8634, 0.5757], 1.0000),
        ([50.0, 2.5000, 0.0], [50.0, 3.2592, 0.3350], 1.0000),
        (
            [60.2574, -34.0099, 36.2677],
            [60.4626, -34.1751, 39.4387],
            1.2644,
        ),
        (
            [63.0109, -31.0961, -5.8663],
            [62.8187, -29.7946, -4.0864],
            1.2630,
        ),
        (
            [61.2901, 3.7196, -5.3901],
            [61.4292, 2.2480, -4.9620],
            1.8731,
        ),
        (
            [35.0831, -44.1164, 3.7933],
            [35.0232, -40.0716, 1.5901],
            1.8645,
        ),
        (
            [22.7233, 20.0904, -46.6940],
            [23.0331, 14.9730, -42.5619],
            2.0373,
        ),
        (
            [36.4612, 47.8580, 18.3852],
            [36.2715, 50.5065, 21.2231],
            1.4146,
        ),
        (
            [90.8027, -2.0831, 1.4410],
            [91.1528, -1.6435, 0.0447],
            1.4441,
        ),
        (
            [90.9257, -0.5406, -0.9208],
            [88.6381, -0.8985, -0.7239],
            1.5381,
        ),
        (
            [6.7747, -0.2908, -2.4247],
            [5.8714, -0.0985, -2.2286],
            0.6377,
        ),
        (
            [2.0776, 0.0795, -1.1350],
            [0.9033, -0.0636, -0.5514],
            0.9082,
        ),
    ];

    #[test]
    fn ciede2000_matches_the_34_published_pairs_of_sharma_wu_and_dalal() {
        for (i, (a, b, expected)) in SHARMA.iter().enumerate() {
            let got = ciede2000(*a, *b);
            // The published values are rounded to 4 decimals.
            assert!(
                (got - expected).abs() <= 1e-4,
                "pair {}: {got:.6}, published {expected}",
                i + 1
            );
            // The difference is symmetric.
            assert!((ciede2000(*b, *a) - got).abs() < 1e-9, "pair {}", i + 1);
        }
    }

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

    #[test]
    fn wcag_contrast_ratios() {
        assert!((contrast_ratio([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-3);
        assert!((contrast_ratio([40, 90, 200], [40, 90, 200]) - 1.0).abs() < 1e-6);
        // #767676 on white is the classic smallest grey that passes AA: 4.54.
        let grey = contrast_ratio([0x76, 0x76, 0x76], [255, 255, 255]);
        assert!((grey - 4.54).abs() < 0.01, "{grey}");
        assert_eq!(
            contrast_ratio([10, 20, 30], [200, 100, 0]),
            contrast_ratio([200, 100, 0], [10, 20, 30])
        );
    }
}
