//! llama.cpp in process through `llama-cpp-2`.
//!
//! Design:
//! - The GGUF is loaded once into an `Arc<LlamaModel>`; each of `parallel` worker threads owns
//!   one context, created one at a time (llama.cpp's context creation is not safe to run in
//!   parallel). Requests queue on a channel; a free worker takes the next one. All model work
//!   runs on these threads, never on the async runtime.
//! - Each worker remembers the tokens in its KV cache. A new prompt that shares a prefix with
//!   them (the system prompt, earlier turns) decodes only the rest.
//! - Constrained output: the JSON schema becomes a GBNF grammar. Per token the sampler chain
//!   picks a token from the unconstrained logits, the grammar checks only that token, and the
//!   whole vocabulary goes through the grammar only when it is rejected (as llama.cpp's own
//!   sampler does): the same output at a fraction of the cost.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::thread::JoinHandle;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use tokio::sync::mpsc as tmpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::schema::prepare_schema;
use super::text::TextAssembler;
use super::{ChatDelta, ChatModel, ChatRequest, ChatStream, FinishReason, Message, Usage};
use crate::error::{Error, Result};

/// How to run a GGUF model in process.
#[derive(Debug, Clone)]
pub struct LlamaConfig {
    /// The GGUF file.
    pub model_path: PathBuf,
    /// Name reported by [`ChatModel::name`].
    pub name: String,
    /// Context window per worker, in tokens.
    pub context_size: u32,
    /// Number of workers (contexts), i.e. requests served at the same time.
    pub parallel: usize,
    /// Threads for generating tokens. One thread holds its speed when the other core is busy.
    pub threads: u32,
    /// Threads for reading the prompt.
    pub threads_batch: u32,
    /// Prompt tokens decoded per batch (also the cancellation granularity of prompt reading).
    pub batch_size: u32,
    /// Layers offloaded to a GPU when llama.cpp was built with one.
    pub gpu_layers: u32,
}

impl LlamaConfig {
    /// Defaults for a model file: 4096-token context, 2 workers, 1 thread, 512-token batches.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        let model_path = model_path.into();
        let name = model_path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "llama".into());
        LlamaConfig {
            model_path,
            name,
            context_size: 4096,
            parallel: 2,
            threads: 1,
            threads_batch: 1,
            batch_size: 512,
            gpu_layers: 0,
        }
    }

    fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        if !(256..=131_072).contains(&self.context_size) {
            return invalid(
                "context_size",
                format!("{} is outside 256..=131072", self.context_size),
            );
        }
        if !(1..=64).contains(&self.parallel) {
            return invalid("parallel", format!("{} is outside 1..=64", self.parallel));
        }
        if !(1..=256).contains(&self.threads) || !(1..=256).contains(&self.threads_batch) {
            return invalid(
                "threads",
                "threads and threads_batch must be in 1..=256".into(),
            );
        }
        if !(16..=8192).contains(&self.batch_size) {
            return invalid(
                "batch_size",
                format!("{} is outside 16..=8192", self.batch_size),
            );
        }
        Ok(())
    }
}

/// llama.cpp's backend may be initialised once per process; every model shares it.
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Llama {
            action: "initialise its backend",
            detail: e.clone(),
        })
}

/// Context creation mutates shared model state in llama.cpp: one at a time, process-wide.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

struct Job {
    prompt: String,
    grammar: Option<String>,
    request: ChatRequest,
    tx: tmpsc::Sender<Result<ChatDelta>>,
}

/// A GGUF chat model served by a pool of llama.cpp contexts.
pub struct LlamaChatModel {
    name: String,
    model: Arc<LlamaModel>,
    template: LlamaChatTemplate,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    workers: Vec<JoinHandle<()>>,
    context_size: u32,
}

impl std::fmt::Debug for LlamaChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaChatModel")
            .field("name", &self.name)
            .field("workers", &self.workers.len())
            .field("context_size", &self.context_size)
            .finish()
    }
}

