//! Embeddings from any OpenAI-compatible `/embeddings` endpoint, through `async-openai`.
//!
//! [`Embedder`] is a blocking interface (the candle model computes on the calling thread), so
//! this backend owns one background thread with a small tokio runtime that performs the HTTP
//! requests; `embed` hands a batch to it and waits for the answer. Call it, like the candle
//! embedder, from a blocking thread (`spawn_blocking`), never from an async task.

use std::sync::mpsc;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::embeddings::{CreateEmbeddingRequestArgs, EmbeddingInput};

use super::{Embedder, normalise};
use crate::error::{Error, Result};
use crate::llm::OpenAiConfig;

/// Texts per request (OpenAI allows 2048; smaller requests fail and retry more cheaply).
const REQUEST_BATCH: usize = 256;

type Job = (Vec<String>, mpsc::Sender<Result<Vec<Vec<f32>>>>);

/// Embeddings from an OpenAI-compatible server.
pub struct OpenAiEmbedder {
    config: OpenAiConfig,
    dims: usize,
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .field("dims", &self.dims)
            .finish()
    }
}

impl OpenAiEmbedder {
    /// A client for `config` that expects `dims`-dimensional vectors (the model's size, e.g.
    /// 1536 for `text-embedding-3-small`). Nothing is sent until the first `embed`.
    pub fn new(config: OpenAiConfig, dims: usize) -> Result<Self> {
        if dims == 0 || dims > 8192 {
            return Err(Error::InvalidRequest {
                field: "dimensions",
                reason: format!("{dims} is outside 1..=8192"),
            });
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::io("starting the embeddings client runtime"))?;
        let api = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        let client = Client::with_config(api);
        let (tx, rx) = mpsc::channel::<Job>();
        let worker_config = config.clone();
        std::thread::Builder::new()
            .name("openai-embed".into())
            .spawn(move || {
                while let Ok((texts, reply)) = rx.recv() {
                    let result = runtime.block_on(request(&client, &worker_config, dims, texts));
                    let _ = reply.send(result);
                }
            })
            .map_err(Error::io("starting the embeddings client thread"))?;
        Ok(Self {
            config,
            dims,
            jobs: std::sync::Mutex::new(tx),
        })
    }

    fn api_error(&self, detail: impl std::fmt::Display) -> Error {
        Error::Api {
            base_url: self.config.base_url.clone(),
            detail: detail.to_string(),
        }
    }
}

async fn request(
    client: &Client<OpenAIConfig>,
    config: &OpenAiConfig,
    dims: usize,
    texts: Vec<String>,
) -> Result<Vec<Vec<f32>>> {
    let api_error = |detail: String| Error::Api {
        base_url: config.base_url.clone(),
        detail,
    };
    let n = texts.len();
    let request = CreateEmbeddingRequestArgs::default()
        .model(config.model.clone())
        .input(EmbeddingInput::StringArray(texts))
        .build()
        .map_err(|e| api_error(e.to_string()))?;
    let response = client
        .embeddings()
        .create(request)
        .await
        .map_err(|e| api_error(e.to_string()))?;
    let mut out = vec![Vec::new(); n];
    for item in response.data {
        let slot = out
            .get_mut(item.index as usize)
            .ok_or_else(|| api_error(format!("answer index {} for a batch of {n}", item.index)))?;
        if item.embedding.len() != dims {
            return Err(api_error(format!(
                "model `{}` returned {}-dimensional vectors; settings say {dims}",
                config.model,
                item.embedding.len()
            )));
        }
        *slot = item.embedding;
    }
    if let Some(missing) = out.iter().position(Vec::is_empty) {
        return Err(api_error(format!(
            "no embedding for input {missing} of {n}"
        )));
    }
    for v in &mut out {
        normalise(v);
    }
    Ok(out)
}

impl Embedder for OpenAiEmbedder {
    fn dimensions(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::InvalidRequest {
                field: "texts",
                reason: format!("text {i} is empty; the embeddings API rejects empty input"),
            });
        }
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(REQUEST_BATCH) {
            let (tx, rx) = mpsc::channel();
            let owned = batch.iter().map(|t| t.to_string()).collect();
            self.jobs
                .lock()
                .map_err(|_| self.api_error("the client thread stopped"))?
                .send((owned, tx))
                .map_err(|_| self.api_error("the client thread stopped"))?;
            let vectors = rx
                .recv()
                .map_err(|_| self.api_error("the client thread stopped"))??;
            out.extend(vectors);
        }
        Ok(out)
    }
}
