//! `convert`: an image to PNG, JPEG or WebP, with a quality for the lossy formats, keeping or
//! stripping its metadata (ICC colour profile and EXIF).
//!
//! PNG is lossless. JPEG takes a quality of 1–100 (default 90); transparency is flattened onto
//! white. WebP at quality 100 (the default) is lossless (the `image` crate's encoder, with
//! metadata); below 100 it is lossy through libwebp, which writes no metadata — asking to keep
//! metadata in a lossy WebP is refused rather than silently dropped.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageReader, Limits};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest input accepted, in bytes.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// Most pixels of an input (40 megapixels, as for every image tool).
pub const MAX_PIXELS: u64 = crate::resize::MAX_PIXELS;
/// JPEG quality when none is given.
pub const DEFAULT_JPEG_QUALITY: u8 = 90;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Png,
    Jpeg,
    Webp,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
        }
    }

    /// The format a file extension names (`png`, `jpg`/`jpeg`, `webp`).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "png" => Some(Format::Png),
            "jpg" | "jpeg" => Some(Format::Jpeg),
            "webp" => Some(Format::Webp),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
        }
    }
}

/// What happens to the source's metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Metadata {
    /// Drop the ICC profile and EXIF (the default: EXIF can carry locations and device data).
    #[default]
    Strip,
    /// Copy the ICC profile and EXIF into the output.
    Keep,
}

/// Arguments of `convert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertArgs {
    pub format: Format,
    /// 1–100: JPEG quality (default 90); WebP below 100 is lossy, 100 lossless (the default).
    /// PNG takes none.
    #[serde(default)]
    pub quality: Option<u8>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// The result of `convert`.
#[derive(Debug, Clone)]
pub struct Converted {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    /// The metadata carried over: `icc`, `exif`.
    pub kept: Vec<&'static str>,
    pub summary: String,
}

impl ConvertArgs {
    fn quality(&self) -> Result<u8> {
        match (self.format, self.quality) {
            (Format::Png, Some(_)) => Err(Error::InvalidRequest {
                field: "quality",
                reason: "PNG is lossless and takes no quality; leave it out".into(),
            }),
            (_, Some(q)) if !(1..=100).contains(&q) => Err(Error::InvalidRequest {
                field: "quality",
                reason: format!("{q} is outside 1..=100"),
            }),
            (Format::Jpeg, q) => Ok(q.unwrap_or(DEFAULT_JPEG_QUALITY)),
            (_, q) => Ok(q.unwrap_or(100)),
        }
    }
}

