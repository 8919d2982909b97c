//! Looking at images: the analysis critique tools stand on.
//!
//! - [`clip`]: image–text alignment (CLIP, when its weights are configured);
//! - [`colour`]: dominant colours (k-means in CIELAB) and CIEDE2000 distances;
//! - [`quality`]: technical measurements (exposure, contrast, clipping, sharpness, blankness);
//! - [`segment`]: salient-object masks with u2netp (background removal);
//! - [`safety`]: the open_nsfw image classifier;
//! - [`upscale`]: ESRGAN-slim super-resolution (×2, ×4) on candle.
//!
//! The two ONNX models run on tract, a pure-Rust ONNX runtime.

pub mod clip;
pub mod colour;
mod onnx;
pub mod quality;
pub mod safety;
pub mod segment;
pub mod upscale;
