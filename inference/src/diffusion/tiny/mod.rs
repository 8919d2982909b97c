//! Atelier's own offline text-to-image model ("atelier-tiny").
//!
//! No package registry ships text-to-image weights, so Atelier trains its own small model on a
//! procedural dataset of what designers ask background generators for ([`data`]), with a small
//! diffusion transformer ([`model`]) trained by rectified flow ([`flow`], [`train`]). It samples
//! 64×64 pixels in a handful of steps on 2 CPU cores and upsamples them (Lanczos) to the size
//! asked for.

pub mod classifier;
pub mod data;
pub mod eval;
pub mod flow;
pub mod model;
pub mod train;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_nn::VarBuilder;
use image::RgbImage;
use image::imageops::FilterType;

use super::{
    GeneratedImage, Generation, ImageGenerator, ImageRequest, Limits, Progress, ProgressFn,
};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use model::{Condition, DTYPE, MAX_TEXT_TOKENS, TinyConfig, TinyDit};

/// Atelier's offline model behind [`ImageGenerator`].
pub struct TinyGenerator {
    model: Arc<TinyDit>,
    embedder: Arc<dyn Embedder>,
    name: String,
}

impl std::fmt::Debug for TinyGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TinyGenerator")
            .field("name", &self.name)
            .field("config", self.model.config())
            .finish()
    }
}

impl TinyGenerator {
    /// Load a model directory (`model.safetensors` + `config.json`).
    pub fn load(dir: &Path, embedder: Arc<dyn Embedder>) -> Result<Self> {
        let config = train::read_config(dir)?;
        if config.cond_dim != embedder.dimensions() {
            return Err(Error::Candle {
                action: "load atelier-tiny",
                detail: format!(
                    "model expects {}-d text embeddings, embedder gives {}",
                    config.cond_dim,
                    embedder.dimensions()
                ),
            });
        }
        if config.cross_attention {
            // Fail now, not at the first request, if the embedder cannot give token states.
            embedder.token_states(&["probe"], 1)?;
        }
        let weights = std::fs::read(dir.join("model.safetensors")).map_err(Error::io(format!(
            "reading {}",
            dir.join("model.safetensors").display()
        )))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DTYPE, &Device::Cpu)
            .map_err(Error::candle("read weights"))?;
        let model = TinyDit::new(config, vb).map_err(Error::candle("build atelier-tiny"))?;
        Ok(TinyGenerator {
            model: Arc::new(model),
            embedder,
            name: "atelier-tiny".into(),
        })
    }

    /// The network's shapes (its native image size among them).
    pub fn config(&self) -> &TinyConfig {
        self.model.config()
    }

    /// Generate synchronously (the async trait method runs this off the runtime).
    pub fn generate_blocking(
        &self,
        request: &ImageRequest,
        mut progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        request.validate(&self.limits())?;
        let started = Instant::now();
        let device = Device::Cpu;
        let mut texts = vec![request.prompt.as_str()];
        if let Some(negative) = &request.negative_prompt {
            texts.push(negative.as_str());
        }
        let (vectors, states) = if self.model.config().cross_attention {
            let (vectors, states) = self
                .embedder
                .embed_with_token_states(&texts, MAX_TEXT_TOKENS)?;
            (vectors, Some(states))
        } else {
            (self.embedder.embed(&texts)?, None)
        };
        let dims = self.embedder.dimensions();
        let condition = |i: usize| {
            let tokens = states.as_ref().map(|s| &s[i..=i]);
            Condition::new(&vectors[i..=i], tokens, dims, &device)
                .map_err(Error::candle("assemble the condition"))
        };
        let cond = condition(0)?;
        let negative = match vectors.len() {
            2 => Some(condition(1)?),
            _ => None,
        };
        let size = self.model.config().image_size as u32;
        let init = match &request.init {
            Some(init) => Some(image_to_tensor(
                &image::imageops::resize(&init.image, size, size, FilterType::Triangle),
                &device,
            )?),
            None => None,
        };
        let mut images = Vec::with_capacity(request.count as usize);
        for i in 0..request.count {
            let seed = request.seed.wrapping_add(i as u64);
            let options = flow::SampleOptions {
                steps: request.steps as usize,
                guidance: request.guidance,
                seed,
                strength: request.init.as_ref().map_or(1.0, |init| init.strength),
            };
            let steps = request.steps;
            let sampled = flow::sample(
                &self.model,
                &cond,
                negative.as_ref(),
                init.as_ref(),
                options,
                |step, x| {
                    if let Some(progress) = progress.as_mut() {
                        let preview =
                            tensor_to_image(&x.clamp(-1f32, 1f32).unwrap_or_else(|_| x.clone()))
                                .ok();
                        progress(Progress {
                            step: step as u32 + 1,
                            steps,
                            image: i,
                            preview,
                        });
                    }
                    !request.cancel.is_cancelled()
                },
            )
            .map_err(Error::candle("sample"))?;
            let Some(x) = sampled else {
                return Err(Error::Cancelled);
            };
            let small = match (&init, request.init.as_ref().map(|i| i.strength)) {
                // Strength 0 keeps the init image exactly, at the requested size.
                (Some(_), Some(s)) if s <= 0.0 => request
                    .init
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                _ => tensor_to_image(&x)?,
            };
            let image = if small.width() == request.width && small.height() == request.height {
                small
            } else {
                image::imageops::resize(&small, request.width, request.height, FilterType::Lanczos3)
            };
            images.push(GeneratedImage { image, seed });
        }
        Ok(Generation {
            images,
            model: self.name.clone(),
            steps: request.steps,
            total_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// `[1, 3, S, S]` in [-1, 1] → RGB image.
fn tensor_to_image(x: &Tensor) -> Result<RgbImage> {
    let x = x
        .squeeze(0)
        .and_then(|x| x.permute((1, 2, 0)))
        .map_err(Error::candle("read image"))?;
    let (h, w, _) = x.dims3().map_err(Error::candle("read image"))?;
    let data: Vec<f32> = x
        .flatten_all()
        .and_then(|x| x.to_vec1())
        .map_err(Error::candle("read image"))?;
    let bytes = data
        .iter()
        .map(|v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8)
        .collect();
    RgbImage::from_raw(w as u32, h as u32, bytes).ok_or(Error::Candle {
        action: "read image",
        detail: "size mismatch".into(),
    })
}

/// RGB image → `[1, 3, S, S]` in [-1, 1].
fn image_to_tensor(image: &RgbImage, device: &Device) -> Result<Tensor> {
    let (w, h) = image.dimensions();
    let data: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&v| v as f32 / 127.5 - 1.0)
        .collect();
    Tensor::from_vec(data, (1, h as usize, w as usize, 3), device)
        .and_then(|t| t.permute((0, 3, 1, 2))?.contiguous())
        .map_err(Error::candle("read init image"))
}

#[async_trait::async_trait]
impl ImageGenerator for TinyGenerator {
    fn name(&self) -> &str {
        &self.name
    }

    fn limits(&self) -> Limits {
        Limits {
            min_side: 64,
            max_side: 1024,
            multiple_of: 64,
            square_only: true,
            max_steps: 64,
            max_count: 8,
        }
    }

    async fn generate(
        &self,
        request: ImageRequest,
        progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        request.validate(&self.limits())?;
        let this = TinyGenerator {
            model: self.model.clone(),
            embedder: self.embedder.clone(),
            name: self.name.clone(),
        };
        tokio::task::spawn_blocking(move || this.generate_blocking(&request, progress))
            .await
            .map_err(|e| Error::Candle {
                action: "run the generator thread",
                detail: e.to_string(),
            })?
    }
}
