//! A BERT sentence encoder run by llama.cpp (ggml's CPU kernels), from the same
//! `model.safetensors` candle reads.
//!
//! The weights are converted once into a GGUF file beside them (llama.cpp's `bert`
//! architecture: fused query/key/value, mean pooling, the WordPiece vocabulary in llama.cpp's
//! phantom-space spelling) and loaded from there. Tokenising stays with the `tokenizers` crate
//! on the caller's side, so both engines see identical ids: llama.cpp only runs the network.
//!
//! Sequences of a batch are packed back to back without padding (llama.cpp masks attention
//! between sequences), up to [`UBATCH`] tokens per forward pass. The context returns every
//! token's last hidden state; pooling is the caller's mean.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use candle_transformers::models::bert::{Config, HiddenAct};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Tokens per forward pass. Attention spans the whole pass (masked between sequences), so a
/// larger pass spends more on attention; 512 holds the longest window twice.
pub(crate) const UBATCH: usize = 512;
/// Sequences per forward pass.
const MAX_SEQUENCES: usize = 64;
/// Stem of the converted file; bump the version when the conversion changes.
const CONVERTED: &str = "model.ggml-bert-v1";

/// How the converted file stores the layers' weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Weights {
    /// As trained: the same vectors as candle up to llama.cpp's tanh GELU.
    F32,
    /// ggml's 8-bit blocks (32 weights per scale), activations quantised likewise: faster,
    /// vectors within a cosine of 0.998 of the f32 ones (tested).
    Q8,
}

impl Weights {
    fn ggml(self) -> GgmlDType {
        match self {
            Weights::F32 => GgmlDType::F32,
            Weights::Q8 => GgmlDType::Q8_0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Weights::F32 => "f32",
            Weights::Q8 => "q8_0",
        }
    }
}

fn convert_err(detail: impl std::fmt::Display) -> Error {
    Error::Llama {
        action: "convert the BERT weights to GGUF",
        detail: detail.to_string(),
    }
}

