//! The denoising UNet of a checkpoint.
//!
//! SD 1.x and 2.x run candle-transformers' `UNet2DConditionModel` as it is. SDXL's UNet adds
//! one input that model does not have (diffusers' `addition_embed_type = "text_time"`): the
//! pooled, projected text of the second text encoder and six size numbers (original height and
//! width, crop top and left, target height and width), each number turned into sinusoidal
//! features, all of it through a small MLP (`add_embedding`) and added to the time embedding
//! every ResNet block receives. [`XlUNet`] assembles candle's own public blocks the way
//! `UNet2DConditionModel` does — same layers, same weight names as diffusers — with that
//! embedding added.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, GroupNorm, VarBuilder};
use candle_transformers::models::stable_diffusion::embeddings::{TimestepEmbedding, Timesteps};
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use candle_transformers::models::stable_diffusion::unet_2d_blocks::{
    CrossAttnDownBlock2D, CrossAttnDownBlock2DConfig, CrossAttnUpBlock2D, CrossAttnUpBlock2DConfig,
    DownBlock2D, DownBlock2DConfig, UNetMidBlock2DCrossAttn, UNetMidBlock2DCrossAttnConfig,
    UpBlock2D, UpBlock2DConfig,
};

/// SDXL's added conditioning (diffusers' `text_time`): widths from `unet/config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextTime {
    /// Sinusoidal features per size number (`addition_time_embed_dim`, 256 in SDXL).
    pub time_features: usize,
    /// Input width of `add_embedding` (`projection_class_embeddings_input_dim`): pooled text
    /// width + 6 × `time_features`.
    pub input_dim: usize,
}

impl TextTime {
    /// Width of the pooled text this conditioning expects.
    pub fn pooled_dim(&self) -> Option<usize> {
        self.input_dim.checked_sub(6 * self.time_features)
    }
}

/// The added inputs of an SDXL step, one row per image of the batch.
#[derive(Debug, Clone)]
pub struct Added {
    /// `[B, pooled]`: the second text encoder's projected end-token state.
    pub text_embeds: Tensor,
    /// `[B, 6]`: original height, width, crop top, left, target height, width (pixels).
    pub time_ids: Tensor,
}

/// The UNet a checkpoint runs.
#[derive(Debug)]
pub enum Denoiser {
    /// SD 1.x, 2.x, SD-Turbo: candle-transformers' UNet.
    Plain(UNet2DConditionModel),
    /// SDXL, SDXL-Turbo.
    Xl(XlUNet),
}

impl Denoiser {
    /// Build the UNet `vb` holds: [`XlUNet`] when `text_time` is given.
    pub fn new(
        vb: VarBuilder,
        config: UNet2DConditionModelConfig,
        text_time: Option<TextTime>,
    ) -> Result<Self> {
        Ok(match text_time {
            None => Denoiser::Plain(UNet2DConditionModel::new(vb, 4, 4, false, config)?),
            Some(tt) => Denoiser::Xl(XlUNet::new(vb, config, tt)?),
        })
    }

    /// Predict the noise (or velocity) of `xs` at `timestep` attending to `context`; SDXL needs
    /// `added`.
    pub fn forward(
        &self,
        xs: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: Option<&Added>,
    ) -> Result<Tensor> {
        match (self, added) {
            (Denoiser::Plain(unet), _) => unet.forward(xs, timestep, context),
            (Denoiser::Xl(unet), Some(added)) => unet.forward(xs, timestep, context, added),
            (Denoiser::Xl(_), None) => Err(candle_core::Error::Msg(
                "an SDXL UNet needs the pooled text and size conditioning".into(),
            )),
        }
    }
}

#[derive(Debug)]
enum Down {
    Basic(DownBlock2D),
    CrossAttn(CrossAttnDownBlock2D),
}

#[derive(Debug)]
enum Up {
    Basic(UpBlock2D),
    CrossAttn(CrossAttnUpBlock2D),
}

/// SDXL's UNet: candle's blocks plus the `text_time` added embedding.
#[derive(Debug)]
pub struct XlUNet {
    conv_in: Conv2d,
    time_proj: Timesteps,
    time_embedding: TimestepEmbedding,
    add_time_proj: Timesteps,
    add_embedding: TimestepEmbedding,
    down_blocks: Vec<Down>,
    mid_block: UNetMidBlock2DCrossAttn,
    up_blocks: Vec<Up>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    config: UNet2DConditionModelConfig,
    text_time: TextTime,
}

