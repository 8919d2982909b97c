//! Image–text alignment with CLIP, on candle-transformers' CLIP encoders.
//!
//! A CLIP checkpoint in Hugging Face layout is a directory with `config.json` (`text_config`,
//! `vision_config`, `projection_dim`), `tokenizer.json` and the weights as `model.safetensors`
//! (or `pytorch_model.bin`, which the OpenAI repositories ship). No registry carries CLIP
//! weights, so [`ClipScorer`] exists only where a user configured such a directory; without one
//! the critique reports alignment as not measured.
//!
//! Scoring follows the reference pipeline (transformers' `CLIPProcessor` and `CLIPModel`): the
//! image is resized so its short side is the model's input size (bicubic), centre-cropped to a
//! square, scaled to 0–1 and normalised with CLIP's per-channel mean and deviation; the text is
//! tokenised with the start and end tokens and pooled at the end token; both are projected into
//! the joint space and compared by cosine similarity.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use image::RgbImage;
use image::imageops::{self, FilterType};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::segment::check_size;
use crate::error::{Error, Result};

/// Most pixels of an image the scorer accepts (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// CLIP's per-channel (RGB) mean of 0–1 pixel values.
const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel (RGB) standard deviation.
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
/// Largest model input side accepted from a config (ViT-L/14-336 uses 336).
const MAX_INPUT_SIDE: usize = 1024;

/// How well one image matches one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// Cosine similarity of the image and text embeddings, −1 to 1.
    pub cosine: f32,
    /// The text was longer than the model's window and only its start was read.
    pub truncated: bool,
}

/// A CLIP model loaded once and shared (`&self` methods, thread-safe).
pub struct ClipScorer {
    name: String,
    text: ClipTextTransformer,
    vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    tokenizer: Tokenizer,
    /// Side of the square image the vision encoder reads.
    input_side: u32,
    /// Most tokens a text may have, start and end tokens included.
    max_tokens: usize,
    device: Device,
}

impl std::fmt::Debug for ClipScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipScorer")
            .field("name", &self.name)
            .field("input_side", &self.input_side)
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// `config.json` as transformers writes it; absent fields take transformers' defaults.
#[derive(Deserialize)]
struct HfConfig {
    #[serde(default)]
    text_config: HfTextConfig,
    #[serde(default)]
    vision_config: HfVisionConfig,
    #[serde(default = "default_projection")]
    projection_dim: usize,
    #[serde(default)]
    _name_or_path: Option<String>,
}

fn default_projection() -> usize {
    512
}

fn quick_gelu() -> String {
    "quick_gelu".into()
}

#[derive(Deserialize)]
#[serde(default)]
struct HfTextConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
}

impl Default for HfTextConfig {
    fn default() -> Self {
        HfTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: quick_gelu(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct HfVisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_channels: usize,
    image_size: usize,
    patch_size: usize,
    #[serde(default = "quick_gelu")]
    hidden_act: String,
}

impl Default for HfVisionConfig {
    fn default() -> Self {
        HfVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: quick_gelu(),
        }
    }
}

fn invalid(path: &Path, reason: String) -> Error {
    Error::InvalidRequest {
        field: "clip",
        reason: format!("{}: {reason}", path.display()),
    }
}

impl HfConfig {
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("reading CLIP config {}", path.display())))?;
        let config: HfConfig = serde_json::from_str(&text)
            .map_err(|e| invalid(path, format!("not a CLIP config.json: {e}")))?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        for (field, act) in [
            ("text_config.hidden_act", &self.text_config.hidden_act),
            ("vision_config.hidden_act", &self.vision_config.hidden_act),
        ] {
            if act != "quick_gelu" {
                return Err(invalid(
                    path,
                    format!(
                        "{field} is `{act}`; candle's CLIP implements `quick_gelu` only \
                         (OpenAI CLIP checkpoints)"
                    ),
                ));
            }
        }
        let t = &self.text_config;
        let v = &self.vision_config;
        let checks = [
            (
                "text_config.num_attention_heads",
                t.num_attention_heads > 0 && t.hidden_size.is_multiple_of(t.num_attention_heads),
                "must divide text_config.hidden_size",
            ),
            (
                "vision_config.num_attention_heads",
                v.num_attention_heads > 0 && v.hidden_size.is_multiple_of(v.num_attention_heads),
                "must divide vision_config.hidden_size",
            ),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings >= 2,
                "must leave room for the start and end tokens (≥ 2)",
            ),
            (
                "vision_config.patch_size",
                v.patch_size > 0
                    && v.image_size.is_multiple_of(v.patch_size)
                    && v.image_size <= MAX_INPUT_SIDE,
                "must divide vision_config.image_size (at most 1024)",
            ),
            (
                "vision_config.num_channels",
                v.num_channels == 3,
                "must be 3 (RGB)",
            ),
        ];
        for (field, ok, allowed) in checks {
            if !ok {
                return Err(invalid(path, format!("{field} {allowed}")));
            }
        }
        Ok(())
    }

    fn text(&self) -> ClipTextConfig {
        let t = &self.text_config;
        ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: self.projection_dim,
        }
    }

    fn vision(&self) -> ClipVisionConfig {
        let v = &self.vision_config;
        ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: self.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        }
    }
}