/// The GGUF file for the model in `dir` with `weights`: written on first use (atomically,
/// beside `model.safetensors`), reused afterwards.
pub(crate) fn converted(
    dir: &Path,
    config: &Config,
    tokenizer: &Tokenizer,
    weights: Weights,
) -> Result<PathBuf> {
    let path = dir.join(format!("{CONVERTED}-{}.gguf", weights.name()));
    let source = dir.join("model.safetensors");
    let newer = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(ours), Some(theirs)) = (newer(&path), newer(&source))
        && ours >= theirs
    {
        return Ok(path);
    }
    if config.hidden_act != HiddenAct::Gelu {
        return Err(convert_err(format!(
            "{}: hidden_act must be \"gelu\" for llama.cpp's BERT",
            dir.join("config.json").display()
        )));
    }
    let tensors = candle_core::safetensors::load(&source, &Device::Cpu)
        .map_err(|e| convert_err(format!("{}: {e}", source.display())))?;
    let get = |name: &str| -> Result<&Tensor> {
        tensors
            .get(name)
            .or_else(|| tensors.get(&format!("bert.{name}")))
            .ok_or_else(|| convert_err(format!("{} has no tensor `{name}`", source.display())))
    };
    let f32 = |t: &Tensor| QTensor::quantize(t, GgmlDType::F32).map_err(convert_err);
    // The layers' matrices in the chosen type; embeddings, norms and biases stay f32.
    let matrix = |t: &Tensor| QTensor::quantize(t, weights.ggml()).map_err(convert_err);
    let mut out: Vec<(String, QTensor)> = Vec::new();
    for (ours, theirs) in [
        ("token_embd.weight", "embeddings.word_embeddings.weight"),
        (
            "position_embd.weight",
            "embeddings.position_embeddings.weight",
        ),
        (
            "token_types.weight",
            "embeddings.token_type_embeddings.weight",
        ),
        ("token_embd_norm.weight", "embeddings.LayerNorm.weight"),
        ("token_embd_norm.bias", "embeddings.LayerNorm.bias"),
    ] {
        out.push((ours.into(), f32(get(theirs)?)?));
    }
    for i in 0..config.num_hidden_layers {
        let layer = format!("encoder.layer.{i}");
        for part in ["weight", "bias"] {
            let qkv = ["query", "key", "value"]
                .iter()
                .map(|m| get(&format!("{layer}.attention.self.{m}.{part}")).cloned())
                .collect::<Result<Vec<_>>>()?;
            let fused = Tensor::cat(&qkv, 0).map_err(convert_err)?;
            let fused = if part == "weight" {
                matrix(&fused)?
            } else {
                f32(&fused)?
            };
            out.push((format!("blk.{i}.attn_qkv.{part}"), fused));
            for (ours, theirs) in [
                ("attn_output", "attention.output.dense"),
                ("attn_output_norm", "attention.output.LayerNorm"),
                ("ffn_up", "intermediate.dense"),
                ("ffn_down", "output.dense"),
                ("layer_output_norm", "output.LayerNorm"),
            ] {
                let t = get(&format!("{layer}.{theirs}.{part}"))?;
                let t = if part == "weight" && !ours.ends_with("norm") {
                    matrix(t)?
                } else {
                    f32(t)?
                };
                out.push((format!("blk.{i}.{ours}.{part}"), t));
            }
        }
    }

    // The vocabulary, by id, in llama.cpp's spelling of WordPiece: word starts carry U+2581,
    // continuations lose their `##`, bracketed specials stay as they are.
    let vocab = tokenizer.get_vocab(true);
    let mut tokens = vec![String::new(); config.vocab_size];
    for (token, id) in vocab {
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = token;
        }
    }
    if let Some(missing) = tokens.iter().position(String::is_empty) {
        return Err(convert_err(format!(
            "tokenizer.json has no token with id {missing} (the model has {} tokens)",
            config.vocab_size
        )));
    }
    let special = |t: &str| t.starts_with('[') && t.ends_with(']');
    let token_types: Vec<gguf_file::Value> = tokens
        .iter()
        .map(|t| gguf_file::Value::I32(if special(t) { 3 } else { 1 }))
        .collect();
    let spelled: Vec<gguf_file::Value> = tokens
        .iter()
        .map(|t| {
            gguf_file::Value::String(if special(t) {
                t.clone()
            } else if let Some(rest) = t.strip_prefix("##") {
                rest.to_string()
            } else {
                format!("\u{2581}{t}")
            })
        })
        .collect();
    let id = |name: &str| -> Result<gguf_file::Value> {
        tokenizer
            .token_to_id(name)
            .map(gguf_file::Value::U32)
            .ok_or_else(|| convert_err(format!("tokenizer.json has no {name} token")))
    };
    use gguf_file::Value as V;
    let metadata: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("bert".into())),
        ("general.name", V::String("sentence encoder".into())),
        (
            "general.file_type",
            V::U32(match weights {
                Weights::F32 => 0,
                Weights::Q8 => 7,
            }),
        ),
        (
            "bert.context_length",
            V::U32(config.max_position_embeddings as u32),
        ),
        ("bert.embedding_length", V::U32(config.hidden_size as u32)),
        (
            "bert.feed_forward_length",
            V::U32(config.intermediate_size as u32),
        ),
        ("bert.block_count", V::U32(config.num_hidden_layers as u32)),
        (
            "bert.attention.head_count",
            V::U32(config.num_attention_heads as u32),
        ),
        (
            "bert.attention.layer_norm_epsilon",
            V::F32(config.layer_norm_eps as f32),
        ),
        ("bert.attention.causal", V::Bool(false)),
        ("bert.pooling_type", V::U32(1)), // mean
        ("tokenizer.ggml.model", V::String("bert".into())),
        ("tokenizer.ggml.tokens", V::Array(spelled)),
        ("tokenizer.ggml.token_type", V::Array(token_types)),
        (
            "tokenizer.ggml.token_type_count",
            V::U32(config.type_vocab_size as u32),
        ),
        ("tokenizer.ggml.unknown_token_id", id("[UNK]")?),
        ("tokenizer.ggml.seperator_token_id", id("[SEP]")?),
        ("tokenizer.ggml.padding_token_id", id("[PAD]")?),
        ("tokenizer.ggml.cls_token_id", id("[CLS]")?),
        ("tokenizer.ggml.mask_token_id", id("[MASK]")?),
    ];
    let metadata: Vec<(&str, &V)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = out.iter().map(|(k, v)| (k.as_str(), v)).collect();

    // Unique per writer: two loads racing in one process must not share a partial file.
    static WRITERS: AtomicU64 = AtomicU64::new(0);
    let partial = path.with_extension(format!(
        "partial-{}-{}",
        std::process::id(),
        WRITERS.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> Result<()> {
        let file = std::fs::File::create(&partial)
            .map_err(Error::io(format!("creating {}", partial.display())))?;
        let mut w = std::io::BufWriter::new(file);
        gguf_file::write(&mut w, &metadata, &tensors).map_err(convert_err)?;
        let file = w
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", partial.display()))(e.into_error()))?;
        file.sync_all()
            .map_err(Error::io(format!("writing {}", partial.display())))?;
        std::fs::rename(&partial, &path).map_err(Error::io(format!(
            "moving {} into place",
            partial.display()
        )))
    };
    let written = write();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written?;
    tracing::info!(path = %path.display(), "BERT weights converted for llama.cpp");
    Ok(path)
}

type Reply = mpsc::SyncSender<Result<Vec<Vec<f32>>>>;

/// A loaded encoder: one worker thread owns llama.cpp's model and context; callers queue
/// windows and wait for their vectors.
pub(crate) struct LlamaBert {
    jobs: Mutex<mpsc::Sender<(Vec<Vec<u32>>, Reply)>>,
}

impl LlamaBert {
    /// Load the converted file with `threads` compute threads.
    pub(crate) fn load(path: &Path, threads: usize) -> Result<Self> {
        let backend = crate::llm::llama_backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| Error::Llama {
                action: "load the BERT model",
                detail: format!("{}: {e}", path.display()),
            })?;
        let model = Arc::new(model);
        let (jobs_tx, jobs_rx) = mpsc::channel::<(Vec<Vec<u32>>, Reply)>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<()>>(1);
        std::thread::Builder::new()
            .name("llama-bert".into())
            .spawn(move || worker(&model, threads, &jobs_rx, &ready_tx))
            .map_err(|e| Error::Llama {
                action: "start the BERT worker thread",
                detail: e.to_string(),
            })?;
        ready_rx.recv().map_err(|_| Error::BackendStopped)??;
        Ok(LlamaBert {
            jobs: Mutex::new(jobs_tx),
        })
    }

    /// The last hidden state of every token of each window (each at most [`UBATCH`]
    /// tokens), `tokens × dimensions` row-major per window, [CLS] and [SEP] included.
    pub(crate) fn hidden(&self, windows: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs
            .lock()
            .map_err(|_| Error::BackendStopped)?
            .send((windows, tx))
            .map_err(|_| Error::BackendStopped)?;
        rx.recv().map_err(|_| Error::BackendStopped)?
    }
}