/// candle's convention: `sliced_attention_size = Some(0)` means half the head count.
fn slice_size(config: &UNet2DConditionModelConfig, heads: usize) -> Option<usize> {
    match config.sliced_attention_size {
        Some(0) => Some(heads / 2),
        other => other,
    }
}

impl XlUNet {
    /// Build from `vb` (diffusers' weight names); 4 latent channels in and out.
    pub fn new(
        vb: VarBuilder,
        config: UNet2DConditionModelConfig,
        text_time: TextTime,
    ) -> Result<Self> {
        let n = config.blocks.len();
        let (Some(first), Some(last)) = (config.blocks.first(), config.blocks.last()) else {
            return Err(candle_core::Error::Msg(
                "a UNet needs at least one block".into(),
            ));
        };
        let (b_channels, bl_channels, bl_heads) = (
            first.out_channels,
            last.out_channels,
            last.attention_head_dim,
        );
        let time_embed_dim = b_channels * 4;
        let conv_cfg = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let conv_in = candle_nn::conv2d(4, b_channels, 3, conv_cfg, vb.pp("conv_in"))?;
        let time_proj = Timesteps::new(b_channels, config.flip_sin_to_cos, config.freq_shift);
        let time_embedding =
            TimestepEmbedding::new(vb.pp("time_embedding"), b_channels, time_embed_dim)?;
        let add_time_proj = Timesteps::new(
            text_time.time_features,
            config.flip_sin_to_cos,
            config.freq_shift,
        );
        let add_embedding =
            TimestepEmbedding::new(vb.pp("add_embedding"), text_time.input_dim, time_embed_dim)?;

        let vb_down = vb.pp("down_blocks");
        let mut down_blocks = Vec::with_capacity(n);
        for (i, block) in config.blocks.iter().enumerate() {
            let BlockConfig {
                out_channels,
                use_cross_attn,
                attention_head_dim,
            } = *block;
            let in_channels = if i > 0 {
                config.blocks[i - 1].out_channels
            } else {
                b_channels
            };
            let down = DownBlock2DConfig {
                num_layers: config.layers_per_block,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_downsample: i < n - 1,
                downsample_padding: config.downsample_padding,
                ..Default::default()
            };
            down_blocks.push(match use_cross_attn {
                Some(layers) => Down::CrossAttn(CrossAttnDownBlock2D::new(
                    vb_down.pp(i.to_string()),
                    in_channels,
                    out_channels,
                    Some(time_embed_dim),
                    false,
                    CrossAttnDownBlock2DConfig {
                        downblock: down,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: slice_size(&config, attention_head_dim),
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block: layers,
                    },
                )?),
                None => Down::Basic(DownBlock2D::new(
                    vb_down.pp(i.to_string()),
                    in_channels,
                    out_channels,
                    Some(time_embed_dim),
                    down,
                )?),
            });
        }

        let mid_block = UNetMidBlock2DCrossAttn::new(
            vb.pp("mid_block"),
            bl_channels,
            Some(time_embed_dim),
            false,
            UNetMidBlock2DCrossAttnConfig {
                resnet_eps: config.norm_eps,
                output_scale_factor: config.mid_block_scale_factor,
                cross_attn_dim: config.cross_attention_dim,
                attn_num_head_channels: bl_heads,
                resnet_groups: Some(config.norm_num_groups),
                use_linear_projection: config.use_linear_projection,
                transformer_layers_per_block: last.use_cross_attn.unwrap_or(1),
                ..Default::default()
            },
        )?;

        let vb_up = vb.pp("up_blocks");
        let mut up_blocks = Vec::with_capacity(n);
        for i in 0..n {
            let BlockConfig {
                out_channels,
                use_cross_attn,
                attention_head_dim,
            } = config.blocks[n - 1 - i];
            let prev_out_channels = if i > 0 {
                config.blocks[n - i].out_channels
            } else {
                bl_channels
            };
            let in_channels = config.blocks[if i == n - 1 { 0 } else { n - i - 2 }].out_channels;
            let up = UpBlock2DConfig {
                num_layers: config.layers_per_block + 1,
                resnet_eps: config.norm_eps,
                resnet_groups: config.norm_num_groups,
                add_upsample: i < n - 1,
                ..Default::default()
            };
            up_blocks.push(match use_cross_attn {
                Some(layers) => Up::CrossAttn(CrossAttnUpBlock2D::new(
                    vb_up.pp(i.to_string()),
                    in_channels,
                    prev_out_channels,
                    out_channels,
                    Some(time_embed_dim),
                    false,
                    CrossAttnUpBlock2DConfig {
                        upblock: up,
                        attn_num_head_channels: attention_head_dim,
                        cross_attention_dim: config.cross_attention_dim,
                        sliced_attention_size: slice_size(&config, attention_head_dim),
                        use_linear_projection: config.use_linear_projection,
                        transformer_layers_per_block: layers,
                    },
                )?),
                None => Up::Basic(UpBlock2D::new(
                    vb_up.pp(i.to_string()),
                    in_channels,
                    prev_out_channels,
                    out_channels,
                    Some(time_embed_dim),
                    up,
                )?),
            });
        }
        let conv_norm_out = candle_nn::group_norm(
            config.norm_num_groups,
            b_channels,
            config.norm_eps,
            vb.pp("conv_norm_out"),
        )?;
        let conv_out = candle_nn::conv2d(b_channels, 4, 3, conv_cfg, vb.pp("conv_out"))?;
        Ok(XlUNet {
            conv_in,
            time_proj,
            time_embedding,
            add_time_proj,
            add_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out,
            conv_out,
            config,
            text_time,
        })
    }

