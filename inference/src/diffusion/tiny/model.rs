//! The network of Atelier's offline image model: a small diffusion transformer (DiT) that
//! predicts the flow-matching velocity of a noisy image, conditioned on the time and on a MiniLM
//! sentence embedding of the caption through adaptive layer norm (FiLM with gates, "adaLN-zero").
//!
//! Everything is matrix products, which candle runs fast on CPU (no convolutions, whose
//! backward passes are slow there). Field names mirror the weight names.

use candle_core::{D, DType, Device, Module, Result, Tensor};
use candle_nn::{Init, Linear, VarBuilder, linear};
use serde::{Deserialize, Serialize};

/// Shapes of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TinyConfig {
    /// Side of the (square) image the network works on, in pixels.
    pub image_size: usize,
    /// Side of one patch (token), in pixels.
    pub patch: usize,
    /// Width of the transformer.
    pub dim: usize,
    /// Number of transformer blocks.
    pub depth: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Width of the text embedding it is conditioned on (384 for MiniLM).
    pub cond_dim: usize,
    /// Multiply the (unit-length) caption embedding by √`cond_dim`, so that its components are
    /// of the same order as the time features. Without it the text reaches the blocks about 40×
    /// weaker than the time and the network takes thousands of steps to start following
    /// captions. Absent (false) in configs written before it existed.
    #[serde(default)]
    pub cond_unit_scale: bool,
}

impl TinyConfig {
    /// The shipped model: 32×32 pixels, 4×4 patches (64 tokens), width 256, 6 blocks, upsampled
    /// to the requested size.
    ///
    /// Measured on 2 cores (batch 32): 64 tokens train at ~11.6 images/s whatever the patch
    /// size; 256 tokens (64×64 in 4×4 patches) at 2.2 images/s, too slow to learn much in the
    /// hours a CPU run has. At 64×64 in 8×8 patches each token must predict 192 values and, after
    /// 991 steps, still drew a patchwork of 8×8 blocks; 32×32 in 4×4 patches asks 48 per token
    /// for the same compute, enough for fills, gradients, shapes and simple scenes.
    pub const fn base() -> Self {
        TinyConfig {
            image_size: 32,
            patch: 4,
            dim: 256,
            depth: 6,
            heads: 4,
            cond_dim: 384,
            cond_unit_scale: true,
        }
    }

    /// A toy size for tests: 16×16 pixels, width 32, one block.
    pub const fn toy() -> Self {
        TinyConfig {
            image_size: 16,
            patch: 4,
            dim: 32,
            depth: 1,
            heads: 2,
            cond_dim: 384,
            cond_unit_scale: true,
        }
    }

    fn grid(&self) -> usize {
        self.image_size / self.patch
    }

    fn patch_values(&self) -> usize {
        self.patch * self.patch * 3
    }

    /// Check that the shapes fit together.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.patch == 0 || !self.image_size.is_multiple_of(self.patch) {
            return Err(format!(
                "image_size {} is not a multiple of patch {}",
                self.image_size, self.patch
            ));
        }
        if self.heads == 0
            || !self.dim.is_multiple_of(self.heads)
            || !(self.dim / self.heads).is_multiple_of(2)
        {
            return Err(format!(
                "dim {} must split into {} heads of even width",
                self.dim, self.heads
            ));
        }
        if !self.dim.is_multiple_of(4) || self.depth == 0 || self.cond_dim == 0 {
            return Err("dim must be a multiple of 4; depth and cond_dim must be positive".into());
        }
        Ok(())
    }
}

const FREQ_DIM: usize = 256;

/// Layer norm without learned scale or shift (adaLN supplies them).
fn norm(x: &Tensor) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let x = x.broadcast_sub(&mean)?;
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(var + 1e-6)?.sqrt()?)
}

/// `x * (1 + scale) + shift`, with `scale`/`shift` of shape `[B, dim]` broadcast over tokens.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(&(scale.unsqueeze(1)? + 1.0)?)?
        .broadcast_add(&shift.unsqueeze(1)?)
}

