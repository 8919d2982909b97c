//! Any image service that speaks OpenAI's `POST /v1/images/generations` (OpenAI itself,
//! LocalAI, Atelier's own server, …), through async-openai.
//!
//! The request carries the prompt, `n`, `size` as `WIDTHxHEIGHT` and the configured model and
//! response format. Sampling controls have no place in OpenAI's API; servers that take them as
//! extensions (`seed`, `steps`, `negative_prompt`, as Atelier and several self-hosted servers
//! do) get them when [`OpenAiImagesConfig::extensions`] is on. Without extensions the seed is
//! not sent, so the service decides the randomness and the same seed does not reproduce an
//! image. img2img (`/v1/images/edits`) is not offered: a request with an init image is refused.
//!
//! There is no step-by-step progress over this API: progress reports each image once it has
//! arrived. Cancellation drops the HTTP request.

use std::time::Instant;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::images::{
    CreateImageRequest, Image, ImageModel, ImageResponseFormat, ImageSize, ImagesResponse,
};
use base64::Engine;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{
    GeneratedImage, Generation, ImageGenerator, ImageRequest, Limits, Progress, ProgressFn,
};
use crate::error::{Error, Result};

/// Most images one request asks for (OpenAI's own limit for `n`).
pub const MAX_COUNT: u32 = 10;
/// Largest decoded image accepted from a service (40 megapixels).
pub const MAX_PIXELS: u64 = 40_000_000;
/// Largest image file accepted from a service, base64 or download (64 MiB).
pub const MAX_IMAGE_BYTES: usize = 64 << 20;

/// How the service returns images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Base64 in the JSON answer.
    B64Json,
    /// A link the client downloads.
    Url,
    /// Leave it to the service (gpt-image models always answer in base64 and refuse the field).
    Default,
}

/// Where and how to reach the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiImagesConfig {
    /// Base URL including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Bearer key; empty for servers without one.
    pub api_key: String,
    /// Model name the service knows.
    pub model: String,
    pub response_format: ResponseFormat,
    /// Send `seed`, `steps` and `negative_prompt` (servers that accept them).
    pub extensions: bool,
    /// Sizes the service accepts.
    pub min_side: u32,
    pub max_side: u32,
    pub multiple_of: u32,
}

/// Images from an OpenAI-compatible service.
#[derive(Debug, Clone)]
pub struct OpenAiImages {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    config: OpenAiImagesConfig,
}

impl OpenAiImages {
    /// A client for `config`; nothing is sent until the first request.
    pub fn new(config: OpenAiImagesConfig) -> Result<Self> {
        let invalid = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        if !(config.base_url.starts_with("http://") || config.base_url.starts_with("https://")) {
            return invalid(
                "base_url",
                format!("`{}` must start with http:// or https://", config.base_url),
            );
        }
        if config.model.trim().is_empty() {
            return invalid("model", "must name the service's image model".into());
        }
        if config.min_side == 0
            || config.multiple_of == 0
            || config.min_side > config.max_side
            || u64::from(config.max_side) * u64::from(config.max_side) > MAX_PIXELS
        {
            return invalid(
                "max_side",
                format!(
                    "sizes {}..={} in steps of {} are not a usable range (at most {} px a side)",
                    config.min_side,
                    config.max_side,
                    config.multiple_of,
                    (MAX_PIXELS as f64).sqrt() as u32
                ),
            );
        }
        let api = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        Ok(OpenAiImages {
            client: Client::with_config(api),
            http: reqwest::Client::new(),
            config,
        })
    }

    fn api_error(&self, detail: impl std::fmt::Display) -> Error {
        Error::Api {
            base_url: self.config.base_url.clone(),
            detail: detail.to_string(),
        }
    }

    /// The JSON body for `request`: OpenAI's fields, plus the extensions when configured.
    // `response_format` is deprecated for OpenAI's own gpt-image models but is how other
    // services (and Atelier's) choose between base64 and links.
    #[allow(deprecated)]
    pub fn body(&self, request: &ImageRequest) -> Result<serde_json::Value> {
        let typed = CreateImageRequest {
            prompt: request.prompt.clone(),
            model: ImageModel::Other(self.config.model.clone()),
            n: Some(request.count as u8),
            size: Some(ImageSize::Other(format!(
                "{}x{}",
                request.width, request.height
            ))),
            response_format: match self.config.response_format {
                ResponseFormat::B64Json => Some(ImageResponseFormat::B64Json),
                ResponseFormat::Url => Some(ImageResponseFormat::Url),
                ResponseFormat::Default => None,
            },
            ..Default::default()
        };
        let mut body = serde_json::to_value(&typed).map_err(|e| self.api_error(e))?;
        if self.config.extensions
            && let Some(map) = body.as_object_mut()
        {
            map.insert("seed".into(), request.seed.into());
            map.insert("steps".into(), request.steps.into());
            if let Some(negative) = request.negative_prompt.as_deref().filter(|n| !n.is_empty()) {
                map.insert("negative_prompt".into(), negative.into());
            }
        }
        Ok(body)
    }

