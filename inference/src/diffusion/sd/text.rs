//! The CLIP text encoder of a Stable Diffusion checkpoint (`text_encoder/`), with its tokenizer.
//!
//! Stable Diffusion 1.x uses OpenAI's CLIP ViT-L/14 text tower (`quick_gelu`), 2.x and SD-Turbo
//! OpenCLIP ViT-H/14's (`gelu`, 23 of its 24 layers). candle-transformers' own encoders fix the
//! activation (the CLIP module) or keep the configuration private (the Stable Diffusion module),
//! so the tower is built here from `text_encoder/config.json` with the same layers and weight
//! names as transformers' `CLIPTextModel`. The UNet receives the last hidden state after the
//! final layer norm, over the prompt padded to the model's window.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use tokenizers::Tokenizer;

use super::tokenizer::TokenizerFiles;
use crate::error::{Error, Result};

/// `text_encoder/config.json`; absent fields take transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct TextConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_intermediate")]
    pub intermediate_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    /// Width of `text_projection` (SDXL's second tower: `CLIPTextModelWithProjection`).
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn d_vocab() -> usize {
    49408
}
fn d_hidden() -> usize {
    512
}
fn d_intermediate() -> usize {
    2048
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    8
}
fn d_positions() -> usize {
    77
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}

#[derive(Debug, Clone, Copy)]
enum Act {
    QuickGelu,
    Gelu,
}

impl TextConfig {
    fn activation(&self) -> Option<Act> {
        match self.hidden_act.as_str() {
            "quick_gelu" => Some(Act::QuickGelu),
            "gelu" => Some(Act::Gelu),
            _ => None,
        }
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The text tower and its tokenizer.
pub struct TextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    /// SDXL's second tower projects its end-token state (the pooled text).
    projection: Option<Linear>,
    heads: usize,
    act: Act,
    tokenizer: Tokenizer,
    /// The window: prompts are padded (or cut) to this many tokens.
    pub max_tokens: usize,
    pad_id: u32,
    end_id: u32,
    device: Device,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder")
            .field("layers", &self.layers.len())
            .field("max_tokens", &self.max_tokens)
            .finish_non_exhaustive()
    }
}

/// `tokenizer/tokenizer_config.json`: which token pads (SD 2 pads with `!`, SD 1 with the end
/// token).
#[derive(Deserialize, Default)]
struct TokenizerConfig {
    #[serde(default)]
    pad_token: Option<serde_json::Value>,
}

impl TextEncoder {
    /// Load the tower from `vb`, the tokenizer from `tokenizer` and the padding token from
    /// `tokenizer_dir/tokenizer_config.json` (the end token when absent). With `projection`
    /// the tower's `text_projection` is loaded too (SDXL's second tower).
    pub fn load(
        tokenizer_dir: &Path,
        tokenizer: &TokenizerFiles,
        vb: VarBuilder,
        config: &TextConfig,
        projection: bool,
    ) -> Result<Self> {
        let bad = |reason: String| Error::InvalidRequest {
            field: "text_encoder",
            reason,
        };
        let act = config.activation().ok_or_else(|| {
            bad(format!(
                "hidden_act `{}` is not one of quick_gelu, gelu",
                config.hidden_act
            ))
        })?;
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
            || config.max_position_embeddings < 2
        {
            return Err(bad(
                "num_attention_heads must divide hidden_size and the window hold ≥ 2 tokens".into(),
            ));
        }
        let mut tokenizer: Tokenizer = tokenizer.load()?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| bad(format!("tokenizer: {e}")))?;
        let tok_config: TokenizerConfig =
            std::fs::read_to_string(tokenizer_dir.join("tokenizer_config.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
        let pad_token = tok_config.pad_token.and_then(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
            _ => None,
        });
        let end_id = tokenizer
            .encode("", true)
            .ok()
            .and_then(|e| e.get_ids().last().copied())
            .ok_or_else(|| bad("the tokenizer adds no end token".into()))?;
        let pad_id = pad_token
            .and_then(|p| {
                let id = tokenizer.token_to_id(&p)?;
                // transformers registers the padding token as a special token, so a `!` typed
                // in an SD 2 / SDXL prompt is that token rather than the word-final `!</w>`.
                tokenizer.add_special_tokens(&[tokenizers::AddedToken::from(p, true)]);
                Some(id)
            })
            .unwrap_or(end_id);

        let projection = if projection {
            let width = config.projection_dim.unwrap_or(config.hidden_size);
            Some(
                candle_nn::linear_no_bias(config.hidden_size, width, vb.pp("text_projection"))
                    .map_err(Error::candle("load the text projection"))?,
            )
        } else {
            None
        };
        let vb = vb.pp("text_model");
        let e = vb.pp("embeddings");
        let c = config;
        let token_embedding =
            candle_nn::embedding(c.vocab_size, c.hidden_size, e.pp("token_embedding"));
        let build = || -> candle_core::Result<_> {
            let token_embedding = token_embedding?;
            let position_embedding = candle_nn::embedding(
                c.max_position_embeddings,
                c.hidden_size,
                e.pp("position_embedding"),
            )?;
            let mut layers = Vec::with_capacity(c.num_hidden_layers);
            for i in 0..c.num_hidden_layers {
                let l = vb.pp(format!("encoder.layers.{i}"));
                let a = l.pp("self_attn");
                let h = c.hidden_size;
                layers.push(Layer {
                    q: candle_nn::linear(h, h, a.pp("q_proj"))?,
                    k: candle_nn::linear(h, h, a.pp("k_proj"))?,
                    v: candle_nn::linear(h, h, a.pp("v_proj"))?,
                    out: candle_nn::linear(h, h, a.pp("out_proj"))?,
                    norm1: candle_nn::layer_norm(h, c.layer_norm_eps, l.pp("layer_norm1"))?,
                    norm2: candle_nn::layer_norm(h, c.layer_norm_eps, l.pp("layer_norm2"))?,
                    fc1: candle_nn::linear(h, c.intermediate_size, l.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(c.intermediate_size, h, l.pp("mlp.fc2"))?,
                });
            }
            let final_norm =
                candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("final_layer_norm"))?;
            Ok((token_embedding, position_embedding, layers, final_norm))
        };
        let (token_embedding, position_embedding, layers, final_norm) =
            build().map_err(Error::candle("load the text encoder"))?;
        Ok(TextEncoder {
            token_embedding,
            position_embedding,
            layers,
            final_norm,
            projection,
            heads: c.num_attention_heads,
            act,
            tokenizer,
            max_tokens: c.max_position_embeddings,
            pad_id,
            end_id,
            device: vb.device().clone(),
        })
    }

