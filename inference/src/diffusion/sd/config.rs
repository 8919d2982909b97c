//! A diffusers checkpoint's JSON configs, turned into candle-transformers' configs. Every
//! unsupported choice is refused naming the file and field.

use std::path::Path;

use candle_transformers::models::stable_diffusion::ddim::DDIMSchedulerConfig;
use candle_transformers::models::stable_diffusion::schedulers::{
    BetaSchedule, PredictionType, TimestepSpacing,
};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKLConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::unet::TextTime;
use crate::error::{Error, Result};

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidRequest {
        field: "model",
        reason: format!("{}: {}", path.display(), reason.into()),
    }
}

/// Read one JSON config of the checkpoint.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).map_err(Error::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| invalid(path, format!("not a diffusers config: {e}")))
}

/// One value or one per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, i: usize) -> Option<usize> {
        match self {
            PerBlock::One(v) => Some(*v),
            PerBlock::Each(v) => v.get(i).copied(),
        }
    }
}

fn one() -> PerBlock {
    PerBlock::One(1)
}
fn eight() -> PerBlock {
    PerBlock::One(8)
}
fn t() -> bool {
    true
}
fn groups() -> usize {
    32
}
fn eps() -> f64 {
    1e-5
}
fn two() -> usize {
    2
}
fn four() -> usize {
    4
}
fn unit() -> f64 {
    1.0
}

/// `unet/config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetJson {
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "eight")]
    pub attention_head_dim: PerBlock,
    #[serde(default = "one")]
    pub transformer_layers_per_block: PerBlock,
    pub cross_attention_dim: usize,
    #[serde(default = "two")]
    pub layers_per_block: usize,
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    #[serde(default = "eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "t")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "one_usize")]
    pub downsample_padding: usize,
    #[serde(default = "unit")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    /// SDXL: `text_time` (pooled text and size conditioning).
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    /// SDXL: sinusoidal features per size number.
    #[serde(default)]
    pub addition_time_embed_dim: Option<usize>,
    /// SDXL: input width of the added embedding (pooled text + 6 size numbers' features).
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<usize>,
}

fn one_usize() -> usize {
    1
}

impl UNetJson {
    /// SDXL's added conditioning, when the UNet has it.
    pub fn text_time(&self, path: &Path) -> Result<Option<TextTime>> {
        match self.addition_embed_type.as_deref() {
            None => Ok(None),
            Some("text_time") => {
                let need = |value: Option<usize>, field: &str| {
                    value.filter(|v| *v > 0).ok_or_else(|| {
                        invalid(
                            path,
                            format!("addition_embed_type `text_time` needs a positive {field}"),
                        )
                    })
                };
                let time_features = need(self.addition_time_embed_dim, "addition_time_embed_dim")?;
                let input_dim = need(
                    self.projection_class_embeddings_input_dim,
                    "projection_class_embeddings_input_dim",
                )?;
                let text_time = TextTime {
                    time_features,
                    input_dim,
                };
                if text_time.pooled_dim().is_none_or(|d| d == 0) {
                    return Err(invalid(
                        path,
                        format!(
                            "projection_class_embeddings_input_dim {input_dim} leaves no room for \
                             the pooled text next to 6 × addition_time_embed_dim {time_features}"
                        ),
                    ));
                }
                Ok(Some(text_time))
            }
            Some(other) => Err(invalid(
                path,
                format!(
                    "addition_embed_type `{other}` is not supported (SDXL's `text_time` is; \
                     SD 1.x and 2.x have none)"
                ),
            )),
        }
    }

    /// candle's UNet config; the checkpoint's blocks must be the standard cross-attention /
    /// plain ones, mirrored on the way up.
    pub fn to_candle(&self, path: &Path) -> Result<UNet2DConditionModelConfig> {
        // candle's up blocks build their ResNets with 32 groups whatever the config says; every
        // released Stable Diffusion uses 32, and any other count would be computed wrongly.
        if self.norm_num_groups != 32 {
            return Err(invalid(
                path,
                format!(
                    "norm_num_groups {}: only 32 is supported (every released Stable Diffusion \
                     uses 32)",
                    self.norm_num_groups
                ),
            ));
        }
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(invalid(
                path,
                "block_out_channels, down_block_types and up_block_types must have one entry per block",
            ));
        }
        if self.in_channels != 4 || self.out_channels != 4 {
            return Err(invalid(
                path,
                format!(
                    "in_channels {} / out_channels {}: only 4-channel text-to-image UNets are supported \
                     (not inpainting or depth models)",
                    self.in_channels, self.out_channels
                ),
            ));
        }
        let mut blocks = Vec::with_capacity(n);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let cross = match kind.as_str() {
                "CrossAttnDownBlock2D" => true,
                "DownBlock2D" => false,
                other => {
                    return Err(invalid(
                        path,
                        format!(
                            "down_block_types[{i}] `{other}` is not CrossAttnDownBlock2D or DownBlock2D"
                        ),
                    ));
                }
            };
            let up = &self.up_block_types[n - 1 - i];
            let up_cross = match up.as_str() {
                "CrossAttnUpBlock2D" => true,
                "UpBlock2D" => false,
                other => {
                    return Err(invalid(
                        path,
                        format!(
                            "up_block_types[{}] `{other}` is not CrossAttnUpBlock2D or UpBlock2D",
                            n - 1 - i
                        ),
                    ));
                }
            };
            if cross != up_cross {
                return Err(invalid(
                    path,
                    format!("up_block_types must mirror down_block_types (block {i})"),
                ));
            }
            let heads = self.attention_head_dim.get(i).ok_or_else(|| {
                invalid(
                    path,
                    format!("attention_head_dim has no entry for block {i}"),
                )
            })?;
            let depth = self.transformer_layers_per_block.get(i).ok_or_else(|| {
                invalid(
                    path,
                    format!("transformer_layers_per_block has no entry for block {i}"),
                )
            })?;
            let channels = self.block_out_channels[i];
            if heads == 0
                || !channels.is_multiple_of(heads)
                || !channels.is_multiple_of(self.norm_num_groups)
            {
                return Err(invalid(
                    path,
                    format!(
                        "block {i}: {channels} channels must divide into attention_head_dim {heads} \
                         heads and norm_num_groups {}",
                        self.norm_num_groups
                    ),
                ));
            }
            blocks.push(BlockConfig {
                out_channels: channels,
                use_cross_attn: cross.then_some(depth),
                attention_head_dim: heads,
            });
        }
        Ok(UNet2DConditionModelConfig {
            center_input_sample: self.center_input_sample,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            blocks,
            layers_per_block: self.layers_per_block,
            downsample_padding: self.downsample_padding,
            mid_block_scale_factor: self.mid_block_scale_factor,
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            cross_attention_dim: self.cross_attention_dim,
            sliced_attention_size: None,
            use_linear_projection: self.use_linear_projection,
        })
    }
}

