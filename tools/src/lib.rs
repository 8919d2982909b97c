//! The agent's tools and what they stand on.
//!
//! - [`brand`]: brand kits (`brand.toml` + guideline documents), chunking, the [`brand::BrandStore`]
//!   trait with an embedded (`qdrant-edge`) and a server (`qdrant-client`) backend, ingestion.
//! - [`retrieve`]: the `retrieve_brand_guidelines` tool.

pub mod brand;
pub mod error;
pub mod retrieve;

pub use error::{Error, Result};
