//! Measuring atelier-tiny: does an image show the colours its caption asks for?
//!
//! Dominant colours come from k-means in CIELAB over the image's pixels; a requested colour is
//! *present* when a dominant colour covering at least [`MIN_SHARE`] of the image lies within
//! CIEDE2000 [`MAX_DELTA_E`] of it. An image passes when every requested colour is present.

use palette::color_difference::Ciede2000;

use super::data::{NamedColour, Scene};
pub use crate::vision::colour::Dominant;
use crate::vision::colour::{dominant_colours, to_lab};

/// Largest CIEDE2000 distance at which a requested colour counts as present.
pub const MAX_DELTA_E: f32 = 15.0;
/// Smallest share of the pixels a dominant colour must cover.
pub const MIN_SHARE: f32 = 0.02;

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
