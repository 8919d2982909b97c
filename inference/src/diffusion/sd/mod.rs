//! Stable Diffusion 1.x, 2.x, SD-Turbo, SDXL and SDXL-Turbo on candle: candle-transformers'
//! UNet (SDXL: its blocks with the added conditioning, [`unet`]), VAE and DDIM scheduler, built
//! from a checkpoint directory in diffusers layout.
//!
//! The directory holds `unet/`, `vae/`, `text_encoder/` (each a `config.json` and
//! `diffusion_pytorch_model.safetensors` / `model.safetensors`, or their `.fp16` variants),
//! `tokenizer/` (`tokenizer.json`, or CLIP's `vocab.json` and `merges.txt`; +
//! `tokenizer_config.json`) and `scheduler/scheduler_config.json`.
//! The family follows from the configs: the text tower's activation and width (1.x: CLIP
//! ViT-L, 2.x: OpenCLIP ViT-H), the scheduler's prediction type (2.1-768: v-prediction) and
//! timestep spacing (turbo: trailing, 1–4 steps, no classifier-free guidance). SDXL
//! checkpoints (`addition_embed_type = "text_time"`) add `text_encoder_2/` and `tokenizer_2/`:
//! the UNet attends to both towers' next-to-last hidden states side by side and receives the
//! second tower's pooled text and the image size; an empty negative prompt is zeros, as
//! diffusers' SDXL pipeline does.
//!
//! One request runs all its images through the UNet as one batch (twice that with
//! classifier-free guidance). Noise is drawn from a seeded ChaCha generator, one stream per
//! image (`seed + i`), so the same request gives the same bytes. Progress reports every step of
//! every image with a preview decoded from the latents by a fixed linear projection. Large
//! images are decoded by the VAE in overlapping tiles with linear blending, so memory stays
//! bounded. On CUDA (the `cuda` feature) weights run in f16, on the CPU in f32.
//!
//! Not yet: inpainting and depth UNets and SDXL's refiner (aesthetic-score conditioning); they
//! are refused by name.

mod config;
pub mod testing;
mod text;
pub mod tokenizer;
pub mod unet;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::SchedulerConfig;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use image::RgbImage;
use image::imageops::FilterType;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

pub use self::config::{SchedulerJson, UNetJson, VaeJson};
pub use self::text::{TextConfig, TextEncoder};
pub use self::tokenizer::TokenizerFiles;
use self::unet::{Added, Denoiser};
use super::{
    GeneratedImage, Generation, ImageGenerator, ImageRequest, Limits, Progress, ProgressFn,
};
use crate::error::{Error, Result};

/// Largest image side on the CPU (a 1024² decode is tiled; larger ones take minutes a step).
pub const MAX_SIDE_CPU: u32 = 1024;
/// Largest image side on a GPU.
pub const MAX_SIDE_GPU: u32 = 2048;
/// Most images in one request (one UNet batch).
pub const MAX_COUNT: u32 = 8;
/// Most sampling steps (turbo models: [`MAX_TURBO_STEPS`]).
pub const MAX_STEPS: u32 = 150;
/// Most steps of a distilled turbo model.
pub const MAX_TURBO_STEPS: u32 = 4;
/// Latent side above which the VAE decodes in tiles (64 latents = 512 pixels).
pub const DECODE_TILE: usize = 64;

/// SD 1.x / 2.x latent → RGB, for previews (the projection common UIs use).
const LATENT_RGB: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];
/// SDXL's latent space differs; its projection, as common UIs use it.
const LATENT_RGB_XL: [[f32; 3]; 4] = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
];

/// Where to run.
#[derive(Debug, Clone)]
pub struct SdOptions {
    /// The model's name in results (default: the directory's name).
    pub name: Option<String>,
    pub device: Device,
    /// Latent side above which the VAE decodes in tiles.
    pub decode_tile: usize,
    /// A `tokenizer.json` to use instead of the checkpoint's `tokenizer/` (its `tokenizer.json`,
    /// else the `vocab.json` and `merges.txt` diffusers repositories ship).
    pub tokenizer: Option<PathBuf>,
}

impl Default for SdOptions {
    fn default() -> Self {
        SdOptions {
            name: None,
            // The first CUDA GPU in builds with the `cuda` feature, else the CPU.
            device: Device::cuda_if_available(0).unwrap_or(Device::Cpu),
            decode_tile: DECODE_TILE,
            tokenizer: None,
        }
    }
}