/// Converts encoded image bytes (PNG, JPEG or WebP) as `args` say.
pub fn convert(input: &[u8], args: &ConvertArgs) -> Result<Converted> {
    let quality = args.quality()?;
    let lossy_webp = args.format == Format::Webp && quality < 100;
    if lossy_webp && args.metadata == Metadata::Keep {
        return Err(Error::InvalidRequest {
            field: "metadata",
            reason: "lossy WebP (quality below 100) is written without metadata; use quality 100 \
                     (lossless) to keep it, or strip it"
                .into(),
        });
    }
    if input.len() > MAX_INPUT_BYTES {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!("{} bytes; at most {MAX_INPUT_BYTES}", input.len()),
        });
    }
    let bad_image = |e: image::ImageError| Error::InvalidRequest {
        field: "image",
        reason: format!("not a readable PNG, JPEG or WebP image: {e}"),
    };
    let mut reader = ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| Error::InvalidRequest {
            field: "image",
            reason: e.to_string(),
        })?;
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4 + 1024 * 1024);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad_image)?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 || u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(Error::InvalidRequest {
            field: "image",
            reason: format!("{w}×{h}: images must have 1 to {MAX_PIXELS} pixels"),
        });
    }
    let (icc, exif) = match args.metadata {
        Metadata::Keep => (
            decoder.icc_profile().map_err(bad_image)?,
            decoder.exif_metadata().map_err(bad_image)?,
        ),
        Metadata::Strip => (None, None),
    };
    let image = DynamicImage::from_decoder(decoder).map_err(bad_image)?;
    let alpha = image.color().has_alpha();

    let mut out = Vec::new();
    let mut kept = Vec::new();
    let encode_error = |e: image::ImageError| Error::InvalidRequest {
        field: "format",
        reason: format!("encoding failed: {e}"),
    };
    match args.format {
        Format::Png | Format::Jpeg | Format::Webp if !lossy_webp => {
            let pixels = match (args.format, alpha) {
                (Format::Jpeg, true) => flatten(&image),
                (_, true) => DynamicImage::ImageRgba8(image.to_rgba8()),
                (_, false) => DynamicImage::ImageRgb8(image.to_rgb8()),
            };
            let metadata = (icc, exif);
            match args.format {
                Format::Png => encode_with(
                    image::codecs::png::PngEncoder::new(&mut out),
                    &pixels,
                    metadata,
                    &mut kept,
                ),
                Format::Jpeg => encode_with(
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality),
                    &pixels,
                    metadata,
                    &mut kept,
                ),
                Format::Webp => encode_with(
                    image::codecs::webp::WebPEncoder::new_lossless(&mut out),
                    &pixels,
                    metadata,
                    &mut kept,
                ),
            }
            .map_err(encode_error)?;
        }
        _ => {
            let memory = if alpha {
                let rgba = image.to_rgba8();
                webp::Encoder::from_rgba(rgba.as_raw(), w, h).encode(f32::from(quality))
            } else {
                let rgb = image.to_rgb8();
                webp::Encoder::from_rgb(rgb.as_raw(), w, h).encode(f32::from(quality))
            };
            out.extend_from_slice(&memory);
        }
    }
    let summary = format!(
        "{w}×{h} as {}{}, {} bytes; metadata {}",
        args.format.extension().to_uppercase(),
        match args.format {
            Format::Png => String::new(),
            Format::Webp if !lossy_webp => " (lossless)".into(),
            _ => format!(" at quality {quality}"),
        },
        out.len(),
        match args.metadata {
            Metadata::Strip => "stripped".to_string(),
            Metadata::Keep if kept.is_empty() => "kept (the source had none)".to_string(),
            Metadata::Keep => format!("kept ({})", kept.join(", ")),
        }
    );
    Ok(Converted {
        bytes: out,
        format: args.format,
        width: w,
        height: h,
        kept,
        summary,
    })
}

/// Encodes `pixels` with `encoder`, carrying the metadata it can hold.
fn encode_with<E: ImageEncoder>(
    mut encoder: E,
    pixels: &DynamicImage,
    (icc, exif): (Option<Vec<u8>>, Option<Vec<u8>>),
    kept: &mut Vec<&'static str>,
) -> image::ImageResult<()> {
    if let Some(icc) = icc
        && encoder.set_icc_profile(icc).is_ok()
    {
        kept.push("icc");
    }
    if let Some(exif) = exif
        && encoder.set_exif_metadata(exif).is_ok()
    {
        kept.push("exif");
    }
    encoder.write_image(
        pixels.as_bytes(),
        pixels.width(),
        pixels.height(),
        pixels.color().into(),
    )
}