    async fn decode(&self, image: &Image) -> Result<RgbImage> {
        let bytes = match image {
            Image::B64Json { b64_json, .. } => {
                if b64_json.len() > MAX_IMAGE_BYTES / 3 * 4 + 4 {
                    return Err(self.api_error(format!(
                        "an image of {} base64 bytes is over the {} MiB limit",
                        b64_json.len(),
                        MAX_IMAGE_BYTES >> 20
                    )));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(b64_json.as_bytes())
                    .map_err(|e| self.api_error(format!("an image is not valid base64: {e}")))?
            }
            Image::Url { url, .. } => self.download(url).await?,
        };
        let reader = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()
            .map_err(|e| self.api_error(format!("an image cannot be read: {e}")))?;
        let (w, h) = reader
            .into_dimensions()
            .map_err(|e| self.api_error(format!("an image cannot be decoded: {e}")))?;
        if u64::from(w) * u64::from(h) > MAX_PIXELS || w == 0 || h == 0 {
            return Err(self.api_error(format!(
                "an image of {w}×{h} is outside 1 pixel..{} megapixels",
                MAX_PIXELS / 1_000_000
            )));
        }
        image::load_from_memory(&bytes)
            .map(|img| img.to_rgb8())
            .map_err(|e| self.api_error(format!("an image cannot be decoded: {e}")))
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(self.api_error(format!("image link `{url:.80}` is not http(s)")));
        }
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| self.api_error(format!("downloading {url:.80}: {e}")))?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.api_error(format!("downloading {url:.80}: {e}")))?
        {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_IMAGE_BYTES {
                return Err(self.api_error(format!(
                    "the image at {url:.80} is over the {} MiB limit",
                    MAX_IMAGE_BYTES >> 20
                )));
            }
        }
        Ok(bytes)
    }
}

#[async_trait::async_trait]
impl ImageGenerator for OpenAiImages {
    fn name(&self) -> &str {
        &self.config.model
    }

    fn limits(&self) -> Limits {
        Limits {
            min_side: self.config.min_side,
            max_side: self.config.max_side,
            multiple_of: self.config.multiple_of,
            square_only: false,
            // Steps are the service's business; with extensions they are passed on.
            max_steps: 1000,
            max_count: MAX_COUNT,
        }
    }

    async fn generate(
        &self,
        request: ImageRequest,
        mut progress: Option<ProgressFn>,
    ) -> Result<Generation> {
        request.validate(&self.limits())?;
        if request.init.is_some() {
            return Err(Error::InvalidRequest {
                field: "init",
                reason: "the OpenAI-compatible images backend does not do img2img; \
                         use a candle model for an init image"
                    .into(),
            });
        }
        let started = Instant::now();
        let body = self.body(&request)?;
        let images_api = self.client.images();
        let call = images_api.generate_byot::<_, ImagesResponse>(body);
        let response = tokio::select! {
            () = request.cancel.cancelled() => return Err(Error::Cancelled),
            r = call => r.map_err(|e| self.api_error(e))?,
        };
        if response.data.len() != request.count as usize {
            return Err(self.api_error(format!(
                "asked for {} images, got {}",
                request.count,
                response.data.len()
            )));
        }
        let mut images = Vec::with_capacity(response.data.len());
        for (i, item) in response.data.iter().enumerate() {
            let image = tokio::select! {
                () = request.cancel.cancelled() => return Err(Error::Cancelled),
                r = self.decode(item) => r?,
            };
            if image.dimensions() != (request.width, request.height) {
                tracing::info!(
                    "{} answered {}×{} for a {}×{} request",
                    self.config.model,
                    image.width(),
                    image.height(),
                    request.width,
                    request.height
                );
            }
            if let Some(p) = progress.as_mut() {
                p(Progress {
                    step: 1,
                    steps: 1,
                    image: i as u32,
                    preview: None,
                });
            }
            images.push(GeneratedImage {
                image,
                seed: request.seed + i as u64,
            });
        }
        Ok(Generation {
            images,
            model: self.config.model.clone(),
            // Without extensions the service chose its own steps: 0 says unknown.
            steps: if self.config.extensions {
                request.steps
            } else {
                0
            },
            total_ms: started.elapsed().as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extensions: bool, response_format: ResponseFormat) -> OpenAiImagesConfig {
        OpenAiImagesConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            api_key: String::new(),
            model: "gpt-image-1".into(),
            response_format,
            extensions,
            min_side: 256,
            max_side: 2048,
            multiple_of: 8,
        }
    }

    #[test]
    fn the_body_has_openais_fields_and_the_extensions_only_when_asked() {
        let mut request = ImageRequest::new("a red scooter");
        (request.width, request.height) = (1536, 1024);
        request.count = 2;
        request.seed = 42;
        request.negative_prompt = Some("text".into());
        let plain = OpenAiImages::new(config(false, ResponseFormat::Default))
            .unwrap()
            .body(&request)
            .unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"prompt": "a red scooter", "model": "gpt-image-1", "n": 2,
                               "size": "1536x1024"})
        );
        let extended = OpenAiImages::new(config(true, ResponseFormat::B64Json))
            .unwrap()
            .body(&request)
            .unwrap();
        assert_eq!(extended["response_format"], "b64_json");
        assert_eq!(extended["seed"], 42);
        assert_eq!(extended["steps"], 12);
        assert_eq!(extended["negative_prompt"], "text");
    }

    #[test]
    fn unusable_configurations_are_refused_naming_the_field() {
        let mut bad = config(false, ResponseFormat::Url);
        bad.model = " ".into();
        assert!(
            OpenAiImages::new(bad)
                .unwrap_err()
                .to_string()
                .contains("model")
        );
        let mut bad = config(false, ResponseFormat::Url);
        bad.max_side = 100;
        let err = OpenAiImages::new(bad).unwrap_err().to_string();
        assert!(
            err.contains("max_side") && err.contains("256..=100"),
            "{err}"
        );
    }
}