impl LlamaChatModel {
    /// Load the model and start its workers. Blocking (seconds): call it off the async runtime.
    /// A missing, truncated or corrupt file gives [`Error::InvalidGguf`]; the process survives.
    pub fn load(config: LlamaConfig) -> Result<Self> {
        config.validate()?;
        super::gguf::check_gguf(&config.model_path)?;
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model =
            LlamaModel::load_from_file(backend, &config.model_path, &params).map_err(|e| {
                Error::Llama {
                    action: "load the model",
                    detail: format!("{}: {e}", config.model_path.display()),
                }
            })?;
        let model = Arc::new(model);
        let template = model.chat_template(None).or_else(|_| {
            tracing::warn!(model = %config.name, "GGUF has no chat template; using ChatML");
            LlamaChatTemplate::new("chatml").map_err(|e| Error::Llama {
                action: "build a chat template",
                detail: e.to_string(),
            })
        })?;
        let context_size = config.context_size.min(model.n_ctx_train().max(256));

        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let mut workers = Vec::with_capacity(config.parallel);
        for index in 0..config.parallel {
            let (ready_tx, ready_rx) = mpsc::channel();
            let model = model.clone();
            let jobs_rx = jobs_rx.clone();
            let cfg = config.clone();
            let handle = std::thread::Builder::new()
                .name(format!("llama-{index}"))
                .spawn(move || worker(model, cfg, context_size, jobs_rx, ready_tx))
                .map_err(|e| Error::Llama {
                    action: "start a worker thread",
                    detail: e.to_string(),
                })?;
            workers.push(handle);
            ready_rx.recv().map_err(|_| Error::Llama {
                action: "create a context",
                detail: "worker died".into(),
            })??;
        }
        tracing::info!(model = %config.name, workers = workers.len(), context_size, "llama.cpp model ready");
        Ok(LlamaChatModel {
            name: config.name,
            model,
            template,
            jobs: Mutex::new(Some(jobs_tx)),
            workers,
            context_size,
        })
    }

    /// The context window of each worker, in tokens.
    pub fn context_size(&self) -> u32 {
        self.context_size
    }

    /// Number of tokens `text` takes.
    pub fn count_tokens(&self, text: &str) -> usize {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .len()
    }

    /// The prompt the chat template makes of `messages`, ending with the assistant's turn.
    pub fn render_prompt(&self, messages: &[Message]) -> Result<String> {
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.as_str().to_string(), m.content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::InvalidRequest {
                field: "messages",
                reason: e.to_string(),
            })?;
        self.model
            .apply_chat_template(&self.template, &chat, true)
            .map_err(|e| Error::Llama {
                action: "apply the chat template",
                detail: e.to_string(),
            })
    }
}

impl Drop for LlamaChatModel {
    fn drop(&mut self) {
        // Closing the channel ends each worker after its current job.
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

#[async_trait::async_trait]
impl ChatModel for LlamaChatModel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        request.validate()?;
        let prompt = self.render_prompt(&request.messages)?;
        let grammar = match &request.schema {
            Some(schema) => Some(schema_grammar(schema)?),
            None => None,
        };
        let (tx, rx) = tmpsc::channel(64);
        let job = Job {
            prompt,
            grammar,
            request,
            tx,
        };
        let jobs = self.jobs.lock().map_err(|_| Error::BackendStopped)?;
        jobs.as_ref()
            .ok_or(Error::BackendStopped)?
            .send(job)
            .map_err(|_| Error::BackendStopped)?;
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// GBNF grammar for a JSON schema, with unbounded strings and arrays capped.
pub(crate) fn schema_grammar(schema: &serde_json::Value) -> Result<String> {
    let prepared = prepare_schema(schema);
    llama_cpp_2::json_schema_to_grammar(&prepared.to_string())
        .map_err(|e| Error::Schema(e.to_string()))
}

/// One worker: owns a context and serves jobs until the channel closes.
fn worker(
    model: Arc<LlamaModel>,
    config: LlamaConfig,
    context_size: u32,
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    ready: mpsc::Sender<Result<()>>,
) {
    let ctx = match create_context(&model, &config, context_size) {
        Ok(ctx) => ctx,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut state = WorkerState {
        ctx,
        model: &model,
        cached: Vec::new(),
        batch: LlamaBatch::new(config.batch_size as usize, 1),
        batch_size: config.batch_size as usize,
    };
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let tx = job.tx.clone();
        let result = state.run(job);
        match result {
            Ok(done) => {
                let _ = tx.blocking_send(Ok(done));
            }
            Err(e) => {
                // The cache may no longer match what we remember: start clean.
                state.ctx.clear_kv_cache();
                state.cached.clear();
                let _ = tx.blocking_send(Err(e));
            }
        }
    }
}

fn create_context<'m>(
    model: &'m LlamaModel,
    config: &LlamaConfig,
    n_ctx: u32,
) -> Result<LlamaContext<'m>> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(config.batch_size)
        .with_n_ubatch(config.batch_size)
        .with_n_threads(config.threads as i32)
        .with_n_threads_batch(config.threads_batch as i32);
    new_context(model, params)
}

