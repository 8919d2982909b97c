//! Sentence embeddings behind one trait.
//!
//! [`MiniLmEmbedder`] runs all-MiniLM-L6-v2 with candle: batched, mean-pooled over real tokens,
//! L2-normalised — the same vectors as sentence-transformers. A text longer than the model's
//! window is split into windows that are embedded separately and averaged (weighted by their
//! token counts), never silently cut.

mod minilm;

pub use minilm::MiniLmEmbedder;

use crate::error::Result;

/// Turns texts into unit-length vectors whose dot product is their cosine similarity.
pub trait Embedder: Send + Sync {
    /// Length of every vector.
    fn dimensions(&self) -> usize;
    /// One vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
}