    /// The ids the encoder reads for `text`: start and end tokens, padded to the window; a
    /// longer text keeps its start and the end token. Returns whether it was cut.
    pub fn ids(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| Error::InvalidRequest {
                field: "prompt",
                reason: format!("cannot be tokenised: {e}"),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        let cut = crate::vision::clip::fit_window(&mut ids, self.max_tokens);
        ids.resize(self.max_tokens, self.pad_id);
        Ok((ids, cut))
    }

    /// Hidden states `[texts, window, hidden]` for `texts`.
    pub fn encode(&self, texts: &[&str], dtype: DType) -> Result<Tensor> {
        let mut all = Vec::with_capacity(texts.len() * self.max_tokens);
        for text in texts {
            all.extend(self.ids(text)?.0);
        }
        let run = || -> candle_core::Result<Tensor> {
            let (mut xs, mask) = self.embed(all, texts.len())?;
            for layer in &self.layers {
                xs = self.layer(layer, &xs, &mask)?;
            }
            self.final_norm.forward(&xs)?.to_dtype(dtype)
        };
        run().map_err(Error::candle("run the text encoder"))
    }

    /// Token + position embeddings of `n` windows of ids, and the causal mask.
    fn embed(&self, ids: Vec<u32>, n: usize) -> candle_core::Result<(Tensor, Tensor)> {
        let ids = Tensor::from_vec(ids, (n, self.max_tokens), &self.device)?;
        let positions = Tensor::arange(0u32, self.max_tokens as u32, &self.device)?;
        let xs = self
            .token_embedding
            .forward(&ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mask = causal_mask(self.max_tokens, &self.device, xs.dtype())?;
        Ok((xs, mask))
    }

    /// SDXL's view of `texts`: the hidden states entering the last layer (transformers'
    /// `hidden_states[-2]`, no final norm), `[texts, window, hidden]`, and, for a tower with a
    /// projection, the projected end-token state after the final norm, `[texts, projection]`.
    pub fn encode_penultimate(
        &self,
        texts: &[&str],
        dtype: DType,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let mut all = Vec::with_capacity(texts.len() * self.max_tokens);
        let mut ends = Vec::with_capacity(texts.len());
        for text in texts {
            let (ids, _) = self.ids(text)?;
            // The first end token (transformers' pooling): padding may repeat it.
            ends.push(
                ids.iter()
                    .skip(1)
                    .position(|&id| id == self.end_id)
                    .map_or(self.max_tokens - 1, |p| p + 1),
            );
            all.extend(ids);
        }
        let run = || -> candle_core::Result<(Tensor, Option<Tensor>)> {
            let (mut penultimate, mask) = self.embed(all, texts.len())?;
            let Some((last, earlier)) = self.layers.split_last() else {
                return Err(candle_core::Error::Msg(
                    "the text encoder has no layers".into(),
                ));
            };
            for layer in earlier {
                penultimate = self.layer(layer, &penultimate, &mask)?;
            }
            // The last layer only feeds the pooled text: run it only when there is a projection.
            let pooled = match &self.projection {
                None => None,
                Some(projection) => {
                    let xs = self.layer(last, &penultimate, &mask)?;
                    let normed = self.final_norm.forward(&xs)?;
                    let rows = ends
                        .iter()
                        .enumerate()
                        .map(|(b, &end)| normed.get(b)?.get(end))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    Some(
                        projection
                            .forward(&Tensor::stack(&rows, 0)?)?
                            .to_dtype(dtype)?,
                    )
                }
            };
            Ok((penultimate.to_dtype(dtype)?, pooled))
        };
        run().map_err(Error::candle("run the text encoder"))
    }

    fn layer(&self, l: &Layer, xs: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, n, h) = xs.dims3()?;
        let hd = h / self.heads;
        let x = l.norm1.forward(xs)?;
        let split = |t: Tensor| {
            t.reshape((b, n, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((l.q.forward(&x)? * (hd as f64).powf(-0.5))?)?;
        let k = split(l.k.forward(&x)?)?;
        let v = split(l.v.forward(&x)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        let attn = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let attn = attn.transpose(1, 2)?.reshape((b, n, h))?;
        let xs = (xs + l.out.forward(&attn)?)?;
        let x = l.fc1.forward(&l.norm2.forward(&xs)?)?;
        let x = match self.act {
            Act::QuickGelu => (&x * candle_nn::ops::sigmoid(&(&x * 1.702)?)?)?,
            Act::Gelu => x.gelu_erf()?,
        };
        xs + l.fc2.forward(&x)?
    }
}

/// `[n, n]` with −inf above the diagonal.
fn causal_mask(n: usize, device: &Device, dtype: DType) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (n, n), device)?.to_dtype(dtype)
}