/// The weights file of a checkpoint directory: safetensors first, else the PyTorch pickle.
fn weights_file(dir: &Path) -> Result<PathBuf> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            invalid(
                dir,
                "holds neither model.safetensors nor pytorch_model.bin".into(),
            )
        })
}

impl ClipScorer {
    /// Load a CLIP checkpoint directory (Hugging Face layout) on the CPU in f32.
    pub fn load(dir: &Path) -> Result<Self> {
        let config = HfConfig::read(&dir.join("config.json"))?;
        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| invalid(&tokenizer_path, format!("cannot read the tokenizer: {e}")))?;
        // Whole texts are tokenised; the scorer truncates itself and says so.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| invalid(&tokenizer_path, format!("cannot disable truncation: {e}")))?;
        let device = Device::Cpu;
        let weights = weights_file(dir)?;
        let vb = if weights.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&weights)
                .map_err(Error::io(format!("reading {}", weights.display())))?;
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
        } else {
            VarBuilder::from_pth(&weights, DType::F32, &device)
        }
        .map_err(Error::candle("load the CLIP weights"))?;
        // candle fills a missing class embedding with random numbers; a checkpoint without one
        // is not a CLIP model, and a random score must never reach a report.
        for name in [
            "vision_model.embeddings.class_embedding",
            "text_projection.weight",
            "visual_projection.weight",
        ] {
            if !vb.contains_tensor(name) {
                return Err(invalid(&weights, format!("has no tensor `{name}`")));
            }
        }
        let text_config = config.text();
        let vision_config = config.vision();
        let text = ClipTextTransformer::new(vb.pp("text_model"), &text_config)
            .map_err(Error::candle("build the CLIP text encoder"))?;
        let vision = ClipVisionTransformer::new(vb.pp("vision_model"), &vision_config)
            .map_err(Error::candle("build the CLIP vision encoder"))?;
        let text_projection = candle_nn::linear_no_bias(
            text_config.embed_dim,
            config.projection_dim,
            vb.pp("text_projection"),
        )
        .map_err(Error::candle("load the CLIP text projection"))?;
        let visual_projection = candle_nn::linear_no_bias(
            vision_config.embed_dim,
            config.projection_dim,
            vb.pp("visual_projection"),
        )
        .map_err(Error::candle("load the CLIP visual projection"))?;
        let name = config
            ._name_or_path
            .filter(|n| !n.is_empty())
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "clip".into());
        Ok(ClipScorer {
            name,
            text,
            vision,
            text_projection,
            visual_projection,
            tokenizer,
            input_side: vision_config.image_size as u32,
            max_tokens: text_config.max_position_embeddings,
            device,
        })
    }

    /// The checkpoint's name (`_name_or_path` of its config, else its directory's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Side of the square image the vision encoder reads.
    pub fn input_side(&self) -> u32 {
        self.input_side
    }

    /// The token ids CLIP reads for `text` (start and end tokens included) and whether the text
    /// was cut to fit the model's window; a cut text keeps its end token.
    pub fn tokens(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        if text.trim().is_empty() {
            return Err(Error::InvalidRequest {
                field: "text",
                reason: "is empty; CLIP compares an image with a description".into(),
            });
        }
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::InvalidRequest {
                field: "text",
                reason: format!("cannot be tokenised: {e}"),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() < 2 {
            return Err(Error::InvalidRequest {
                field: "text",
                reason: "tokenises to no tokens between the start and end tokens".into(),
            });
        }
        let truncated = fit_window(&mut ids, self.max_tokens);
        Ok((ids, truncated))
    }

    /// The vision encoder's input for `image`: 1×3×S×S, normalised.
    pub fn pixels(&self, image: &RgbImage) -> Result<Tensor> {
        check_size(image, MAX_PIXELS)?;
        let side = self.input_side;
        let (w, h) = image.dimensions();
        // The short side becomes `side`, the long one is scaled and truncated, as transformers'
        // `CLIPImageProcessor` does.
        let scale = f64::from(side) / f64::from(w.min(h));
        let (rw, rh) = (
            ((f64::from(w) * scale) as u32).max(side),
            ((f64::from(h) * scale) as u32).max(side),
        );
        let resized = if (rw, rh) == (w, h) {
            image.clone()
        } else {
            imageops::resize(image, rw, rh, FilterType::CatmullRom)
        };
        let crop =
            imageops::crop_imm(&resized, (rw - side) / 2, (rh - side) / 2, side, side).to_image();
        let plane = (side * side) as usize;
        let mut data = vec![0f32; 3 * plane];
        for (i, px) in crop.pixels().enumerate() {
            for c in 0..3 {
                data[c * plane + i] = (f32::from(px.0[c]) / 255.0 - MEAN[c]) / STD[c];
            }
        }
        Tensor::from_vec(data, (1, 3, side as usize, side as usize), &self.device)
            .map_err(Error::candle("build the CLIP image input"))
    }

    /// The image's embedding in the joint space, L2-normalised.
    pub fn embed_image(&self, image: &RgbImage) -> Result<Vec<f32>> {
        let pixels = self.pixels(image)?;
        let run = || -> candle_core::Result<Vec<f32>> {
            let features = self.vision.forward(&pixels)?;
            let projected = self.visual_projection.forward(&features)?;
            normalised(&projected)
        };
        run().map_err(Error::candle("run the CLIP vision encoder"))
    }

    /// The text's embedding in the joint space, L2-normalised, and whether it was truncated.
    pub fn embed_text(&self, text: &str) -> Result<(Vec<f32>, bool)> {
        let (ids, truncated) = self.tokens(text)?;
        let len = ids.len();
        let run = || -> candle_core::Result<Vec<f32>> {
            let input = Tensor::from_vec(ids, (1, len), &self.device)?;
            // Pooled at the end token, the last one: texts are never padded here.
            let hidden = self.text.forward_with_mask(&input, usize::MAX)?;
            let pooled = hidden.i((.., len - 1, ..))?;
            let projected = self.text_projection.forward(&pooled)?;
            normalised(&projected)
        };
        let embedding = run().map_err(Error::candle("run the CLIP text encoder"))?;
        Ok((embedding, truncated))
    }

    /// How well `image` matches `text`.
    pub fn similarity(&self, image: &RgbImage, text: &str) -> Result<Similarity> {
        let (text_embedding, truncated) = self.embed_text(text)?;
        let image_embedding = self.embed_image(image)?;
        let cosine = text_embedding
            .iter()
            .zip(&image_embedding)
            .map(|(a, b)| a * b)
            .sum::<f32>()
            .clamp(-1.0, 1.0);
        Ok(Similarity { cosine, truncated })
    }
}

/// Cut CLIP token ids to `max` keeping the start and the end token, as OpenAI's tokenizer does
/// with `truncate=True`; true when something was cut. `max` is at least 2.
pub(crate) fn fit_window(ids: &mut Vec<u32>, max: usize) -> bool {
    let cut = ids.len() > max;
    if let (true, Some(&end)) = (cut, ids.last()) {
        ids.truncate(max - 1);
        ids.push(end);
    }
    cut
}

/// A 1×D tensor as an L2-normalised vector.
fn normalised(v: &Tensor) -> candle_core::Result<Vec<f32>> {
    let v = v.squeeze(0)?.to_vec1::<f32>()?;
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    Ok(v.into_iter().map(|x| x / norm).collect())
}
