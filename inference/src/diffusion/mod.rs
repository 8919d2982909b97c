//! Text-to-image generation behind one trait.
//!
//! [`ImageGenerator`] takes an [`ImageRequest`] (prompt, negative prompt, size, steps, guidance,
//! seed, count, optional init image for img2img), reports progress per step with an optional
//! low-cost preview, honours cancellation, and returns images with their metadata. Requests
//! outside a backend's [`Limits`] are refused with an error naming the limit.
//!
//! Backends: [`tiny::TinyGenerator`], Atelier's own offline model (trained by `atelier train
//! tiny`, shipped with the project, runs on 2 CPU cores), and [`openai::OpenAiImages`], any
//! service speaking OpenAI's `/v1/images/generations`.

pub mod openai;
pub mod sd;
pub mod tiny;

use image::RgbImage;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// Longest accepted prompt, in bytes.
pub const MAX_PROMPT_BYTES: usize = 2_000;

/// An image to start from (img2img).
#[derive(Debug, Clone)]
pub struct InitImage {
    /// The image; it is resized to the request's size.
    pub image: RgbImage,
    /// How much to change it: 0 keeps it, 1 ignores it.
    pub strength: f32,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub seed: u64,
    /// Number of images; image `i` uses seed `seed + i`.
    pub count: u32,
    pub init: Option<InitImage>,
    pub cancel: CancellationToken,
}

impl ImageRequest {
    /// A request with the backend-neutral defaults: 256², 12 steps, guidance 3, seed 0, one image.
    pub fn new(prompt: impl Into<String>) -> Self {
        ImageRequest {
            prompt: prompt.into(),
            negative_prompt: None,
            width: 256,
            height: 256,
            steps: 12,
            guidance: 3.0,
            seed: 0,
            count: 1,
            init: None,
            cancel: CancellationToken::new(),
        }
    }

    /// Check the request against `limits`; the error names the field and what is allowed.
    pub fn validate(&self, limits: &Limits) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        if self.prompt.trim().is_empty() {
            return invalid("prompt", "must not be empty".into());
        }
        if self.prompt.len() > MAX_PROMPT_BYTES {
            return invalid(
                "prompt",
                format!("{} bytes; at most {MAX_PROMPT_BYTES}", self.prompt.len()),
            );
        }
        for (field, value, min, max) in [
            ("width", self.width, limits.min_side, limits.max_side),
            ("height", self.height, limits.min_side, limits.max_side),
        ] {
            if value < min || value > max || value % limits.multiple_of != 0 {
                return invalid(
                    field,
                    format!(
                        "{value} must be in {min}..={max} and a multiple of {}",
                        limits.multiple_of
                    ),
                );
            }
        }
        if limits.square_only && self.width != self.height {
            return invalid(
                "width",
                format!(
                    "{}×{} is not square; this model makes square images",
                    self.width, self.height
                ),
            );
        }
        if self.steps == 0 || self.steps > limits.max_steps {
            return invalid(
                "steps",
                format!("{} is outside 1..={}", self.steps, limits.max_steps),
            );
        }
        if self.count == 0 || self.count > limits.max_count {
            return invalid(
                "count",
                format!("{} is outside 1..={}", self.count, limits.max_count),
            );
        }
        if !self.guidance.is_finite() || !(0.0..=20.0).contains(&self.guidance) {
            return invalid("guidance", format!("{} is outside 0..=20", self.guidance));
        }
        if let Some(init) = &self.init {
            if !(0.0..=1.0).contains(&init.strength) {
                return invalid("strength", format!("{} is outside 0..=1", init.strength));
            }
            if init.image.width() == 0 || init.image.height() == 0 {
                return invalid("init", "the init image is empty".into());
            }
        }
        Ok(())
    }
}

/// What a backend accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub min_side: u32,
    pub max_side: u32,
    pub multiple_of: u32,
    pub square_only: bool,
    pub max_steps: u32,
    pub max_count: u32,
}

/// One step done.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Steps finished (1-based).
    pub step: u32,
    /// Steps in all.
    pub steps: u32,
    /// Which image of the request.
    pub image: u32,
    /// A low-cost preview of the current estimate.
    pub preview: Option<RgbImage>,
}

/// Receives progress; called from the generating thread.
pub type ProgressFn = Box<dyn FnMut(Progress) + Send>;

/// One generated image.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub image: RgbImage,
    pub seed: u64,
}

/// The result of a request.
#[derive(Debug, Clone)]
pub struct Generation {
    pub images: Vec<GeneratedImage>,
    pub model: String,
    pub steps: u32,
    /// Wall time of the whole request, in milliseconds.
    pub total_ms: u64,
}

/// A text-to-image model.
#[async_trait::async_trait]
pub trait ImageGenerator: Send + Sync {
    /// Model name.
    fn name(&self) -> &str;
    /// What requests it accepts.
    fn limits(&self) -> Limits;
    /// Generate; `progress` hears about every step. Cancellation ends it with [`Error::Cancelled`].
    async fn generate(
        &self,
        request: ImageRequest,
        progress: Option<ProgressFn>,
    ) -> Result<Generation>;
}

/// Images side by side, `columns` to a row, `gap` pixels of white between them (for reports).
pub fn grid(images: &[RgbImage], columns: u32, gap: u32) -> RgbImage {
    let cell_w = images.iter().map(RgbImage::width).max().unwrap_or(1);
    let cell_h = images.iter().map(RgbImage::height).max().unwrap_or(1);
    let columns = columns.max(1).min(images.len().max(1) as u32);
    let rows = (images.len() as u32).div_ceil(columns).max(1);
    let mut out = RgbImage::from_pixel(
        columns * cell_w + (columns + 1) * gap,
        rows * cell_h + (rows + 1) * gap,
        image::Rgb([255, 255, 255]),
    );
    for (i, img) in images.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        let x = gap + col * (cell_w + gap);
        let y = gap + row * (cell_h + gap);
        image::imageops::replace(&mut out, img, i64::from(x), i64::from(y));
    }
    out
}
