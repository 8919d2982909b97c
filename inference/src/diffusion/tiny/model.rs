//! The network of Atelier's offline image model: a small diffusion transformer (DiT) that
//! predicts the flow-matching velocity of a noisy image, conditioned on the time and on a MiniLM
//! sentence embedding of the caption through adaptive layer norm (FiLM with gates, "adaLN-zero"),
//! and, where the config asks for it, on MiniLM's per-token states of the caption through
//! cross-attention in every block.
//!
//! One pooled vector per caption says which colours and things a caption names but binds them
//! loosely: the network trained on it alone swapped figure and ground ("a gold circle on navy"
//! came out navy on gold) and did not follow shapes or positions. Cross-attention lets each
//! patch look up the words that concern it. Its output projection starts at zero, so adding it
//! to a trained network changes nothing until training teaches it something
//! ([`TinyConfig::cross_attention`], `atelier train tiny --resume … --cross-attention`).
//!
//! Everything is matrix products, which candle runs fast on CPU: the pixel refiner's 3×3
//! convolutions are written as products too (candle's own convolution has a slow backward pass
//! there; the final convolution, 3 channels wide, is too small to matter). Field names mirror
//! the weight names.

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
    /// Cross-attention from the image patches to the caption's per-token MiniLM states (at
    /// most [`MAX_TEXT_TOKENS`]) in every block. Absent (false) in configs written before it
    /// existed.
    #[serde(default)]
    pub cross_attention: bool,
    /// A 3×3 convolution over the predicted pixels, added to them (U-ViT's final
    /// convolution): each 4×4 patch is predicted by its own token, and the seams between
    /// patches showed as a grid of blocks. Absent (false) in configs written before it existed.
    #[serde(default)]
    pub final_conv: bool,
    /// Width of the pixel refiner (0: none): three 3×3 convolutions at full resolution over
    /// per-pixel features of the last tokens, the noisy image and the prediction, whose output
    /// is added to the prediction. A token predicts its 4×4 pixels by one linear map, which
    /// draws a circle and a triangle alike as a staircase of blocks; the refiner gives every
    /// pixel a say in where an edge falls inside a patch. Its last convolution starts at zero,
    /// so a trained network gains it without changing (`train tiny --resume … --refiner`).
    /// Absent (0) in configs written before it existed.
    #[serde(default)]
    pub refiner: usize,
}

/// Word-pieces of a caption the cross-attention sees; the rest of a longer prompt still
/// reaches the network through the pooled sentence embedding.
pub const MAX_TEXT_TOKENS: usize = 64;

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
            cross_attention: true,
            final_conv: true,
            refiner: 0,
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
            cross_attention: true,
            final_conv: true,
            refiner: 8,
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
        if self.refiner > MAX_REFINER {
            return Err(format!(
                "refiner {} is wider than {MAX_REFINER} channels",
                self.refiner
            ));
        }
        if !self.dim.is_multiple_of(4) || self.depth == 0 || self.cond_dim == 0 {
            return Err("dim must be a multiple of 4; depth and cond_dim must be positive".into());
        }
        Ok(())
    }
}

const FREQ_DIM: usize = 256;

/// Widest pixel refiner accepted (its cost grows with the square of the width).
pub const MAX_REFINER: usize = 256;

/// Features per pixel the refiner reads from the last tokens.
const REFINER_FEATURES: usize = 16;

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

/// What a batch of images is conditioned on.
#[derive(Debug, Clone)]
pub struct Condition {
    /// Unit-length sentence embeddings `[B, cond_dim]`; zeros are the empty condition.
    pub pooled: Tensor,
    /// Per-token states `[B, L, cond_dim]` and their mask `[B, L]` (1 on real tokens, 0 on
    /// padding), for networks with cross-attention.
    pub tokens: Option<(Tensor, Tensor)>,
}