/// A linear layer whose weights and bias start at zero (so a new block is the identity).
fn zero_linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", Init::Const(0.0))?;
    let bias = vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?;
    Ok(Linear::new(weight, Some(bias)))
}

/// Sinusoidal embedding of times in `[0, 1]`, shape `[B]` → `[B, FREQ_DIM]`.
fn timestep_embedding(t: &Tensor) -> Result<Tensor> {
    let half = FREQ_DIM / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), t.device())?;
    let args = (t.unsqueeze(1)? * 1000.0)?.broadcast_mul(&freqs)?;
    Tensor::cat(&[args.cos()?, args.sin()?], 1)
}

/// Fixed 2-D sine-cosine position embedding, `[grid², dim]`.
fn position_embedding(grid: usize, dim: usize, device: &Device) -> Result<Tensor> {
    let quarter = dim / 4;
    let mut data = Vec::with_capacity(grid * grid * dim);
    for y in 0..grid {
        for x in 0..grid {
            for (pos, _) in [(y, 0), (x, 1)] {
                for i in 0..quarter {
                    let omega = 1.0 / 10_000f32.powf(i as f32 / quarter as f32);
                    data.push((pos as f32 * omega).sin());
                }
                for i in 0..quarter {
                    let omega = 1.0 / 10_000f32.powf(i as f32 / quarter as f32);
                    data.push((pos as f32 * omega).cos());
                }
            }
        }
    }
    Tensor::from_vec(data, (grid * grid, dim), device)
}

#[derive(Debug, Clone)]
struct Mlp2 {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp2 {
    fn new(input: usize, hidden: usize, output: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Mlp2 {
            fc1: linear(input, hidden, vb.pp("fc1"))?,
            fc2: linear(hidden, output, vb.pp("fc2"))?,
        })
    }
}

impl Module for Mlp2 {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.silu()?)
    }
}

#[derive(Debug, Clone)]
struct Block {
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
    ada: Linear,
    heads: usize,
}

impl Block {
    fn new(cfg: &TinyConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(Block {
            qkv: linear(d, 3 * d, vb.pp("qkv"))?,
            proj: linear(d, d, vb.pp("proj"))?,
            fc1: linear(d, 4 * d, vb.pp("fc1"))?,
            fc2: linear(4 * d, d, vb.pp("fc2"))?,
            ada: zero_linear(d, 6 * d, vb.pp("ada"))?,
            heads: cfg.heads,
        })
    }

    fn attention(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let hd = d / self.heads;
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((b, n, 3, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let q = qkv.get(0)?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward(&out)
    }

    fn forward(&self, x: &Tensor, c: &Tensor) -> Result<Tensor> {
        let m = self.ada.forward(c)?.chunk(6, 1)?;
        let [shift1, scale1, gate1, shift2, scale2, gate2] = m.as_slice() else {
            candle_core::bail!("adaLN produced {} chunks", m.len())
        };
        let h = self.attention(&modulate(&norm(x)?, shift1, scale1)?)?;
        let x = (x + h.broadcast_mul(&gate1.unsqueeze(1)?)?)?;
        let h = modulate(&norm(&x)?, shift2, scale2)?;
        let h = self.fc2.forward(&self.fc1.forward(&h)?.gelu()?)?;
        x + h.broadcast_mul(&gate2.unsqueeze(1)?)?
    }
}

/// The velocity-predicting transformer.
#[derive(Debug, Clone)]
pub struct TinyDit {
    patch_embed: Linear,
    time_embed: Mlp2,
    text_embed: Mlp2,
    blocks: Vec<Block>,
    final_ada: Linear,
    final_proj: Linear,
    pos: Tensor,
    cfg: TinyConfig,
}

impl TinyDit {
    /// Build the network, creating or loading its weights through `vb`.
    pub fn new(cfg: TinyConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::msg)?;
        let d = cfg.dim;
        let blocks = (0..cfg.depth)
            .map(|i| Block::new(&cfg, vb.pp(format!("blocks.{i}"))))
            .collect::<Result<_>>()?;
        Ok(TinyDit {
            patch_embed: linear(cfg.patch_values(), d, vb.pp("patch_embed"))?,
            time_embed: Mlp2::new(FREQ_DIM, d, d, vb.pp("time_embed"))?,
            text_embed: Mlp2::new(cfg.cond_dim, d, d, vb.pp("text_embed"))?,
            blocks,
            final_ada: zero_linear(d, 2 * d, vb.pp("final_ada"))?,
            final_proj: zero_linear(d, cfg.patch_values(), vb.pp("final_proj"))?,
            pos: position_embedding(cfg.grid(), d, vb.device())?,
            cfg,
        })
    }

    /// The shapes.
    pub fn config(&self) -> &TinyConfig {
        &self.cfg
    }

    /// `[B, 3, H, W]` → `[B, N, p·p·3]`
    fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let p = self.cfg.patch;
        let (gh, gw) = (h / p, w / p);
        x.reshape((b, c, gh, p, gw * p))?
            .reshape(vec![b, c, gh, p, gw, p])?
            .permute(vec![0, 2, 4, 3, 5, 1])?
            .reshape((b, gh * gw, p * p * c))
    }