/// Transparent pixels composited onto white (JPEG has no alpha).
fn flatten(image: &DynamicImage) -> DynamicImage {
    let rgba = image.to_rgba8();
    let rgb = image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u16::from(a);
        let mix = |c: u8| ((u16::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(r), mix(g), mix(b)])
    });
    DynamicImage::ImageRgb8(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gradient with a circle: something lossy codecs must work at.
    fn picture() -> image::RgbImage {
        image::RgbImage::from_fn(96, 64, |x, y| {
            let inside = (x as i32 - 48).pow(2) + (y as i32 - 32).pow(2) < 400;
            if inside {
                image::Rgb([217, 72, 15])
            } else {
                image::Rgb([(x * 2) as u8, (y * 3) as u8, 180])
            }
        })
    }

    /// A PNG of `picture()` carrying an ICC profile and EXIF.
    fn png_with_metadata() -> Result<Vec<u8>> {
        let img = picture();
        let mut out = Vec::new();
        let mut enc = image::codecs::png::PngEncoder::new(&mut out);
        enc.set_icc_profile(b"fake icc profile bytes".to_vec())
            .map_err(|e| Error::InvalidRequest {
                field: "icc",
                reason: e.to_string(),
            })?;
        enc.set_exif_metadata(b"Exif\0\0MM\0*\0\0\0\x08\0\0".to_vec())
            .map_err(|e| Error::InvalidRequest {
                field: "exif",
                reason: e.to_string(),
            })?;
        enc.write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::InvalidRequest {
            field: "png",
            reason: e.to_string(),
        })?;
        Ok(out)
    }

    fn decode(bytes: &[u8]) -> image::RgbImage {
        image::load_from_memory(bytes)
            .map(|i| i.to_rgb8())
            .unwrap_or_default()
    }

    fn mean_error(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
        let sum: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        sum as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn every_format_round_trips_and_quality_trades_size() -> Result<()> {
        let src = png_with_metadata()?;
        let original = picture();
        let args = |format, quality| ConvertArgs {
            format,
            quality,
            metadata: Metadata::Strip,
        };
        // Lossless: the same pixels.
        for format in [Format::Png, Format::Webp] {
            let c = convert(&src, &args(format, None))?;
            assert_eq!(decode(&c.bytes), original, "{format:?}");
        }
        let webp = convert(&src, &args(Format::Webp, None))?;
        assert_eq!(&webp.bytes[..4], b"RIFF");
        assert_eq!(&webp.bytes[8..12], b"WEBP");
        // Lossy: close, and smaller at a lower quality.
        for format in [Format::Jpeg, Format::Webp] {
            let high = convert(&src, &args(format, Some(95)))?;
            let low = convert(&src, &args(format, Some(20)))?;
            assert!(low.bytes.len() < high.bytes.len(), "{format:?}");
            assert!(
                mean_error(&decode(&high.bytes), &original) < 4.0,
                "{format:?}"
            );
            assert_eq!((high.width, high.height), (96, 64));
        }
        Ok(())
    }

    #[test]
    fn metadata_is_kept_or_stripped_as_asked() -> Result<()> {
        let src = png_with_metadata()?;
        let read = |bytes: &[u8]| -> (Option<Vec<u8>>, Option<Vec<u8>>) {
            let mut d = ImageReader::new(Cursor::new(bytes))
                .with_guessed_format()
                .ok()
                .and_then(|r| r.into_decoder().ok())
                .expect("decodable");
            (
                d.icc_profile().ok().flatten(),
                d.exif_metadata().ok().flatten(),
            )
        };
        for format in [Format::Png, Format::Jpeg, Format::Webp] {
            let kept = convert(
                &src,
                &ConvertArgs {
                    format,
                    quality: None,
                    metadata: Metadata::Keep,
                },
            )?;
            assert_eq!(kept.kept, ["icc", "exif"], "{format:?}");
            let (icc, exif) = read(&kept.bytes);
            assert_eq!(
                icc.as_deref(),
                Some(&b"fake icc profile bytes"[..]),
                "{format:?}"
            );
            assert!(exif.is_some(), "{format:?}");
            let stripped = convert(
                &src,
                &ConvertArgs {
                    format,
                    quality: None,
                    metadata: Metadata::Strip,
                },
            )?;
            assert_eq!(read(&stripped.bytes), (None, None), "{format:?}");
        }
        Ok(())
    }

    #[test]
    fn bad_requests_name_the_field() -> Result<()> {
        let src = png_with_metadata()?;
        let cases = [
            (
                Format::Png,
                Some(80),
                Metadata::Strip,
                "quality",
                "lossless",
            ),
            (Format::Jpeg, Some(0), Metadata::Strip, "quality", "1..=100"),
            (
                Format::Webp,
                Some(70),
                Metadata::Keep,
                "metadata",
                "lossy WebP",
            ),
        ];
        for (format, quality, metadata, field, hint) in cases {
            match convert(
                &src,
                &ConvertArgs {
                    format,
                    quality,
                    metadata,
                },
            ) {
                Err(Error::InvalidRequest { field: f, reason }) => {
                    assert_eq!(f, field, "{reason}");
                    assert!(reason.contains(hint), "{reason}");
                }
                other => panic!("{format:?}: {:?}", other.map(|c| c.summary)),
            }
        }
        let corrupt = &src[..src.len() / 2];
        for input in [&b"not an image"[..], corrupt] {
            match convert(
                input,
                &ConvertArgs {
                    format: Format::Jpeg,
                    quality: None,
                    metadata: Metadata::Strip,
                },
            ) {
                Err(Error::InvalidRequest { field, .. }) => assert_eq!(field, "image"),
                other => panic!("{:?}", other.map(|c| c.summary)),
            }
        }
        Ok(())
    }
}
