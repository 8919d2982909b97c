//! `generate_image`: the agent's arguments for an image model, validated and clamped to what
//! the model accepts before anything runs.

use atelier_inference::diffusion::{ImageRequest, Limits, MAX_PROMPT_BYTES};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most variants one call may ask for.
pub const MAX_VARIANTS: u32 = 8;

/// Arguments the agent passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// What the image shows, in plain words.
    pub prompt: String,
    /// What it must not show.
    #[serde(default)]
    pub negative_prompt: Option<String>,
    /// How many variants (1-8).
    #[serde(default = "one")]
    pub variants: u32,
    /// Width in pixels (the model's nearest accepted size is used).
    #[serde(default)]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
    /// Sampling steps (more is slower and usually cleaner).
    #[serde(default)]
    pub steps: Option<u32>,
    /// How strictly to follow the prompt.
    #[serde(default)]
    pub guidance: Option<f32>,
    /// Seed of the first variant; variant `i` uses `seed + i`.
    #[serde(default)]
    pub seed: Option<u64>,
}

fn one() -> u32 {
    1
}

/// A change made to fit the model, reported back to the agent and the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Adjustment {
    pub field: String,
    pub asked: String,
    pub used: String,
}

/// The request to run and what was changed to make it fit.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub request: ImageRequest,
    pub adjustments: Vec<Adjustment>,
}

fn clamp_side(value: u32, limits: &Limits) -> u32 {
    let m = limits.multiple_of.max(1);
    let v = value.clamp(limits.min_side, limits.max_side);
    let down = (v / m) * m;
    if down < limits.min_side {
        down + m
    } else {
        down
    }
}

impl GenerateArgs {
    /// Check what cannot be repaired (an empty or over-long prompt) and clamp the rest to the
    /// model's `limits`; `defaults` fills what the agent left out.
    pub fn prepare(&self, limits: &Limits, defaults: &ImageRequest) -> Result<Prepared> {
        let prompt = self.prompt.trim();
        if prompt.is_empty() {
            return Err(Error::InvalidRequest {
                field: "prompt",
                reason: "must not be empty".into(),
            });
        }
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::InvalidRequest {
                field: "prompt",
                reason: format!("{} bytes; at most {MAX_PROMPT_BYTES}", prompt.len()),
            });
        }
        let mut adjustments = Vec::new();
        let mut adjust = |field: &str, asked: String, used: String| {
            if asked != used {
                adjustments.push(Adjustment {
                    field: field.into(),
                    asked,
                    used,
                });
            }
        };
        let mut request = defaults.clone();
        request.prompt = prompt.to_string();
        request.negative_prompt = self
            .negative_prompt
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| n.chars().take(MAX_PROMPT_BYTES / 4).collect());
        let count_max = limits.max_count.clamp(1, MAX_VARIANTS);
        request.count = self.variants.clamp(1, count_max);
        adjust(
            "variants",
            self.variants.to_string(),
            request.count.to_string(),
        );
        let w = self.width.unwrap_or(defaults.width);
        let h = self.height.unwrap_or(defaults.height);
        let (mut cw, mut ch) = (clamp_side(w, limits), clamp_side(h, limits));
        if limits.square_only && cw != ch {
            let side = clamp_side(cw.max(ch), limits);
            (cw, ch) = (side, side);
        }
        adjust("width", w.to_string(), cw.to_string());
        adjust("height", h.to_string(), ch.to_string());
        (request.width, request.height) = (cw, ch);
        let steps = self.steps.unwrap_or(defaults.steps);
        request.steps = steps.clamp(1, limits.max_steps.max(1));
        adjust("steps", steps.to_string(), request.steps.to_string());
        let guidance = self.guidance.unwrap_or(defaults.guidance);
        request.guidance = if guidance.is_finite() {
            guidance.clamp(0.0, 20.0)
        } else {
            defaults.guidance
        };
        adjust(
            "guidance",
            guidance.to_string(),
            request.guidance.to_string(),
        );
        request.seed = self.seed.unwrap_or(defaults.seed);
        Ok(Prepared {
            request,
            adjustments,
        })
    }
}

/// The JSON schema of [`GenerateArgs`], for the agent's tool list.
pub fn args_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(GenerateArgs)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        min_side: 64,
        max_side: 256,
        multiple_of: 64,
        square_only: true,
        max_steps: 50,
        max_count: 4,
    };

    fn args(json: serde_json::Value) -> GenerateArgs {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn arguments_are_clamped_to_the_model_and_changes_reported() {
        let p = args(serde_json::json!({
            "prompt": " a gold circle ", "variants": 40, "width": 1920, "height": 1080, "steps": 500
        }))
        .prepare(&LIMITS, &ImageRequest::new("x"))
        .unwrap();
        let r = &p.request;
        assert_eq!(
            (r.prompt.as_str(), r.count, r.width, r.height, r.steps),
            ("a gold circle", 4, 256, 256, 50)
        );
        let fields: Vec<_> = p.adjustments.iter().map(|a| a.field.as_str()).collect();
        assert_eq!(fields, ["variants", "width", "height", "steps"]);
        r.validate(&LIMITS).unwrap();
    }

    #[test]
    fn what_cannot_be_repaired_names_the_field() {
        let e = args(serde_json::json!({"prompt": "  "}))
            .prepare(&LIMITS, &ImageRequest::new("x"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("prompt"), "{e}");
        assert!(
            serde_json::from_value::<GenerateArgs>(serde_json::json!({"prompt": "a", "colour": 1}))
                .is_err()
        );
    }
}
