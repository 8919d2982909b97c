//! Logos: SVG (rendered with resvg, `<text>` set in the layout's fonts) or PNG/JPEG, rasterised
//! at the width the layout gives them.

use std::path::Path;

use resvg::tiny_skia::{self, Pixmap, Transform};
use resvg::usvg;

use super::fonts::FontBook;
use crate::error::{Error, Result};

/// Largest logo file read (an SVG or a raster logo is far smaller).
const MAX_LOGO_FILE: u64 = 8 * 1024 * 1024;

/// A logo ready to rasterise.
pub enum LogoSource {
    Svg(Box<usvg::Tree>),
    Raster(image::RgbaImage),
}

impl LogoSource {
    /// Parses a logo file's bytes (SVG when `name` ends in `.svg`, else PNG or JPEG); errors
    /// name the file.
    pub fn parse(name: &str, bytes: &[u8], fonts: &FontBook) -> Result<Self> {
        if bytes.len() as u64 > MAX_LOGO_FILE {
            return Err(Error::InvalidRequest {
                field: "logo",
                reason: format!(
                    "{name} is {} bytes; logos may be at most {MAX_LOGO_FILE}",
                    bytes.len()
                ),
            });
        }
        let is_svg = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if is_svg {
            let options = usvg::Options {
                fontdb: fonts.database(),
                font_family: "DejaVu Sans".into(),
                ..usvg::Options::default()
            };
            let tree =
                usvg::Tree::from_data(bytes, &options).map_err(|e| Error::InvalidRequest {
                    field: "logo",
                    reason: format!("{name} is not a valid SVG: {e}"),
                })?;
            Ok(Self::Svg(Box::new(tree)))
        } else {
            let image = image::load_from_memory(bytes).map_err(|e| Error::InvalidRequest {
                field: "logo",
                reason: format!("{name} is not a PNG or JPEG image: {e}"),
            })?;
            Ok(Self::Raster(image.to_rgba8()))
        }
    }

    /// Width over height.
    pub fn aspect(&self) -> f32 {
        match self {
            Self::Svg(tree) => tree.size().width() / tree.size().height().max(1e-3),
            Self::Raster(img) => img.width() as f32 / img.height().max(1) as f32,
        }
    }

    /// The logo at `width` pixels (height from its aspect ratio), premultiplied RGBA.
    pub fn render(&self, width: u32) -> Result<Pixmap> {
        let height = ((width as f32 / self.aspect()).round() as u32).max(1);
        let mut pixmap = Pixmap::new(width.max(1), height).ok_or(Error::InvalidRequest {
            field: "logo",
            reason: format!("cannot make a {width}×{height} logo"),
        })?;
        match self {
            Self::Svg(tree) => {
                let scale = width as f32 / tree.size().width().max(1e-3);
                resvg::render(
                    tree,
                    Transform::from_scale(scale, scale),
                    &mut pixmap.as_mut(),
                );
            }
            Self::Raster(img) => {
                let scaled = image::imageops::resize(
                    img,
                    width,
                    height,
                    image::imageops::FilterType::Lanczos3,
                );
                for (x, y, p) in scaled.enumerate_pixels() {
                    let [r, g, b, a] = p.0;
                    let c = tiny_skia::ColorU8::from_rgba(r, g, b, a).premultiply();
                    if let Some(px) = pixmap.pixels_mut().get_mut((y * width + x) as usize) {
                        *px = c;
                    }
                }
            }
        }
        Ok(pixmap)
    }
}
