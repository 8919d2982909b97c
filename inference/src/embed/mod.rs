//! Sentence embeddings behind one trait.
//!
//! [`OpenAiEmbedder`] asks any OpenAI-compatible `/embeddings` endpoint instead.
//!
//! [`MiniLmEmbedder`] runs all-MiniLM-L6-v2 on llama.cpp (or candle, [`EmbedEngine`]):
//! batched, mean-pooled over real tokens, L2-normalised — the same vectors as
//! sentence-transformers. A text longer than the model's
//! window is split into windows that are embedded separately and averaged (weighted by their
//! token counts), never silently cut.

mod ggml;
mod minilm;
mod openai;

pub use minilm::{EmbedEngine, MiniLmEmbedder};
pub use openai::OpenAiEmbedder;

use crate::error::{Error, Result};

/// The last hidden state of every token of one text, `tokens × dimensions` (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenStates {
    /// Number of tokens (rows).
    pub tokens: usize,
    /// `tokens × dimensions` values.
    pub values: Vec<f32>,
}

/// Turns texts into unit-length vectors whose dot product is their cosine similarity.
pub trait Embedder: Send + Sync {
    /// Length of every vector.
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// The network's last hidden state of each word-piece of each text (no pooling, no
    /// normalising, no special tokens), at most `max_tokens` of them per text: the first
    /// `max_tokens`, the rest is cut. For models conditioned on the words of a caption
    /// rather than on one vector (atelier-tiny's cross-attention). Embedders that only
    /// return pooled vectors, such as a remote API, answer [`Error::Unsupported`].
    fn token_states(&self, texts: &[&str], max_tokens: usize) -> Result<Vec<TokenStates>> {
        let _ = (texts, max_tokens);
        Err(Error::Unsupported {
            what: "per-token states from an embedder that only returns pooled vectors".into(),
        })
    }
    /// [`Embedder::embed`] and [`Embedder::token_states`] of the same texts; an embedder that
    /// computes both in one pass of its network says so by overriding this.
    fn embed_with_token_states(
        &self,
        texts: &[&str],
        max_tokens: usize,
    ) -> Result<(Vec<Vec<f32>>, Vec<TokenStates>)> {
        Ok((self.embed(texts)?, self.token_states(texts, max_tokens)?))
    }
}

/// The mean of the rows of a row-major `rows × dims` matrix (a window's token states): the
/// mean pooling of sentence-transformers.
pub(crate) fn mean_pool(states: &[f32], dims: usize) -> Vec<f32> {
    let mut mean = vec![0f32; dims];
    let mut rows = 0usize;
    for row in states.chunks_exact(dims) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v;
        }
        rows += 1;
    }
    let n = rows.max(1) as f32;
    mean.iter_mut().for_each(|m| *m /= n);
    mean
}

/// Scale `v` to unit length (a zero vector stays zero).
pub(crate) fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}