fn llama_err<E: std::fmt::Display>(action: &'static str) -> impl Fn(E) -> Error {
    move |e| Error::Llama {
        action,
        detail: e.to_string(),
    }
}

fn worker(
    model: &LlamaModel,
    threads: usize,
    jobs: &mpsc::Receiver<(Vec<Vec<u32>>, Reply)>,
    ready: &mpsc::SyncSender<Result<()>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(UBATCH as u32))
        .with_n_batch(UBATCH as u32)
        .with_n_ubatch(UBATCH as u32)
        .with_n_seq_max(MAX_SEQUENCES as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        .with_embeddings(true)
        // Every token's state comes out; pooling is a mean the caller takes (the same sum
        // llama.cpp's mean pooling computes), so one pass serves pooled vectors and the token
        // states atelier-tiny's cross-attention reads.
        .with_pooling_type(LlamaPoolingType::None);
    let mut ctx = match crate::llm::new_llama_context(model, params) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut batch = LlamaBatch::new(UBATCH, 1);
    while let Ok((windows, reply)) = jobs.recv() {
        let _ = reply.send(run(&mut ctx, &mut batch, &windows));
    }
}

/// Hidden states of `windows`, whole windows packed into each forward pass.
fn run(
    ctx: &mut LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    windows: &[Vec<u32>],
) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(windows.len());
    let mut start = 0;
    while start < windows.len() {
        let mut end = start;
        let mut tokens = 0;
        while end < windows.len()
            && end - start < MAX_SEQUENCES
            && tokens + windows[end].len() <= UBATCH
        {
            tokens += windows[end].len();
            end += 1;
        }
        if end == start {
            return Err(Error::InvalidRequest {
                field: "text",
                reason: format!(
                    "a window of {} tokens exceeds llama.cpp's pass of {UBATCH}",
                    windows[start].len()
                ),
            });
        }
        batch.clear();
        for (seq, window) in windows[start..end].iter().enumerate() {
            for (pos, &id) in window.iter().enumerate() {
                batch
                    .add(LlamaToken(id as i32), pos as i32, &[seq as i32], true)
                    .map_err(llama_err("batch tokens"))?;
            }
        }
        ctx.decode(batch).map_err(llama_err("run the BERT model"))?;
        let mut index = 0i32;
        for window in &windows[start..end] {
            let mut states = Vec::new();
            for _ in 0..window.len() {
                let row = ctx
                    .embeddings_ith(index)
                    .map_err(llama_err("read token states"))?;
                states.extend_from_slice(row);
                index += 1;
            }
            out.push(states);
        }
        start = end;
    }
    Ok(out)
}