impl Condition {
    /// Assemble a batch: one pooled vector per caption and, for cross-attention, the token
    /// states of each (an empty list for the empty condition).
    pub fn new(
        pooled: &[Vec<f32>],
        tokens: Option<&[crate::embed::TokenStates]>,
        dims: usize,
        device: &Device,
    ) -> Result<Self> {
        let b = pooled.len();
        let flat: Vec<f32> = pooled.iter().flatten().copied().collect();
        if flat.len() != b * dims {
            candle_core::bail!("pooled embeddings are not {dims} wide");
        }
        let pooled = Tensor::from_vec(flat, (b, dims), device)?;
        let tokens = match tokens {
            None => None,
            Some(states) => {
                if states.len() != b {
                    candle_core::bail!("{} token lists for {b} captions", states.len());
                }
                let len = states.iter().map(|s| s.tokens).max().unwrap_or(0).max(1);
                let mut values = vec![0f32; b * len * dims];
                let mut mask = vec![0f32; b * len];
                for (i, s) in states.iter().enumerate() {
                    if s.values.len() != s.tokens * dims {
                        candle_core::bail!("token states are not {dims} wide");
                    }
                    values[i * len * dims..][..s.values.len()].copy_from_slice(&s.values);
                    mask[i * len..][..s.tokens].fill(1.0);
                }
                Some((
                    Tensor::from_vec(values, (b, len, dims), device)?,
                    Tensor::from_vec(mask, (b, len), device)?,
                ))
            }
        };
        Ok(Condition { pooled, tokens })
    }

    /// Batch size.
    pub fn batch(&self) -> Result<usize> {
        self.pooled.dim(0)
    }

    /// The empty condition (what guidance moves away from) for the same batch size.
    pub fn empty_like(&self) -> Result<Self> {
        let tokens = match &self.tokens {
            None => None,
            Some((t, m)) => {
                let (b, _, d) = t.dims3()?;
                Some((
                    Tensor::zeros((b, 1, d), t.dtype(), t.device())?,
                    Tensor::zeros((b, 1), m.dtype(), m.device())?,
                ))
            }
        };
        Ok(Condition {
            pooled: self.pooled.zeros_like()?,
            tokens,
        })
    }

    /// This batch followed by `other`'s, token lists padded to the longer.
    pub fn cat(&self, other: &Condition) -> Result<Self> {
        let pooled = Tensor::cat(&[&self.pooled, &other.pooled], 0)?;
        let tokens = match (&self.tokens, &other.tokens) {
            (None, None) => None,
            (Some((ta, ma)), Some((tb, mb))) => {
                let (la, lb) = (ta.dim(1)?, tb.dim(1)?);
                let len = la.max(lb);
                let pad = |t: &Tensor, have: usize| t.pad_with_zeros(1, 0, len - have);
                Some((
                    Tensor::cat(&[pad(ta, la)?, pad(tb, lb)?], 0)?,
                    Tensor::cat(&[pad(ma, la)?, pad(mb, lb)?], 0)?,
                ))
            }
            _ => candle_core::bail!("joining conditions with and without token states"),
        };
        Ok(Condition { pooled, tokens })
    }
}

/// Cross-attention from image patches (queries) to caption tokens (keys and values).
#[derive(Debug, Clone)]
struct CrossAttention {
    q: Linear,
    kv: Linear,
    proj: Linear,
    heads: usize,
}

impl CrossAttention {
    fn new(cfg: &TinyConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.dim;
        Ok(CrossAttention {
            q: linear(d, d, vb.pp("q"))?,
            kv: linear(d, 2 * d, vb.pp("kv"))?,
            proj: zero_linear(d, d, vb.pp("proj"))?,
            heads: cfg.heads,
        })
    }

    /// `x` `[B, N, d]`, `text` `[B, M, d]`, `bias` `[B, 1, 1, M]` (0 or a large negative).
    fn forward(&self, x: &Tensor, text: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        let m = text.dim(1)?;
        let hd = d / self.heads;
        let q = self
            .q
            .forward(x)?
            .reshape((b, n, self.heads, hd))?
            .transpose(1, 2)?
            .contiguous()?;
        let kv = self
            .kv
            .forward(text)?
            .reshape((b, m, 2, self.heads, hd))?
            .permute((2, 0, 3, 1, 4))?;
        let k = kv.get(0)?.contiguous()?;
        let v = kv.get(1)?.contiguous()?;
        let scores = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let out = weights.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        self.proj.forward(&out)
    }
}

