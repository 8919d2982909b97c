//! all-MiniLM-L6-v2 (BERT): tokenising and windowing here, the network on llama.cpp (default)
//! or candle.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::Tokenizer;

use super::ggml::{self, LlamaBert};
use super::{Embedder, TokenStates, mean_pool, normalise};
use crate::error::{Error, Result};

/// Tokens per window; sentence-transformers uses the same limit for this model.
const WINDOW: usize = 256;
const _: () = assert!(
    WINDOW <= ggml::UBATCH,
    "a window must fit one llama.cpp pass"
);
/// Texts embedded per forward pass.
const BATCH: usize = 32;

/// The runtime that computes the network. `Llama` and `Candle` give the same vectors up to
/// rounding (llama.cpp's GELU is the tanh approximation, BERT's the exact one: cosines agree to
/// 1e-4); `LlamaQ8`, the default, trades a little of that (cosine 0.998) for speed: it is the
/// one faster than sentence-transformers at every batch size (docs/benchmarks.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedEngine {
    /// llama.cpp's BERT on ggml's CPU kernels with the layers' weights in ggml's 8-bit blocks,
    /// sequences packed without padding: the fastest on CPUs, vectors within a cosine of 0.998
    /// of the f32 ones (tested).
    #[default]
    LlamaQ8,
    /// llama.cpp's BERT with the f32 weights.
    Llama,
    /// candle's BERT, padded batches.
    Candle,
}

enum Engine {
    Llama(LlamaBert),
    Candle {
        model: Arc<BertModel>,
        device: Device,
    },
}

/// all-MiniLM-L6-v2 loaded from a directory with `config.json`, `tokenizer.json` and
/// `model.safetensors` (the `all-minilm-l6-v2` model card).
pub struct MiniLmEmbedder {
    kind: EmbedEngine,
    engine: Engine,
    tokenizer: Tokenizer,
    dims: usize,
}

impl std::fmt::Debug for MiniLmEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmEmbedder")
            .field("engine", &self.engine())
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

impl MiniLmEmbedder {
    /// Load from a model directory, on the CPU, with the default engine.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, EmbedEngine::default())
    }

    /// Load from a model directory, on the CPU, with `engine`. Both use as many threads as
    /// candle's pool (`RAYON_NUM_THREADS`, else every core). llama.cpp reads a GGUF copy of
    /// the weights, written beside them on first use.
    pub fn load_with(dir: &Path, engine: EmbedEngine) -> Result<Self> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(Error::io(format!("reading {}", dir.join(name).display())))
        };
        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| Error::Candle {
                action: "parse config.json",
                detail: e.to_string(),
            })?;
        let mut tokenizer =
            Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| Error::Candle {
                action: "load tokenizer.json",
                detail: e.to_string(),
            })?;
        // We window long texts ourselves; the tokenizer must neither cut nor pad.
        tokenizer.with_truncation(None).map_err(|e| Error::Candle {
            action: "configure the tokenizer",
            detail: e.to_string(),
        })?;
        tokenizer.with_padding(None);
        let llama = |weights| -> Result<Engine> {
            let path = ggml::converted(dir, &config, &tokenizer, weights)?;
            let threads = candle_core::utils::get_num_threads();
            Ok(Engine::Llama(LlamaBert::load(&path, threads)?))
        };
        let kind = engine;
        let engine = match kind {
            EmbedEngine::Llama => llama(ggml::Weights::F32)?,
            EmbedEngine::LlamaQ8 => llama(ggml::Weights::Q8)?,
            EmbedEngine::Candle => Engine::Candle {
                model: Arc::new(load_candle_bert(dir, &config)?),
                device: Device::Cpu,
            },
        };
        Ok(MiniLmEmbedder {
            kind,
            engine,
            tokenizer,
            dims: config.hidden_size,
        })
    }

    /// The engine computing the network.
    pub fn engine(&self) -> EmbedEngine {
        self.kind
    }

    /// Token windows of one text: `[CLS] … [SEP]` each, at most [`WINDOW`] tokens.
    fn windows(&self, text: &str) -> Result<Vec<Vec<u32>>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Candle {
                action: "tokenize",
                detail: e.to_string(),
            })?;
        let ids = encoding.get_ids();
        let cls = self.tokenizer.token_to_id("[CLS]").unwrap_or(101);
        let sep = self.tokenizer.token_to_id("[SEP]").unwrap_or(102);
        let body = WINDOW - 2;
        if ids.is_empty() {
            return Ok(vec![vec![cls, sep]]);
        }
        Ok(ids
            .chunks(body)
            .map(|chunk| {
                let mut w = Vec::with_capacity(chunk.len() + 2);
                w.push(cls);
                w.extend_from_slice(chunk);
                w.push(sep);
                w
            })
            .collect())
    }

    /// Mean-pooled (not yet normalised) vectors of token windows, batched. Windows are batched
    /// in order of length so a batch pads little; results come back in the callers' order.
    fn pooled(&self, mut windows: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..windows.len()).collect();
        order.sort_by_key(|&i| windows[i].len());
        let sorted: Vec<Vec<u32>> = order
            .iter()
            .map(|&i| std::mem::take(&mut windows[i]))
            .collect();
        let vectors = self.pooled_in_order(sorted)?;
        let mut out = vec![Vec::new(); windows.len()];
        for (i, v) in order.into_iter().zip(vectors) {
            out[i] = v;
        }
        Ok(out)
    }

    fn pooled_in_order(&self, windows: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .hidden(windows)?
            .iter()
            .map(|states| mean_pool(states, self.dims))
            .collect())
    }

    /// The last hidden state of every token of each window, `tokens × dims` row-major,
    /// [CLS] and [SEP] included.
    fn hidden(&self, windows: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        let (model, device) = match &self.engine {
            Engine::Llama(bert) => return bert.hidden(windows),
            Engine::Candle { model, device } => (model, device),
        };
        let mut out = Vec::with_capacity(windows.len());
        for batch in windows.chunks(BATCH) {
            let hidden =
                candle_hidden(model, device, batch).map_err(Error::candle("run MiniLM"))?;
            for (i, w) in batch.iter().enumerate() {
                let values = hidden
                    .get(i)
                    .and_then(|h| h.narrow(0, 0, w.len()))
                    .and_then(|h| h.flatten_all())
                    .and_then(|h| h.to_vec1::<f32>())
                    .map_err(Error::candle("read hidden states"))?;
                out.push(values);
            }
        }
        Ok(out)
    }

    /// The first window of `text`, cut to `max_tokens` word-pieces (plus [CLS] and [SEP]).
    fn first_window(&self, text: &str, max_tokens: usize) -> Result<Vec<u32>> {
        let mut w = self.windows(text)?.swap_remove(0);
        if w.len() > max_tokens + 2 {
            let sep = w[w.len() - 1];
            w.truncate(max_tokens + 1);
            w.push(sep);
        }
        Ok(w)
    }

    /// Token states of a window's hidden states: the rows between [CLS] and [SEP].
    fn strip_specials(&self, hidden: &[f32]) -> TokenStates {
        let tokens = (hidden.len() / self.dims).saturating_sub(2);
        TokenStates {
            tokens,
            values: hidden[self.dims..][..tokens * self.dims].to_vec(),
        }
    }
}