    /// `[B, N, p·p·3]` → `[B, 3, H, W]`
    fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let (p, g) = (self.cfg.patch, self.cfg.grid());
        x.reshape(vec![b, g, g, p, p, 3])?
            .permute(vec![0, 5, 1, 3, 2, 4])?
            .reshape((b, 3, g * p, g * p))
    }

    /// Predicted velocity for images `x` `[B, 3, S, S]` at times `t` `[B]` given text `cond` `[B, cond_dim]`.
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Tensor) -> Result<Tensor> {
        let tokens = self
            .patch_embed
            .forward(&self.patchify(x)?)?
            .broadcast_add(&self.pos)?;
        let cond = if self.cfg.cond_unit_scale {
            (cond * (self.cfg.cond_dim as f64).sqrt())?
        } else {
            cond.clone()
        };
        let c = (self.time_embed.forward(&timestep_embedding(t)?)?
            + self.text_embed.forward(&cond)?)?
        .silu()?;
        let mut h = tokens;
        for block in &self.blocks {
            h = block.forward(&h, &c)?;
        }
        let m = self.final_ada.forward(&c)?.chunk(2, 1)?;
        let [shift, scale] = m.as_slice() else {
            candle_core::bail!("final adaLN produced {} chunks", m.len())
        };
        let h = self
            .final_proj
            .forward(&modulate(&norm(&h)?, shift, scale)?)?;
        self.unpatchify(&h)
    }

    /// Number of parameters.
    pub fn parameter_count(vars: &candle_nn::VarMap) -> usize {
        vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }
}

/// Data type used everywhere in this model.
pub const DTYPE: DType = DType::F32;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_round_trips() {
        let device = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DTYPE, &device);
        let model = TinyDit::new(TinyConfig::toy(), vb).unwrap();
        let x = Tensor::arange(0f32, (2 * 3 * 16 * 16) as f32, &device)
            .unwrap()
            .reshape((2, 3, 16, 16))
            .unwrap();
        let back = model.unpatchify(&model.patchify(&x).unwrap()).unwrap();
        let diff = (back - &x)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        // A patch holds one 4×4 block of pixels: token 1 starts at column 4 of row 0.
        let tokens = model.patchify(&x).unwrap();
        let first: Vec<f32> = tokens.get(0).unwrap().get(1).unwrap().to_vec1().unwrap();
        assert_eq!(
            (first[0], first[1]),
            (4.0, 260.0),
            "pixel (0, 4): channel 0 then channel 1"
        );
    }

    #[test]
    fn output_has_input_shape_and_starts_at_zero() {
        let device = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DTYPE, &device);
        let model = TinyDit::new(TinyConfig::toy(), vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.3f32, 0.9], &device).unwrap();
        let c = Tensor::randn(0f32, 1.0, (2, 384), &device).unwrap();
        let v = model.forward(&x, &t, &c).unwrap();
        assert_eq!(v.dims(), &[2, 3, 16, 16]);
        // adaLN-zero: an untrained network predicts exactly zero.
        let total = v
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(total, 0.0);
        assert!(TinyDit::parameter_count(&vars) > 10_000);
    }
}