/// A Stable Diffusion checkpoint, loaded once and shared (cheap to clone, thread-safe).
#[derive(Clone)]
pub struct StableDiffusion {
    inner: std::sync::Arc<Pipeline>,
}

struct Pipeline {
    name: String,
    text: TextEncoder,
    /// SDXL's second text tower (with its projection).
    text_2: Option<TextEncoder>,
    unet: Denoiser,
    vae: AutoEncoderKL,
    /// The VAE's dtype (f32 where the checkpoint says it overflows in f16).
    vae_dtype: DType,
    scheduler: DDIMSchedulerConfig,
    turbo: bool,
    scaling_factor: f64,
    /// Pixels per latent cell.
    downscale: usize,
    /// Image sides must be multiples of this (latent cell × UNet downsamplings).
    multiple_of: u32,
    decode_tile: usize,
    device: Device,
    dtype: DType,
}

impl std::fmt::Debug for StableDiffusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StableDiffusion")
            .field("name", &self.inner.name)
            .field("turbo", &self.inner.turbo)
            .field("xl", &self.inner.text_2.is_some())
            .field("multiple_of", &self.inner.multiple_of)
            .finish_non_exhaustive()
    }
}

/// The first of `names` present in `dir/sub`.
fn weights(dir: &Path, sub: &str, names: &[&str]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(sub).join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::InvalidRequest {
            field: "model",
            reason: format!(
                "{} holds none of {}",
                dir.join(sub).display(),
                names.join(", ")
            ),
        })
}

fn var_builder(path: &Path, dtype: DType, device: &Device) -> Result<VarBuilder<'static>> {
    let bytes = std::fs::read(path).map_err(Error::io(format!("reading {}", path.display())))?;
    VarBuilder::from_buffered_safetensors(bytes, dtype, device)
        .map_err(sd_error("read the weights"))
}

/// `t` repeated `n` times along its first dimension, whatever its rank (one prompt for a batch).
fn repeat_rows(t: &Tensor, n: usize) -> Result<Tensor> {
    let mut times = vec![1; t.rank()];
    if let Some(first) = times.first_mut() {
        *first = n;
    }
    t.repeat(times).map_err(sd_error("batch the prompt"))
}

/// Candle errors with out-of-memory turned into [`Error::OutOfMemory`].
fn sd_error(action: &'static str) -> impl Fn(candle_core::Error) -> Error {
    move |e| {
        let detail = e.to_string();
        let lower = detail.to_lowercase();
        if lower.contains("out of memory") || lower.contains("out_of_memory") {
            Error::OutOfMemory { action, detail }
        } else {
            Error::Candle { action, detail }
        }
    }
}

impl StableDiffusion {
    /// Load a checkpoint directory in diffusers layout.
    pub fn load(dir: &Path, options: SdOptions) -> Result<Self> {
        Ok(StableDiffusion {
            inner: std::sync::Arc::new(Pipeline::load(dir, options)?),
        })
    }

    /// A distilled few-step model (trailing timesteps, no classifier-free guidance).
    pub fn is_turbo(&self) -> bool {
        self.inner.turbo
    }

    /// Generate synchronously (the async trait method runs this off the runtime).
    pub fn generate_blocking(
        &self,
        request: &ImageRequest,
        progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        self.inner.generate_blocking(request, progress)
    }
}

