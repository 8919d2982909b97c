//! The agent's tools and what they stand on.
//!
//! - [`brand`]: brand kits (`brand.toml` + guideline documents), chunking, the [`brand::BrandStore`]
//!   trait with an embedded (`qdrant-edge`) and a server (`qdrant-client`) backend, ingestion.
//! - [`retrieve`]: the `retrieve_brand_guidelines` tool;
//! - [`generate`]: the `generate_image` tool's arguments, clamped to the model's limits;
//! - [`background`]: the `remove_background` tool: the subject cut out as RGBA, with its mask;
//! - [`convert`]: the `convert` tool: PNG, JPEG or WebP with a quality, metadata kept or
//!   stripped;
//! - [`critique`]: the `critique_image` checks (technical, colours, palette, forbidden, safety);
//! - [`resize`]: the `resize` tool: channel presets or custom sizes, smart crop or fit;
//! - [`upscale`]: the `upscale` tool: 2× or 4× with ESRGAN-slim;
//! - [`layout`]: the `compose_layout` tool: headline, subline, call to action and logo on an
//!   image in the brand's colours and type, by named templates inside safe margins.

pub mod background;
pub mod brand;
pub mod convert;
pub mod critique;
pub mod error;
pub mod generate;
pub mod layout;
pub mod resize;
pub mod retrieve;
pub mod upscale;

pub use error::{Error, Result};