fn check_max_tokens(max_tokens: usize) -> Result<()> {
    if max_tokens == 0 || max_tokens > WINDOW - 2 {
        return Err(Error::InvalidRequest {
            field: "max_tokens",
            reason: format!("{max_tokens} is outside 1..={}", WINDOW - 2),
        });
    }
    Ok(())
}

fn load_candle_bert(dir: &Path, config: &Config) -> Result<BertModel> {
    let path = dir.join("model.safetensors");
    let weights = std::fs::read(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
        .map_err(Error::candle("read model.safetensors"))?;
    BertModel::load(vb, config).map_err(Error::candle("build the BERT model"))
}

/// Run windows (each `[CLS] … [SEP]`) padded to the longest (and masked): hidden states
/// `[B, L, D]`.
fn candle_hidden(
    model: &BertModel,
    device: &Device,
    batch: &[Vec<u32>],
) -> candle_core::Result<Tensor> {
    let len = batch.iter().map(Vec::len).max().unwrap_or(2);
    let mut ids = Vec::with_capacity(batch.len() * len);
    let mut mask = Vec::with_capacity(batch.len() * len);
    for w in batch {
        ids.extend(w.iter().copied());
        ids.extend(std::iter::repeat_n(0u32, len - w.len()));
        mask.extend(std::iter::repeat_n(1u32, w.len()));
        mask.extend(std::iter::repeat_n(0u32, len - w.len()));
    }
    let ids = Tensor::from_vec(ids, (batch.len(), len), device)?;
    let mask = Tensor::from_vec(mask, (batch.len(), len), device)?;
    let types = ids.zeros_like()?;
    model.forward(&ids, &types, Some(&mask))
}

impl Embedder for MiniLmEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut windows = Vec::new();
        let mut owners = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            for w in self.windows(text)? {
                owners.push((i, w.len() - 2));
                windows.push(w);
            }
        }
        let pooled = self.pooled(windows)?;
        let mut out = vec![vec![0f32; self.dims]; texts.len()];
        let mut single = vec![0usize; texts.len()];
        for ((owner, tokens), vector) in owners.iter().zip(&pooled) {
            single[*owner] += 1;
            let weight = (*tokens).max(1) as f32;
            for (acc, v) in out[*owner].iter_mut().zip(vector) {
                *acc += weight * v;
            }
        }
        for (vector, windows) in out.iter_mut().zip(&single) {
            if *windows > 1 {
                tracing::debug!(
                    windows,
                    "long text embedded as the weighted mean of its windows"
                );
            }
            normalise(vector);
        }
        Ok(out)
    }

    fn token_states(&self, texts: &[&str], max_tokens: usize) -> Result<Vec<TokenStates>> {
        check_max_tokens(max_tokens)?;
        let windows = texts
            .iter()
            .map(|text| self.first_window(text, max_tokens))
            .collect::<Result<Vec<_>>>()?;
        Ok(self
            .hidden(windows)?
            .iter()
            .map(|h| self.strip_specials(h))
            .collect())
    }

    /// One pass for both when every text fits one window of `max_tokens` word-pieces (a
    /// caption); otherwise [`Embedder::embed`] and [`Embedder::token_states`] separately.
    fn embed_with_token_states(
        &self,
        texts: &[&str],
        max_tokens: usize,
    ) -> Result<(Vec<Vec<f32>>, Vec<TokenStates>)> {
        check_max_tokens(max_tokens)?;
        let mut windows = Vec::with_capacity(texts.len());
        for text in texts {
            let mut w = self.windows(text)?;
            if w.len() > 1 || w[0].len() > max_tokens + 2 {
                return Ok((self.embed(texts)?, self.token_states(texts, max_tokens)?));
            }
            windows.push(w.swap_remove(0));
        }
        let hidden = self.hidden(windows)?;
        let mut vectors = Vec::with_capacity(texts.len());
        let mut states = Vec::with_capacity(texts.len());
        for h in &hidden {
            let mut v = mean_pool(h, self.dims);
            normalise(&mut v);
            vectors.push(v);
            states.push(self.strip_specials(h));
        }
        Ok((vectors, states))
    }
}
