//! `upscale`: an image enlarged 2× or 4× with ESRGAN-slim, sharper than interpolation.
//!
//! [`Upscalers`] holds both models; [`scale_for`] picks the smallest factor that reaches a
//! target size, so a 512² image bound for a 1080² post is enlarged 4× and then resized down
//! (never interpolated up).

use std::path::Path;

use atelier_inference::vision::upscale::Upscaler;
use image::RgbImage;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The factors ESRGAN-slim offers.
pub const SCALES: [u32; 2] = [2, 4];

/// Arguments of `upscale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpscaleArgs {
    /// 2 or 4.
    pub scale: u32,
}

/// The result of `upscale`.
#[derive(Debug, Clone)]
pub struct Upscaled {
    pub image: RgbImage,
    /// What was done, in words.
    pub summary: String,
}

/// Both ESRGAN-slim models, loaded once.
#[derive(Debug)]
pub struct Upscalers {
    x2: Upscaler,
    x4: Upscaler,
}

impl Upscalers {
    /// Loads `x2` and `x4` from the `esrgan-slim` model directory.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self {
            x2: Upscaler::load(dir, 2)?,
            x4: Upscaler::load(dir, 4)?,
        })
    }

    /// Enlarges `image` as `args` say.
    pub fn upscale(&self, image: &RgbImage, args: &UpscaleArgs) -> Result<Upscaled> {
        let model = match args.scale {
            2 => &self.x2,
            4 => &self.x4,
            other => {
                return Err(Error::InvalidRequest {
                    field: "scale",
                    reason: format!("{other}× is not available; use 2 or 4"),
                });
            }
        };
        let (w, h) = image.dimensions();
        let image = model.upscale(image)?;
        let (ow, oh) = image.dimensions();
        Ok(Upscaled {
            image,
            summary: format!(
                "upscaled {w}×{h} to {ow}×{oh} ({}× ESRGAN-slim)",
                args.scale
            ),
        })
    }
}

/// The smallest factor that makes `have` cover `want` on both sides; `None` when the image is
/// already large enough. Past 4× the image is enlarged 4× and the rest left to resizing.
pub fn scale_for(have: (u32, u32), want: (u32, u32)) -> Option<u32> {
    let need = f64::max(
        f64::from(want.0) / f64::from(have.0.max(1)),
        f64::from(want.1) / f64::from(have.1.max(1)),
    );
    if need <= 1.0 {
        None
    } else if need <= 2.0 {
        Some(2)
    } else {
        Some(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_sufficient_scale_is_chosen() {
        assert_eq!(scale_for((1080, 1080), (1080, 1080)), None);
        assert_eq!(scale_for((2000, 2000), (1080, 1920)), None);
        assert_eq!(scale_for((600, 600), (1080, 1080)), Some(2));
        assert_eq!(scale_for((512, 512), (1080, 1080)), Some(4));
        // A story from a square: the taller side decides.
        assert_eq!(scale_for((1024, 1024), (1080, 1920)), Some(2));
        assert_eq!(scale_for((64, 64), (1920, 1080)), Some(4));
    }
}