impl Pipeline {
    fn load(dir: &Path, options: SdOptions) -> Result<Self> {
        let device = options.device;
        let dtype = if device.is_cuda() {
            DType::F16
        } else {
            DType::F32
        };
        let unet_json: UNetJson = config::read(&dir.join("unet/config.json"))?;
        let vae_json: VaeJson = config::read(&dir.join("vae/config.json"))?;
        let text_json: TextConfig = config::read(&dir.join("text_encoder/config.json"))?;
        let scheduler_json: SchedulerJson =
            config::read(&dir.join("scheduler/scheduler_config.json"))?;
        let unet_config = unet_json.to_candle(&dir.join("unet/config.json"))?;
        let text_time = unet_json.text_time(&dir.join("unet/config.json"))?;
        let vae_config = vae_json.to_candle(&dir.join("vae/config.json"))?;
        let scheduler = scheduler_json.to_candle(&dir.join("scheduler/scheduler_config.json"))?;
        let text_2_json: Option<TextConfig> = match text_time {
            Some(_) => Some(config::read(&dir.join("text_encoder_2/config.json"))?),
            None => None,
        };
        let text_width = text_json.hidden_size + text_2_json.as_ref().map_or(0, |c| c.hidden_size);
        if unet_json.cross_attention_dim != text_width {
            return Err(Error::InvalidRequest {
                field: "model",
                reason: format!(
                    "the UNet attends to {}-wide text but the text encoder{} {} wide",
                    unet_json.cross_attention_dim,
                    if text_2_json.is_some() {
                        "s are together"
                    } else {
                        " is"
                    },
                    text_width
                ),
            });
        }
        if let (Some(tt), Some(c2)) = (text_time, &text_2_json) {
            let pooled = c2.projection_dim.unwrap_or(c2.hidden_size);
            if tt.pooled_dim() != Some(pooled) {
                return Err(Error::InvalidRequest {
                    field: "model",
                    reason: format!(
                        "unet/config.json: projection_class_embeddings_input_dim {} is not 6 × \
                         addition_time_embed_dim {} + text_encoder_2's projection_dim {pooled}",
                        tt.input_dim, tt.time_features
                    ),
                });
            }
        }
        let model_weights = ["model.safetensors", "model.fp16.safetensors"];
        let diffusers_weights = [
            "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.safetensors",
        ];
        let text_vb = var_builder(
            &weights(dir, "text_encoder", &model_weights)?,
            dtype,
            &device,
        )?;
        let tokenizer = TokenizerFiles::find(&dir.join("tokenizer"), options.tokenizer.as_deref())?;
        let text = TextEncoder::load(
            &dir.join("tokenizer"),
            &tokenizer,
            text_vb,
            &text_json,
            false,
        )?;
        let text_2 = match &text_2_json {
            None => None,
            Some(config) => {
                let vb = var_builder(
                    &weights(dir, "text_encoder_2", &model_weights)?,
                    dtype,
                    &device,
                )?;
                let tokenizer = TokenizerFiles::find(&dir.join("tokenizer_2"), None)?;
                Some(TextEncoder::load(
                    &dir.join("tokenizer_2"),
                    &tokenizer,
                    vb,
                    config,
                    true,
                )?)
            }
        };
        let unet_vb = var_builder(&weights(dir, "unet", &diffusers_weights)?, dtype, &device)?;
        let unet =
            Denoiser::new(unet_vb, unet_config, text_time).map_err(sd_error("build the UNet"))?;
        let vae_dtype = if vae_json.force_upcast {
            DType::F32
        } else {
            dtype
        };
        let vae_vb = var_builder(
            &weights(dir, "vae", &diffusers_weights)?,
            vae_dtype,
            &device,
        )?;
        let vae =
            AutoEncoderKL::new(vae_vb, 3, 3, vae_config).map_err(sd_error("build the VAE"))?;
        let downscale = vae_json.downscale();
        let multiple_of = (downscale << (unet_json.block_out_channels.len() - 1)) as u32;
        let name = options.name.unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "stable-diffusion".into())
        });
        Ok(Pipeline {
            name,
            text,
            text_2,
            unet,
            vae,
            vae_dtype,
            scheduler,
            turbo: scheduler_json.is_turbo(),
            scaling_factor: vae_json.scaling_factor,
            downscale,
            multiple_of,
            decode_tile: options.decode_tile.max(8),
            device,
            dtype,
        })
    }

    fn generate_blocking(
        &self,
        request: &ImageRequest,
        mut progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        request.validate(&self.limits())?;
        let started = Instant::now();
        let n = request.count as usize;
        let (w, h) = (request.width, request.height);
        if let Some(init) = &request.init
            && init.strength <= 0.0
        {
            // Strength 0 keeps the init image, at the requested size.
            let image = resized(&init.image, w, h);
            let images = (0..request.count)
                .map(|i| GeneratedImage {
                    image: image.clone(),
                    seed: request.seed.wrapping_add(u64::from(i)),
                })
                .collect();
            return Ok(self.finish(images, request, started));
        }
        let guided = !self.turbo && request.guidance > 1.0;
        let (context, added) = self.context(request, n, guided)?;
        let mut scheduler = self
            .scheduler
            .build(request.steps as usize)
            .map_err(sd_error("build the scheduler"))?;
        let mut timesteps = scheduler.timesteps().to_vec();
        let (lh, lw) = (h as usize / self.downscale, w as usize / self.downscale);
        let noise = self.noise(request.seed, n, lh, lw)?;
        let mut latents = match &request.init {
            None => (noise * scheduler.init_noise_sigma()).map_err(sd_error("scale the noise"))?,
            Some(init) => {
                let keep = ((request.steps as f32) * init.strength.min(1.0)).round() as usize;
                let skip = timesteps.len().saturating_sub(keep.max(1));
                timesteps.drain(..skip);
                let encoded = self.encode_image(&resized(&init.image, w, h))?;
                let encoded = encoded
                    .repeat((n, 1, 1, 1))
                    .map_err(sd_error("repeat the init latents"))?;
                scheduler
                    .add_noise(&encoded, noise, timesteps[0])
                    .map_err(sd_error("noise the init image"))?
            }
        };
        let steps = timesteps.len() as u32;
        for (k, &t) in timesteps.iter().enumerate() {
            if request.cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let step = || -> candle_core::Result<Tensor> {
                let input = if guided {
                    Tensor::cat(&[&latents, &latents], 0)?
                } else {
                    latents.clone()
                };
                let input = scheduler.scale_model_input(input, t)?;
                let predicted = self
                    .unet
                    .forward(&input, t as f64, &context, added.as_ref())?;
                let predicted = if guided {
                    let halves = predicted.chunk(2, 0)?;
                    let (uncond, cond) = (&halves[0], &halves[1]);
                    (uncond + ((cond - uncond)? * f64::from(request.guidance))?)?
                } else {
                    predicted
                };
                Ok(predicted)
            };
            let predicted = step().map_err(sd_error("run the UNet"))?;
            latents = scheduler
                .step(&predicted, t, &latents)
                .map_err(sd_error("step the scheduler"))?;
            if let Some(p) = progress.as_mut() {
                for i in 0..n {
                    p(Progress {
                        step: k as u32 + 1,
                        steps,
                        image: i as u32,
                        preview: preview(&latents, i, self.latent_rgb()).ok(),
                    });
                }
            }
        }
        if request.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        let pixels = self.decode(&latents)?;
        let images = pixels
            .into_iter()
            .enumerate()
            .map(|(i, image)| GeneratedImage {
                image,
                seed: request.seed.wrapping_add(i as u64),
            })
            .collect();
        Ok(self.finish(images, request, started))
    }

    fn finish(
        &self,
        images: Vec<GeneratedImage>,
        request: &ImageRequest,
        started: Instant,
    ) -> Generation {
        Generation {
            images,
            model: self.name.clone(),
            steps: request.steps,
            total_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// The preview projection of this checkpoint's latent space.
    fn latent_rgb(&self) -> &'static [[f32; 3]; 4] {
        if self.text_2.is_some() {
            &LATENT_RGB_XL
        } else {
            &LATENT_RGB
        }
    }

    /// Text conditioning for the batch: `[uncond × n, cond × n]` with guidance, else `cond × n`;
    /// for SDXL also the added conditioning, in the same order.
    fn context(
        &self,
        request: &ImageRequest,
        n: usize,
        guided: bool,
    ) -> Result<(Tensor, Option<Added>)> {
        if let Some(text_2) = &self.text_2 {
            return self.context_xl(text_2, request, n, guided);
        }
        let cond = self.text.encode(&[request.prompt.as_str()], self.dtype)?;
        let cond = repeat_rows(&cond, n)?;
        if !guided {
            return Ok((cond, None));
        }
        let negative = request.negative_prompt.as_deref().unwrap_or("");
        let uncond = repeat_rows(&self.text.encode(&[negative], self.dtype)?, n)?;
        Ok((
            Tensor::cat(&[uncond, cond], 0).map_err(sd_error("batch the prompt"))?,
            None,
        ))
    }

    /// SDXL: both towers' next-to-last states side by side, the second tower's pooled text and
    /// the size numbers (original = target = the requested size, no crop). An empty negative
    /// prompt is zeros (diffusers' `force_zeros_for_empty_prompt`).
    fn context_xl(
        &self,
        text_2: &TextEncoder,
        request: &ImageRequest,
        n: usize,
        guided: bool,
    ) -> Result<(Tensor, Option<Added>)> {
        let encode = |text: &str| -> Result<(Tensor, Tensor)> {
            let (first, _) = self.text.encode_penultimate(&[text], self.dtype)?;
            let (second, pooled) = text_2.encode_penultimate(&[text], self.dtype)?;
            let pooled = pooled.ok_or_else(|| Error::Candle {
                action: "pool the prompt",
                detail: "text_encoder_2 has no text_projection".into(),
            })?;
            let both = Tensor::cat(&[first, second], 2).map_err(sd_error("join the towers"))?;
            Ok((both, pooled))
        };
        let (cond, pooled) = encode(&request.prompt)?;
        let (mut context, mut text_embeds) = (repeat_rows(&cond, n)?, repeat_rows(&pooled, n)?);
        if guided {
            let (uncond, uncond_pooled) = match request.negative_prompt.as_deref() {
                Some(negative) if !negative.trim().is_empty() => encode(negative)?,
                _ => (
                    cond.zeros_like().map_err(sd_error("zero the prompt"))?,
                    pooled.zeros_like().map_err(sd_error("zero the prompt"))?,
                ),
            };
            context = Tensor::cat(&[repeat_rows(&uncond, n)?, context], 0)
                .map_err(sd_error("batch the prompt"))?;
            text_embeds = Tensor::cat(&[repeat_rows(&uncond_pooled, n)?, text_embeds], 0)
                .map_err(sd_error("batch the prompt"))?;
        }
        let rows = if guided { 2 * n } else { n };
        let (h, w) = (request.height as f32, request.width as f32);
        let ids: Vec<f32> = (0..rows).flat_map(|_| [h, w, 0.0, 0.0, h, w]).collect();
        let time_ids = Tensor::from_vec(ids, (rows, 6), &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(sd_error("size conditioning"))?;
        Ok((
            context,
            Some(Added {
                text_embeds,
                time_ids,
            }),
        ))
    }

    /// Seeded standard normal latents, one ChaCha stream per image.
    fn noise(&self, seed: u64, n: usize, lh: usize, lw: usize) -> Result<Tensor> {
        let per = 4 * lh * lw;
        let mut values = Vec::with_capacity(n * per);
        for i in 0..n {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(i as u64));
            values.extend((0..per).map(|_| {
                let v: f32 = StandardNormal.sample(&mut rng);
                v
            }));
        }
        Tensor::from_vec(values, (n, 4, lh, lw), &self.device)
            .and_then(|t| t.to_dtype(self.dtype))
            .map_err(sd_error("draw the noise"))
    }

    /// The VAE's latents of an image (its distribution's sample), scaled.
    fn encode_image(&self, image: &RgbImage) -> Result<Tensor> {
        let (w, h) = image.dimensions();
        let data: Vec<f32> = image
            .as_raw()
            .iter()
            .map(|&v| f32::from(v) / 127.5 - 1.0)
            .collect();
        let run = || -> candle_core::Result<Tensor> {
            let x = Tensor::from_vec(data, (1, h as usize, w as usize, 3), &self.device)?
                .permute((0, 3, 1, 2))?
                .contiguous()?
                .to_dtype(self.vae_dtype)?;
            (self.vae.encode(&x)?.sample()? * self.scaling_factor)?.to_dtype(self.dtype)
        };
        run().map_err(sd_error("encode the init image"))
    }

    /// Latents → images; latents larger than the tile are decoded in overlapping tiles.
    fn decode(&self, latents: &Tensor) -> Result<Vec<RgbImage>> {
        let latents = (latents / self.scaling_factor).map_err(sd_error("scale the latents"))?;
        let (n, _, lh, lw) = latents.dims4().map_err(sd_error("read the latents"))?;
        let f = self.downscale;
        let (ph, pw) = (lh * f, lw * f);
        let tile = self.decode_tile;
        let overlap = (tile / 4).max(1);
        let starts = |len: usize| -> Vec<usize> {
            if len <= tile {
                return vec![0];
            }
            let stride = tile - overlap;
            let mut s: Vec<usize> = (0..)
                .map(|k| k * stride)
                .take_while(|&p| p + tile < len)
                .collect();
            s.push(len - tile);
            s
        };
        let (rows, cols) = (starts(lh), starts(lw));
        let (th, tw) = (lh.min(tile), lw.min(tile));
        let mut sum = vec![0f32; n * 3 * ph * pw];
        let mut weight = vec![0f32; ph * pw];
        // Linear ramps over the overlap, so neighbouring tiles fade into each other.
        let ramp = |i: usize, len: usize, first: bool, last: bool| -> f32 {
            let edge = overlap * f;
            let from_start = if first {
                f32::MAX
            } else {
                (i as f32 + 0.5) / edge as f32
            };
            let from_end = if last {
                f32::MAX
            } else {
                (len - i) as f32 / edge as f32
            };
            from_start.min(from_end).min(1.0)
        };
        for (ri, &y0) in rows.iter().enumerate() {
            for (ci, &x0) in cols.iter().enumerate() {
                let part = latents
                    .i((.., .., y0..y0 + th, x0..x0 + tw))
                    .and_then(|t| t.contiguous()?.to_dtype(self.vae_dtype))
                    .and_then(|t| self.vae.decode(&t))
                    .and_then(|t| t.to_dtype(DType::F32))
                    .and_then(|t| t.flatten_all())
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(sd_error("decode the latents"))?;
                let (tph, tpw) = (th * f, tw * f);
                for y in 0..tph {
                    let wy = ramp(y, tph, ri == 0, ri + 1 == rows.len());
                    for x in 0..tpw {
                        let wx = ramp(x, tpw, ci == 0, ci + 1 == cols.len());
                        let wgt = wy * wx;
                        let (py, px) = (y0 * f + y, x0 * f + x);
                        weight[py * pw + px] += wgt;
                        for b in 0..n {
                            for c in 0..3 {
                                let v = part[((b * 3 + c) * tph + y) * tpw + x];
                                sum[((b * 3 + c) * ph + py) * pw + px] += wgt * v;
                            }
                        }
                    }
                }
            }
        }
        let mut images = Vec::with_capacity(n);
        for b in 0..n {
            let mut img = RgbImage::new(pw as u32, ph as u32);
            for (i, px) in img.pixels_mut().enumerate() {
                let wgt = weight[i].max(f32::EPSILON);
                for c in 0..3 {
                    let v = sum[(b * 3 + c) * ph * pw + i] / wgt;
                    px.0[c] = ((v / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            }
            images.push(img);
        }
        Ok(images)
    }
}

fn resized(image: &RgbImage, w: u32, h: u32) -> RgbImage {
    if image.dimensions() == (w, h) {
        image.clone()
    } else {
        image::imageops::resize(image, w, h, FilterType::Lanczos3)
    }
}

/// Image `i` of the latents through the fixed latent → RGB projection, at latent size.
fn preview(
    latents: &Tensor,
    i: usize,
    latent_rgb: &[[f32; 3]; 4],
) -> candle_core::Result<RgbImage> {
    let l = latents.i(i)?.to_dtype(DType::F32)?;
    let (c, h, w) = l.dims3()?;
    let values = l.flatten_all()?.to_vec1::<f32>()?;
    let mut img = RgbImage::new(w as u32, h as u32);
    for (p, px) in img.pixels_mut().enumerate() {
        for (rgb, out) in px.0.iter_mut().enumerate() {
            let v: f32 = (0..c.min(4))
                .map(|k| values[k * h * w + p] * latent_rgb[k][rgb])
                .sum();
            *out = ((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8;
        }
    }
    Ok(img)
}

#[async_trait::async_trait]
impl ImageGenerator for StableDiffusion {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    async fn generate(
        &self,
        request: ImageRequest,
        progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        let model = self.inner.clone();
        tokio::task::spawn_blocking(move || model.generate_blocking(&request, progress))
            .await
            .map_err(|e| Error::Candle {
                action: "run Stable Diffusion",
                detail: e.to_string(),
            })?
    }
}

impl Pipeline {
    /// What requests it accepts.
    fn limits(&self) -> Limits {
        Limits {
            min_side: self.multiple_of,
            max_side: if self.device.is_cpu() {
                MAX_SIDE_CPU
            } else {
                MAX_SIDE_GPU
            },
            multiple_of: self.multiple_of,
            square_only: false,
            max_steps: if self.turbo {
                MAX_TURBO_STEPS
            } else {
                MAX_STEPS
            },
            max_count: MAX_COUNT,
        }
    }
}