    /// The time embedding plus the added `text_time` embedding, `[B, time_embed_dim]`.
    fn embedding(
        &self,
        batch: usize,
        timestep: f64,
        added: &Added,
        dtype: DType,
    ) -> Result<Tensor> {
        let device = added.time_ids.device();
        let t = (Tensor::ones(batch, dtype, device)? * timestep)?;
        let emb = self.time_embedding.forward(&self.time_proj.forward(&t)?)?;
        let (rows, six) = added.time_ids.dims2()?;
        let (text_rows, pooled) = added.text_embeds.dims2()?;
        if rows != batch || text_rows != batch || six != 6 {
            return Err(candle_core::Error::Msg(format!(
                "SDXL conditioning for {batch} images needs time_ids [{batch}, 6] and text_embeds \
                 [{batch}, …]; got [{rows}, {six}] and [{text_rows}, {pooled}]"
            )));
        }
        let times = self
            .add_time_proj
            .forward(&added.time_ids.flatten_all()?.to_dtype(dtype)?)?
            .reshape((batch, 6 * self.text_time.time_features))?;
        // diffusers: concat([text_embeds, time_embeds], dim=-1).
        let add = Tensor::cat(&[&added.text_embeds.to_dtype(dtype)?, &times], 1)?;
        emb + self.add_embedding.forward(&add)?
    }

    /// One denoising step's prediction for latents `xs` `[B, 4, h, w]`.
    pub fn forward(
        &self,
        xs: &Tensor,
        timestep: f64,
        context: &Tensor,
        added: &Added,
    ) -> Result<Tensor> {
        let (batch, _, height, width) = xs.dims4()?;
        let n = self.config.blocks.len();
        let up_factor = 1usize << (n - 1);
        let odd_size = !height.is_multiple_of(up_factor) || !width.is_multiple_of(up_factor);
        let emb = self.embedding(batch, timestep, added, xs.dtype())?;
        let xs = if self.config.center_input_sample {
            ((xs * 2.0)? - 1.0)?
        } else {
            xs.clone()
        };
        let xs = self.conv_in.forward(&xs)?;
        let mut residuals = vec![xs.clone()];
        let mut xs = xs;
        for block in &self.down_blocks {
            let (out, res) = match block {
                Down::Basic(b) => b.forward(&xs, Some(&emb))?,
                Down::CrossAttn(b) => b.forward(&xs, Some(&emb), Some(context))?,
            };
            residuals.extend(res);
            xs = out;
        }
        let mut xs = self.mid_block.forward(&xs, Some(&emb), Some(context))?;
        let mut upsample_size = None;
        for (i, block) in self.up_blocks.iter().enumerate() {
            let resnets = match block {
                Up::Basic(b) => b.resnets.len(),
                Up::CrossAttn(b) => b.upblock.resnets.len(),
            };
            let res = residuals.split_off(residuals.len().saturating_sub(resnets));
            if i < n - 1
                && odd_size
                && let Some(last) = residuals.last()
            {
                let (_, _, h, w) = last.dims4()?;
                upsample_size = Some((h, w));
            }
            xs = match block {
                Up::Basic(b) => b.forward(&xs, &res, Some(&emb), upsample_size)?,
                Up::CrossAttn(b) => {
                    b.forward(&xs, &res, Some(&emb), upsample_size, Some(context))?
                }
            };
        }
        let xs = candle_nn::ops::silu(&self.conv_norm_out.forward(&xs)?)?;
        self.conv_out.forward(&xs)
    }
}