/// Caption tokens as the blocks see them: `[B, 1 + L, d]` (a learned "no more words" token
/// first, so a query always has something to attend to, even for the empty condition) and the
/// additive attention bias `[B, 1, 1, 1 + L]` that hides padding.
struct TextTokens {
    tokens: Tensor,
    bias: Tensor,
}

#[derive(Debug, Clone)]
struct Block {
    qkv: Linear,
    proj: Linear,
    fc1: Linear,
    fc2: Linear,
    ada: Linear,
    cross: Option<CrossAttention>,
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
            cross: if cfg.cross_attention {
                Some(CrossAttention::new(cfg, vb.pp("cross"))?)
            } else {
                None
            },
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

    fn forward(&self, x: &Tensor, c: &Tensor, text: Option<&TextTokens>) -> Result<Tensor> {
        let m = self.ada.forward(c)?.chunk(6, 1)?;
        let [shift1, scale1, gate1, shift2, scale2, gate2] = m.as_slice() else {
            candle_core::bail!("adaLN produced {} chunks", m.len())
        };
        let h = self.attention(&modulate(&norm(x)?, shift1, scale1)?)?;
        let mut x = (x + h.broadcast_mul(&gate1.unsqueeze(1)?)?)?;
        match (&self.cross, text) {
            (Some(cross), Some(text)) => {
                x = (&x + cross.forward(&norm(&x)?, &text.tokens, &text.bias)?)?;
            }
            (None, _) => {}
            (Some(_), None) => candle_core::bail!("this network needs caption token states"),
        }
        let h = modulate(&norm(&x)?, shift2, scale2)?;
        let h = self.fc2.forward(&self.fc1.forward(&h)?.gelu()?)?;
        x + h.broadcast_mul(&gate2.unsqueeze(1)?)?
    }
}

/// U-ViT's final 3×3 convolution, as a residual on the unpatchified prediction: it lets a
/// pixel's value depend on the neighbouring patches'. Zero-initialised (weight and bias), so a
/// network trained without it predicts the same until it learns; the image border is padded by
/// repeating its edge pixels rather than with zeros (which would read as black).
#[derive(Debug, Clone)]
struct PixelConv {
    weight: Tensor,
    bias: Tensor,
}