/// A context on `model`, created under the process-wide creation lock.
pub(crate) fn new_context(
    model: &LlamaModel,
    params: LlamaContextParams,
) -> Result<LlamaContext<'_>> {
    let n_ctx = params.n_ctx().map_or(0, NonZeroU32::get);
    let _guard = CONTEXT_CREATION.lock().map_err(|_| Error::Llama {
        action: "create a context",
        detail: "context lock poisoned".into(),
    })?;
    model
        .new_context(backend()?, params)
        .map_err(|e| Error::Llama {
            action: "create a context",
            detail: format!("{e} (context size {n_ctx})"),
        })
}

struct WorkerState<'m> {
    ctx: LlamaContext<'m>,
    model: &'m LlamaModel,
    /// Tokens whose keys and values are in the context's cache, in order.
    cached: Vec<LlamaToken>,
    batch: LlamaBatch<'static>,
    batch_size: usize,
}

fn decode_err(e: impl std::fmt::Display) -> Error {
    Error::Llama {
        action: "decode",
        detail: e.to_string(),
    }
}

impl WorkerState<'_> {
    /// Serve one job; returns the final `Done` delta (text deltas are sent as they come).
    fn run(&mut self, job: Job) -> Result<ChatDelta> {
        let Job {
            prompt,
            grammar,
            request,
            tx,
        } = job;
        let cancelled = || request.cancel.is_cancelled() || tx.is_closed();
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let n_ctx = self.ctx.n_ctx();
        if tokens.is_empty() || tokens.len() + 1 > n_ctx as usize {
            return Err(Error::PromptTooLong {
                tokens: tokens.len(),
                n_ctx,
                max_tokens: 1,
            });
        }
        let started = std::time::Instant::now();
        let cached_tokens = self.reuse_prefix(&tokens)?;
        let mut usage = Usage {
            prompt_tokens: tokens.len() as u32,
            cached_tokens: cached_tokens as u32,
            ..Usage::default()
        };
        // Read the rest of the prompt, a batch at a time, checking for cancellation between batches.
        let rest = tokens[cached_tokens..].to_vec();
        for (i, chunk) in rest.chunks(self.batch_size).enumerate() {
            if cancelled() {
                return Ok(ChatDelta::Done {
                    finish_reason: FinishReason::Cancelled,
                    usage,
                });
            }
            let last_chunk = (i + 1) * self.batch_size >= rest.len();
            self.decode(chunk, last_chunk)?;
        }

        usage.prompt_us = started.elapsed().as_micros() as u64;
        let generation_started = std::time::Instant::now();
        let mut sampler = sampler_chain(&request);
        let greedy = request.temperature <= 0.0;
        let mut grammar = match &grammar {
            Some(g) => Some(
                LlamaSampler::grammar(self.model, g, "root")
                    .map_err(|e| Error::Schema(format!("grammar rejected by llama.cpp: {e}")))?,
            ),
            None => None,
        };
        let mut text = TextAssembler::new(request.stop.clone());
        let budget = request.max_tokens.min(n_ctx - self.cached.len() as u32);
        let mut logits_index = self.batch.n_tokens() - 1;
        let mut finish = FinishReason::Length;
        let mut piece = Vec::with_capacity(32);
        for _ in 0..budget {
            if cancelled() {
                finish = FinishReason::Cancelled;
                break;
            }
            let token = self.sample(logits_index, &mut sampler, grammar.as_mut(), greedy);
            if vocab.is_eog(token) {
                finish = FinishReason::Stop;
                break;
            }
            usage.completion_tokens += 1;
            piece.clear();
            vocab.token_to_piece_into(token, &mut piece, false, None);
            let step = text.push(&piece);
            if !step.text.is_empty() && tx.blocking_send(Ok(ChatDelta::Text(step.text))).is_err() {
                finish = FinishReason::Cancelled;
                break;
            }
            if step.stopped {
                finish = FinishReason::Stop;
                break;
            }
            self.decode(&[token], true)?;
            logits_index = 0;
        }
        usage.completion_us = generation_started.elapsed().as_micros() as u64;
        let tail = text.finish();
        if !tail.is_empty() && finish != FinishReason::Cancelled {
            let _ = tx.blocking_send(Ok(ChatDelta::Text(tail)));
        }
        Ok(ChatDelta::Done {
            finish_reason: finish,
            usage,
        })
    }

    /// Keep the longest cached prefix of `tokens` (always leaving one token to decode, whose
    /// logits start generation); returns how many prompt tokens need no decoding.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) -> Result<usize> {
        let common = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        let keep = common.min(tokens.len() - 1);
        if keep < self.cached.len() {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .map_err(|e| Error::Llama {
                    action: "trim the KV cache",
                    detail: e.to_string(),
                })?;
            if !removed {
                self.ctx.clear_kv_cache();
                self.cached.clear();
                return Ok(0);
            }
            self.cached.truncate(keep);
        }
        Ok(keep)
    }

    /// Decode `tokens` at the end of the cache; logits for the last one when `logits` is set.
    fn decode(&mut self, tokens: &[LlamaToken], logits: bool) -> Result<()> {
        self.batch.clear();
        let start = self.cached.len();
        for (i, &token) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            self.batch
                .add(token, (start + i) as i32, &[0], logits && last)
                .map_err(decode_err)?;
        }
        self.ctx.decode(&mut self.batch).map_err(decode_err)?;
        self.cached.extend_from_slice(tokens);
        Ok(())
    }

    /// Pick the next token: the chain samples unconstrained; the grammar checks just that
    /// token. Only when it rejects it does the grammar filter more: first the highest-logit
    /// [`GRAMMAR_WINDOW`] tokens, and the whole vocabulary only when too few of those survive
    /// for the chain to choose exactly as it would from the fully filtered vocabulary.
    fn sample(
        &self,
        idx: i32,
        chain: &mut LlamaSampler,
        grammar: Option<&mut LlamaSampler>,
        greedy: bool,
    ) -> LlamaToken {
        let mut candidates = self.ctx.token_data_array_ith(idx);
        chain.apply(&mut candidates);
        let mut token = candidates.selected_token().unwrap_or(LlamaToken(0));
        if let Some(grammar) = grammar {
            let mut single =
                LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
            grammar.apply(&mut single);
            let rejected = single
                .data
                .first()
                .is_none_or(|d| d.logit() == f32::NEG_INFINITY);
            if rejected {
                token = self.constrained_choice(idx, chain, grammar, greedy);
            }
            grammar.accept(token);
        }
        chain.accept(token);
        token
    }

    fn constrained_choice(
        &self,
        idx: i32,
        chain: &mut LlamaSampler,
        grammar: &mut LlamaSampler,
        greedy: bool,
    ) -> LlamaToken {
        let logits = self.ctx.get_logits_ith(idx);
        let mut top: Vec<LlamaTokenData> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0))
            .collect();
        if top.len() > GRAMMAR_WINDOW {
            top.select_nth_unstable_by(GRAMMAR_WINDOW, |a, b| b.logit().total_cmp(&a.logit()));
            top.truncate(GRAMMAR_WINDOW);
        }
        let mut window = LlamaTokenDataArray::new(top, false);
        grammar.apply(&mut window);
        let survivors = window
            .data
            .iter()
            .filter(|d| d.logit() != f32::NEG_INFINITY)
            .count();
        // The chain keeps the TOP_K best survivors: if they are all inside the window, choosing
        // from the window is the same as choosing from the whole filtered vocabulary.
        let enough = if greedy {
            survivors >= 1
        } else {
            survivors >= TOP_K as usize
        };
        let mut candidates = if enough {
            window
        } else {
            let mut all = self.ctx.token_data_array_ith(idx);
            grammar.apply(&mut all);
            all
        };
        chain.apply(&mut candidates);
        candidates.selected_token().unwrap_or(LlamaToken(0))
    }
}

/// Tokens the grammar filters before it falls back to the whole vocabulary.
const GRAMMAR_WINDOW: usize = 512;
/// Candidates the sampling chain keeps (top-k).
const TOP_K: i32 = 40;

fn sampler_chain(request: &ChatRequest) -> LlamaSampler {
    if request.temperature <= 0.0 {
        return LlamaSampler::greedy();
    }
    LlamaSampler::chain_simple([
        LlamaSampler::top_k(TOP_K),
        LlamaSampler::top_p(0.95, 1),
        LlamaSampler::min_p(0.05, 1),
        LlamaSampler::temp(request.temperature),
        LlamaSampler::dist(request.seed as u32),
    ])
}
