//! The agent's tools and what they stand on.
//!
//! - [`brand`]: brand kits (`brand.toml` + guideline documents), chunking, the [`brand::BrandStore`]
//!   trait with an embedded (`qdrant-edge`) and a server (`qdrant-client`) backend, ingestion.
//! - [`retrieve`]: the `retrieve_brand_guidelines` tool;
//! - [`generate`]: the `generate_image` tool's arguments, clamped to the model's limits;
//! - [`critique`]: the `critique_image` checks (technical, colours, palette, forbidden, safety);
//! - [`resize`]: the `resize` tool: channel presets or custom sizes, smart crop or fit.

pub mod brand;
pub mod critique;
pub mod error;
pub mod generate;
pub mod resize;
pub mod retrieve;

pub use error::{Error, Result};