impl PixelConv {
    fn new(vb: VarBuilder) -> Result<Self> {
        Ok(PixelConv {
            weight: vb.get_with_hints((3, 3, 3, 3), "weight", Init::Const(0.0))?,
            bias: vb.get_with_hints(3, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, v: &Tensor) -> Result<Tensor> {
        let padded = v.pad_with_same(2, 1, 1)?.pad_with_same(3, 1, 1)?;
        let conv = padded
            .conv2d(&self.weight, 0, 1, 1, 1)?
            .broadcast_add(&self.bias.reshape((1, 3, 1, 1))?)?;
        v + conv
    }
}

/// A 3×3 convolution over channels-last images `[B, H, W, C]`, written as one matrix product
/// over the nine shifted copies of the input (im2col): candle's own conv2d runs its backward pass
/// through a slow transposed convolution on CPU, while the products and copies here have fast
/// backward passes. Borders are zero-padded. The weight is `[9·C_in, C_out]`, rows ordered by
/// kernel tap (row-major over the 3×3 window), then input channel.
#[derive(Debug, Clone)]
struct Conv3 {
    weight: Tensor,
    bias: Tensor,
}

impl Conv3 {
    fn new(input: usize, output: usize, zero: bool, vb: VarBuilder) -> Result<Self> {
        let fan_in = 9 * input;
        let init = if zero {
            Init::Const(0.0)
        } else {
            // He initialisation for the SiLU that follows.
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_in as f64).sqrt(),
            }
        };
        Ok(Conv3 {
            weight: vb.get_with_hints((fan_in, output), "weight", init)?,
            bias: vb.get_with_hints(output, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = x.dims4()?;
        let padded = x.pad_with_zeros(1, 1, 1)?.pad_with_zeros(2, 1, 1)?;
        let mut taps = Vec::with_capacity(9);
        for dy in 0..3 {
            for dx in 0..3 {
                taps.push(padded.narrow(1, dy, h)?.narrow(2, dx, w)?.contiguous()?);
            }
        }
        let out = self.weight.dim(1)?;
        Tensor::cat(&taps, 3)?
            .reshape((b * h * w, 9 * c))?
            .matmul(&self.weight)?
            .broadcast_add(&self.bias)?
            .reshape((b, h, w, out))
    }
}

/// The pixel refiner ([`TinyConfig::refiner`]): per-pixel features from the last tokens, the
/// noisy image and the prediction so far → conv → SiLU → conv → SiLU → conv, added to the
/// prediction. Its receptive field (7×7 pixels) spans a patch and its neighbours.
#[derive(Debug, Clone)]
struct Refiner {
    features: Linear,
    convs: [Conv3; 3],
}

impl Refiner {
    fn new(cfg: &TinyConfig, vb: VarBuilder) -> Result<Self> {
        let width = cfg.refiner;
        let input = REFINER_FEATURES + 6;
        Ok(Refiner {
            features: linear(
                cfg.dim,
                cfg.patch * cfg.patch * REFINER_FEATURES,
                vb.pp("features"),
            )?,
            convs: [
                Conv3::new(input, width, false, vb.pp("conv0"))?,
                Conv3::new(width, width, false, vb.pp("conv1"))?,
                Conv3::new(width, 3, true, vb.pp("conv2"))?,
            ],
        })
    }

    /// `tokens` `[B, N, dim]` (the final layer's modulated tokens), `x` the noisy images and
    /// `v` the prediction, both `[B, 3, S, S]`.
    fn forward(&self, cfg: &TinyConfig, tokens: &Tensor, x: &Tensor, v: &Tensor) -> Result<Tensor> {
        let b = tokens.dim(0)?;
        let (p, g, f) = (cfg.patch, cfg.grid(), REFINER_FEATURES);
        let features = self
            .features
            .forward(tokens)?
            .reshape(vec![b, g, g, p, p, f])?
            .permute(vec![0, 1, 3, 2, 4, 5])?
            .reshape((b, g * p, g * p, f))?;
        let channels_last = |t: &Tensor| t.permute((0, 2, 3, 1));
        let mut h = Tensor::cat(&[features, channels_last(x)?, channels_last(v)?], 3)?;
        for (i, conv) in self.convs.iter().enumerate() {
            h = conv.forward(&h)?;
            if i + 1 < self.convs.len() {
                h = h.silu()?;
            }
        }
        v + h.permute((0, 3, 1, 2))?
    }
}

/// The velocity-predicting transformer.
#[derive(Debug, Clone)]
pub struct TinyDit {
    patch_embed: Linear,
    time_embed: Mlp2,
    text_embed: Mlp2,
    /// Projection of MiniLM token states to the width, and the always-visible null token
    /// (networks with cross-attention only).
    text_tokens: Option<(Linear, Tensor)>,
    blocks: Vec<Block>,
    final_ada: Linear,
    final_proj: Linear,
    final_conv: Option<PixelConv>,
    refiner: Option<Refiner>,
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
            text_tokens: if cfg.cross_attention {
                Some((
                    linear(cfg.cond_dim, d, vb.pp("text_tokens"))?,
                    vb.get_with_hints(
                        (1, 1, d),
                        "null_token",
                        Init::Randn {
                            mean: 0.0,
                            stdev: 0.02,
                        },
                    )?,
                ))
            } else {
                None
            },
            blocks,
            final_ada: zero_linear(d, 2 * d, vb.pp("final_ada"))?,
            final_proj: zero_linear(d, cfg.patch_values(), vb.pp("final_proj"))?,
            final_conv: if cfg.final_conv {
                Some(PixelConv::new(vb.pp("final_conv"))?)
            } else {
                None
            },
            refiner: if cfg.refiner > 0 {
                Some(Refiner::new(&cfg, vb.pp("refiner"))?)
            } else {
                None
            },
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

    /// Caption tokens for the blocks' cross-attention.
    fn text_tokens(&self, cond: &Condition) -> Result<Option<TextTokens>> {
        let Some((proj, null)) = &self.text_tokens else {
            return Ok(None);
        };
        let Some((states, mask)) = &cond.tokens else {
            candle_core::bail!("this network needs caption token states")
        };
        let b = states.dim(0)?;
        let tokens = proj.forward(&norm(states)?)?;
        let null = null.broadcast_as((b, 1, self.cfg.dim))?;
        let tokens = Tensor::cat(&[&null, &tokens], 1)?;
        let visible = Tensor::cat(
            &[&Tensor::ones((b, 1), mask.dtype(), mask.device())?, mask],
            1,
        )?;
        let bias = ((visible - 1.0)? * 1e9)?.unsqueeze(1)?.unsqueeze(1)?;
        Ok(Some(TextTokens { tokens, bias }))
    }

    /// Predicted velocity for images `x` `[B, 3, S, S]` at times `t` `[B]` given the caption.
    pub fn forward(&self, x: &Tensor, t: &Tensor, cond: &Condition) -> Result<Tensor> {
        let tokens = self
            .patch_embed
            .forward(&self.patchify(x)?)?
            .broadcast_add(&self.pos)?;
        let text = self.text_tokens(cond)?;
        let cond = &cond.pooled;
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
            h = block.forward(&h, &c, text.as_ref())?;
        }
        let m = self.final_ada.forward(&c)?.chunk(2, 1)?;
        let [shift, scale] = m.as_slice() else {
            candle_core::bail!("final adaLN produced {} chunks", m.len())
        };
        let h = modulate(&norm(&h)?, shift, scale)?;
        let v = self.unpatchify(&self.final_proj.forward(&h)?)?;
        let v = match &self.final_conv {
            Some(conv) => conv.forward(&v)?,
            None => v,
        };
        match &self.refiner {
            Some(refiner) => refiner.forward(&self.cfg, &h, x, &v),
            None => Ok(v),
        }
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

    /// Every weight of `vars` set to small seeded random values (a "trained" network, whose
    /// output is not zero).
    fn randomise(vars: &candle_nn::VarMap, seed: u64) {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let data = vars.data().lock().unwrap();
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let noise =
                super::super::flow::seeded_noise(var.dims(), &mut rng, var.device()).unwrap();
            var.set(&(noise * 0.05).unwrap()).unwrap();
        }
    }

    /// Token states of `tokens` words whose values follow a pattern set by `k` (a constant
    /// offset would not do: each token is normalised).
    fn states(tokens: usize, k: usize) -> crate::embed::TokenStates {
        crate::embed::TokenStates {
            tokens,
            values: (0..tokens * 384)
                .map(|i| ((i * k) % 11) as f32 * 0.1)
                .collect(),
        }
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// A "trained" network of `plain` shapes (seeded random weights), and the network of
    /// `grown` shapes grown from it: the same weights, plus fresh layers whose names contain
    /// `gained`.
    fn grown_from(
        plain: TinyConfig,
        grown: TinyConfig,
        seed: u64,
        gained: &str,
    ) -> (TinyDit, TinyDit, candle_nn::VarMap) {
        let device = Device::Cpu;
        let plain_vars = candle_nn::VarMap::new();
        let plain =
            TinyDit::new(plain, VarBuilder::from_varmap(&plain_vars, DTYPE, &device)).unwrap();
        randomise(&plain_vars, seed);
        let grown_vars = candle_nn::VarMap::new();
        let grown =
            TinyDit::new(grown, VarBuilder::from_varmap(&grown_vars, DTYPE, &device)).unwrap();
        {
            let from = plain_vars.data().lock().unwrap();
            let to = grown_vars.data().lock().unwrap();
            assert!(to.keys().any(|k| k.contains(gained)));
            assert!(!from.keys().any(|k| k.contains(gained)));
            for (name, var) in from.iter() {
                to[name].set(var.as_tensor()).unwrap();
            }
        }
        (plain, grown, grown_vars)
    }

    #[test]
    fn adding_cross_attention_changes_nothing_until_it_is_trained() {
        let device = Device::Cpu;
        let plain_cfg = TinyConfig {
            cross_attention: false,
            ..TinyConfig::toy()
        };
        // The same weights in a network with cross-attention (its own layers are new).
        let (plain, cross, cross_vars) = grown_from(plain_cfg, TinyConfig::toy(), 1, ".cross.");
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.3f32, 0.9], &device).unwrap();
        let pooled = vec![vec![0.05f32; 384], vec![-0.05; 384]];
        let without = Condition::new(&pooled, None, 384, &device).unwrap();
        let with =
            Condition::new(&pooled, Some(&[states(4, 2), states(2, 3)]), 384, &device).unwrap();
        let before = plain.forward(&x, &t, &without).unwrap();
        let after = cross.forward(&x, &t, &with).unwrap();
        assert!(max_abs_diff(&before, &before.zeros_like().unwrap()) > 1e-3);
        assert_eq!(max_abs_diff(&before, &after), 0.0);

        // Once its output projection is trained, the words change the prediction.
        randomise(&cross_vars, 2);
        let a = cross.forward(&x, &t, &with).unwrap();
        let other =
            Condition::new(&pooled, Some(&[states(4, 5), states(2, 3)]), 384, &device).unwrap();
        let b = cross.forward(&x, &t, &other).unwrap();
        assert!(max_abs_diff(&a.get(0).unwrap(), &b.get(0).unwrap()) > 1e-4);
        assert_eq!(
            max_abs_diff(&a.get(1).unwrap(), &b.get(1).unwrap()),
            0.0,
            "the second caption's words did not change"
        );
    }

    #[test]
    fn the_final_convolution_changes_nothing_until_trained_then_mixes_neighbouring_patches() {
        let device = Device::Cpu;
        // Without the refiner, which would refine the convolution's output further.
        let grown_cfg = TinyConfig {
            refiner: 0,
            ..TinyConfig::toy()
        };
        let plain_cfg = TinyConfig {
            final_conv: false,
            ..grown_cfg
        };
        let (plain, conv, conv_vars) = grown_from(plain_cfg, grown_cfg, 4, "final_conv.");
        let x = Tensor::randn(0f32, 1.0, (1, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.4f32], &device).unwrap();
        let c = Condition::new(&[vec![0.05; 384]], Some(&[states(3, 2)]), 384, &device).unwrap();
        let before = plain.forward(&x, &t, &c).unwrap();
        assert_eq!(
            max_abs_diff(&before, &conv.forward(&x, &t, &c).unwrap()),
            0.0
        );

        // A trained kernel that averages each pixel with its right neighbour: the last column
        // of patch 0 (x = 3) now depends on the first column of patch 1 (x = 4).
        let mut k = vec![0f32; 3 * 3 * 3 * 3];
        for ch in 0..3 {
            k[((ch * 3 + ch) * 3 + 1) * 3 + 2] = 0.5; // out ch, in ch, row 1, column 2
        }
        conv_vars.data().lock().unwrap()["final_conv.weight"]
            .set(&Tensor::from_vec(k, (3, 3, 3, 3), &device).unwrap())
            .unwrap();
        let after = conv.forward(&x, &t, &c).unwrap();
        let at = |v: &Tensor, col: usize| -> f32 {
            v.get(0)
                .unwrap()
                .get(0)
                .unwrap()
                .get(5)
                .unwrap()
                .get(col)
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        let expected = at(&before, 3) + 0.5 * at(&before, 4);
        assert!((at(&after, 3) - expected).abs() < 1e-5);
        // At the border the edge pixel is its own neighbour.
        let edge = at(&before, 15) * 1.5;
        assert!((at(&after, 15) - edge).abs() < 1e-5);
    }

    #[test]
    fn the_im2col_convolution_equals_candles_convolution() {
        let device = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let conv = Conv3::new(5, 7, false, VarBuilder::from_varmap(&vars, DTYPE, &device)).unwrap();
        randomise(&vars, 9);
        // Channels-first input and kernel `[out, in, 3, 3]` for candle's conv2d.
        let x = Tensor::randn(0f32, 1.0, (2, 5, 6, 9), &device).unwrap();
        let kernel = conv
            .weight
            .reshape((3, 3, 5, 7))
            .unwrap()
            .permute((3, 2, 0, 1))
            .unwrap()
            .contiguous()
            .unwrap();
        let expected = x
            .conv2d(&kernel, 1, 1, 1, 1)
            .unwrap()
            .broadcast_add(&conv.bias.reshape((1, 7, 1, 1)).unwrap())
            .unwrap();
        let ours = conv
            .forward(&x.permute((0, 2, 3, 1)).unwrap())
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap();
        assert_eq!(ours.dims(), &[2, 7, 6, 9]);
        assert!(max_abs_diff(&ours, &expected) < 1e-4);
    }

    #[test]
    fn adding_the_refiner_changes_nothing_until_it_is_trained() {
        let device = Device::Cpu;
        let plain_cfg = TinyConfig {
            refiner: 0,
            ..TinyConfig::toy()
        };
        let (plain, refined, refined_vars) =
            grown_from(plain_cfg, TinyConfig::toy(), 5, "refiner.");
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.2f32, 0.7], &device).unwrap();
        let c = Condition::new(
            &[vec![0.05; 384], vec![-0.03; 384]],
            Some(&[states(3, 2), states(5, 4)]),
            384,
            &device,
        )
        .unwrap();
        let before = plain.forward(&x, &t, &c).unwrap();
        assert_eq!(
            max_abs_diff(&before, &refined.forward(&x, &t, &c).unwrap()),
            0.0
        );
        // Trained, it changes the prediction, and the refined network still learns: its
        // gradient reaches the refiner's first layer.
        randomise(&refined_vars, 6);
        let trained = refined.forward(&x, &t, &c).unwrap();
        assert_eq!(trained.dims(), before.dims());
        let grads = trained
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let data = refined_vars.data().lock().unwrap();
        let g = grads.get(data["refiner.conv0.weight"].as_tensor()).unwrap();
        assert!(
            g.abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }

    #[test]
    fn padding_and_batching_do_not_change_a_prediction() {
        let device = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let model = TinyDit::new(
            TinyConfig::toy(),
            VarBuilder::from_varmap(&vars, DTYPE, &device),
        )
        .unwrap();
        randomise(&vars, 3);
        let x = Tensor::randn(0f32, 1.0, (1, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.5f32], &device).unwrap();
        let short =
            Condition::new(&[vec![0.05; 384]], Some(&[states(2, 4)]), 384, &device).unwrap();
        let long = Condition::new(&[vec![0.02; 384]], Some(&[states(9, 7)]), 384, &device).unwrap();
        // The same image and time twice, under a joined condition.
        let (xx, tt) = (Tensor::cat(&[&x, &x], 0).unwrap(), t.repeat(2).unwrap());
        let twice = |c: &Condition| model.forward(&xx, &tt, c).unwrap();
        let alone = model.forward(&x, &t, &short).unwrap();
        // Joined with a longer caption, the short one is padded with hidden tokens.
        let joined = short.cat(&long).unwrap();
        assert_eq!(joined.tokens.as_ref().unwrap().0.dims(), &[2, 9, 384]);
        let both = twice(&joined);
        assert!(max_abs_diff(&alone.get(0).unwrap(), &both.get(0).unwrap()) < 1e-5);
        assert!(max_abs_diff(&both.get(0).unwrap(), &both.get(1).unwrap()) > 1e-4);

        // The empty condition sees only the null token, however the batch was padded.
        let empty = short.empty_like().unwrap();
        let empty_long = long.cat(&empty).unwrap();
        let e1 = model.forward(&x, &t, &empty).unwrap();
        let e2 = twice(&empty_long);
        assert!(max_abs_diff(&e1.get(0).unwrap(), &e2.get(1).unwrap()) < 1e-5);

        // A network with cross-attention refuses a condition without words.
        let bare = Condition::new(&[vec![0.05; 384]], None, 384, &device).unwrap();
        assert!(model.forward(&x, &t, &bare).is_err());
    }

    #[test]
    fn output_has_input_shape_and_starts_at_zero() {
        let device = Device::Cpu;
        let vars = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DTYPE, &device);
        let model = TinyDit::new(TinyConfig::toy(), vb).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 3, 16, 16), &device).unwrap();
        let t = Tensor::new(&[0.3f32, 0.9], &device).unwrap();
        let pooled = vec![vec![0.05f32; 384]; 2];
        let states = [
            crate::embed::TokenStates {
                tokens: 3,
                values: vec![0.5; 3 * 384],
            },
            crate::embed::TokenStates {
                tokens: 0,
                values: Vec::new(),
            },
        ];
        let c = Condition::new(&pooled, Some(&states), 384, &device).unwrap();
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