fn scaling() -> f64 {
    0.18215
}

/// `vae/config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct VaeJson {
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one_usize")]
    pub layers_per_block: usize,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "groups")]
    pub norm_num_groups: usize,
    #[serde(default = "scaling")]
    pub scaling_factor: f64,
    #[serde(default = "t")]
    pub use_quant_conv: bool,
    #[serde(default = "t")]
    pub use_post_quant_conv: bool,
    /// The VAE overflows in f16 (SDXL's): it runs in f32 on a GPU too.
    #[serde(default)]
    pub force_upcast: bool,
}

impl VaeJson {
    pub fn to_candle(&self, path: &Path) -> Result<AutoEncoderKLConfig> {
        if self.latent_channels != 4 || self.block_out_channels.is_empty() {
            return Err(invalid(
                path,
                "only 4-channel latents with at least one block are supported",
            ));
        }
        Ok(AutoEncoderKLConfig {
            block_out_channels: self.block_out_channels.clone(),
            layers_per_block: self.layers_per_block,
            latent_channels: self.latent_channels,
            norm_num_groups: self.norm_num_groups,
            use_quant_conv: self.use_quant_conv,
            use_post_quant_conv: self.use_post_quant_conv,
        })
    }

    /// Pixels per latent cell each way.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }
}

fn beta_start() -> f64 {
    0.00085
}
fn beta_end() -> f64 {
    0.012
}
fn scaled_linear() -> String {
    "scaled_linear".into()
}
fn epsilon() -> String {
    "epsilon".into()
}
fn leading() -> String {
    "leading".into()
}
fn thousand() -> usize {
    1000
}

/// `scheduler/scheduler_config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerJson {
    #[serde(rename = "_class_name", default)]
    pub class_name: String,
    #[serde(default = "beta_start")]
    pub beta_start: f64,
    #[serde(default = "beta_end")]
    pub beta_end: f64,
    #[serde(default = "scaled_linear")]
    pub beta_schedule: String,
    #[serde(default = "epsilon")]
    pub prediction_type: String,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "leading")]
    pub timestep_spacing: String,
    #[serde(default = "thousand")]
    pub num_train_timesteps: usize,
}

impl SchedulerJson {
    /// Distilled one-to-four-step models (SD-Turbo) sample on trailing timesteps.
    pub fn is_turbo(&self) -> bool {
        self.timestep_spacing == "trailing"
    }

    /// DDIM with η = 0 on the checkpoint's noise schedule: deterministic for a seed, and the
    /// sampler diffusers' own SD-Turbo documentation uses with trailing timesteps. (The
    /// checkpoint's named scheduler — PNDM, Euler, Euler ancestral — is replaced: candle's
    /// ancestral samplers draw unseedable CPU noise.)
    pub fn to_candle(&self, path: &Path) -> Result<DDIMSchedulerConfig> {
        let beta_schedule = match self.beta_schedule.as_str() {
            "scaled_linear" => BetaSchedule::ScaledLinear,
            "linear" => BetaSchedule::Linear,
            "squaredcos_cap_v2" => BetaSchedule::SquaredcosCapV2,
            other => {
                return Err(invalid(
                    path,
                    format!("beta_schedule `{other}` is not supported"),
                ));
            }
        };
        let prediction_type = match self.prediction_type.as_str() {
            "epsilon" => PredictionType::Epsilon,
            "v_prediction" => PredictionType::VPrediction,
            "sample" => PredictionType::Sample,
            other => {
                return Err(invalid(
                    path,
                    format!("prediction_type `{other}` is not supported"),
                ));
            }
        };
        let timestep_spacing = match self.timestep_spacing.as_str() {
            "leading" => TimestepSpacing::Leading,
            "linspace" => TimestepSpacing::Linspace,
            "trailing" => TimestepSpacing::Trailing,
            other => {
                return Err(invalid(
                    path,
                    format!("timestep_spacing `{other}` is not supported"),
                ));
            }
        };
        Ok(DDIMSchedulerConfig {
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            beta_schedule,
            eta: 0.0,
            steps_offset: self.steps_offset,
            prediction_type,
            train_timesteps: self.num_train_timesteps,
            timestep_spacing,
        })
    }
}
