//! Small, structured decisions: each step asks the model one question whose answer must fit a
//! JSON schema. Local models decode under the schema's grammar, hosted ones use structured
//! output; either way the answer is parsed into a typed struct, and the code validates and
//! clamps it before anything runs. A malformed answer is retried a bounded number of times.

use std::sync::Arc;

use atelier_inference::llm::{ChatModel, ChatRequest, Message};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::prompts::Prompts;

/// What the model reads in the brief. The model extracts; the code decides whether to ask
/// ([`crate::agent::needs_asking`]): a subject must be copied from the brief's own words,
/// so a model cannot invent one for a brief that names none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Understanding {
    /// The brief's words that say what the image shows, copied; empty when it says nothing.
    pub subject: String,
    /// What in the brief contradicts itself; empty when nothing does.
    pub contradiction: String,
    /// The question to ask if something is missing or contradictory.
    pub question: String,
    pub choices: Vec<String>,
    /// What will be assumed when going on (size, style, mood …).
    pub assumptions: Vec<String>,
}

/// The schema of [`Understanding`].
pub fn understanding_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "subject": {"type": "string", "maxLength": 100},
            "contradiction": {"type": "string", "maxLength": 120},
            "question": {"type": "string", "maxLength": 160},
            "choices": {"type": "array", "items": {"type": "string", "maxLength": 48}, "maxItems": 4},
            "assumptions": {"type": "array", "items": {"type": "string", "maxLength": 100}, "maxItems": 4}
        },
        "required": ["subject", "contradiction", "question", "choices", "assumptions"],
        "additionalProperties": false
    })
}

/// The plan as the model writes it (validated into [`crate::session::Plan`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDecision {
    pub subject: String,
    pub prompt: String,
    pub negative_prompt: String,
    pub colours: Vec<String>,
    pub headline: String,
    #[serde(default)]
    pub guidelines_applied: Vec<String>,
    pub variants: u32,
    pub rationale: String,
}

/// Longest image prompt the model may write (the plan and refine schemas' `maxLength`); the
/// agent cuts what it receives to the same length.
pub const PROMPT_CHARS: usize = 240;

/// The schema of [`PlanDecision`]: colours from `colours`, citations from `citations`.
pub fn plan_schema(colours: &[String], citations: &[String], max_variants: u32) -> Value {
    let mut properties = json!({
        "subject": {"type": "string", "minLength": 2, "maxLength": 80},
        "prompt": {"type": "string", "minLength": 8, "maxLength": PROMPT_CHARS},
        "negative_prompt": {"type": "string", "maxLength": 120},
        "colours": {"type": "array", "items": {"enum": colours}, "minItems": 1, "maxItems": 3},
        "headline": {"type": "string", "maxLength": 60},
        "variants": {"type": "integer", "minimum": 1, "maximum": max_variants.max(1)},
        "rationale": {"type": "string", "maxLength": 200}
    });
    let mut required = vec![
        "subject",
        "prompt",
        "negative_prompt",
        "colours",
        "headline",
        "variants",
        "rationale",
    ];
    if !citations.is_empty()
        && let Some(map) = properties.as_object_mut()
    {
        map.insert(
            "guidelines_applied".into(),
            json!({"type": "array", "items": {"enum": citations}, "maxItems": 4}),
        );
        required.insert(5, "guidelines_applied");
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// A refined prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refinement {
    pub prompt: String,
    pub negative_prompt: String,
    pub change: String,
}

/// The schema of [`Refinement`].
pub fn refinement_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 8, "maxLength": PROMPT_CHARS},
            "negative_prompt": {"type": "string", "maxLength": 120},
            "change": {"type": "string", "maxLength": 160}
        },
        "required": ["prompt", "negative_prompt", "change"],
        "additionalProperties": false
    })
}

/// The final message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presentation {
    pub message: String,
    pub alt_text: String,
}

/// The schema of [`Presentation`].
pub fn presentation_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "message": {"type": "string", "minLength": 10, "maxLength": crate::present::MESSAGE_LIMIT},
            "alt_text": {"type": "string", "minLength": 5, "maxLength": crate::present::MAX_ALT_TEXT_CHARS}
        },
        "required": ["message", "alt_text"],
        "additionalProperties": false
    })
}

/// How decisions are asked.
#[derive(Debug, Clone)]
pub struct DecisionConfig {
    pub temperature: f32,
    pub seed: u64,
    pub max_tokens: u32,
    /// Extra attempts after a malformed answer.
    pub retries: u32,
}

/// Token and time use of one decision.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionUsage {
    pub calls: u32,
    pub tokens: u32,
    pub compute_ms: u64,
}

/// Asks the model structured questions.
pub struct Decider {
    llm: Arc<dyn ChatModel>,
    prompts: Prompts,
    config: DecisionConfig,
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decider")
            .field("llm", &self.llm.name())
            .field("config", &self.config)
            .finish()
    }
}

impl Decider {
    pub fn new(llm: Arc<dyn ChatModel>, config: DecisionConfig) -> Result<Self> {
        Ok(Decider {
            llm,
            prompts: Prompts::new()?,
            config,
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        self.llm.name()
    }

    /// Render template `name` with `context`, ask under `schema`, parse into `T`.
    pub async fn decide<T: DeserializeOwned>(
        &self,
        name: &'static str,
        context: impl Serialize,
        schema: Value,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(T, DecisionUsage)> {
        self.decide_watching(name, context, schema, cancel, None)
            .await
    }

    /// [`Decider::decide`], passing the text of one string field to `watch` as it is generated
    /// (the final message streams to the user while the model writes it).
    pub async fn decide_watching<T: DeserializeOwned>(
        &self,
        name: &'static str,
        context: impl Serialize,
        schema: Value,
        cancel: &tokio_util::sync::CancellationToken,
        mut watch: Option<&mut FieldWatcher<'_>>,
    ) -> Result<(T, DecisionUsage)> {
        let system = self.prompts.render("system", json!({}))?;
        // The title names the answer for hosted models (their tool's or format's name).
        let mut schema = schema;
        if let Some(map) = schema.as_object_mut() {
            map.entry("title").or_insert_with(|| json!(name));
        }
        let user = self.prompts.render(name, context)?;
        let mut usage = DecisionUsage::default();
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            let request = ChatRequest::new(vec![Message::system(&system), Message::user(&user)])
                .max_tokens(self.config.max_tokens)
                .temperature(self.config.temperature)
                .seed(self.config.seed.wrapping_add(u64::from(attempt)))
                .schema(schema.clone())
                .cancel_token(cancel.child_token());
            if let Some(w) = watch.as_deref_mut() {
                w.reset();
            }
            let mut observe = |text: &str| {
                if let Some(w) = watch.as_deref_mut() {
                    w.feed(text);
                }
            };
            let response = match self.llm.complete_observed(request, &mut observe).await {
                Ok(r) => r,
                Err(atelier_inference::Error::Cancelled) => return Err(Error::Cancelled),
                Err(e @ atelier_inference::Error::SchemaViolation(_)) => {
                    usage.calls += 1;
                    last = e.to_string();
                    tracing::warn!(decision = name, attempt, error = %last, "malformed decision");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            usage.calls += 1;
            usage.tokens += response.usage.prompt_tokens + response.usage.completion_tokens;
            usage.compute_ms += (response.usage.prompt_us + response.usage.completion_us) / 1000;
            match serde_json::from_str::<T>(response.text.trim()) {
                Ok(v) => return Ok((v, usage)),
                Err(e) => {
                    last = format!("{e}: {}", clip(&response.text));
                    tracing::warn!(decision = name, attempt, error = %last, "unparsable decision");
                }
            }
        }
        Err(Error::Decision {
            decision: name,
            attempts: self.config.retries + 1,
            detail: last,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Watch {
    Searching,
    AfterKey,
    Inside {
        escape: bool,
        unicode: Option<String>,
    },
    Done,
}

/// Follows a JSON text as it streams and hands the decoded value of one top-level string field
/// to a sink, piece by piece.
pub struct FieldWatcher<'a> {
    key: String,
    seen: String,
    state: Watch,
    sink: &'a mut (dyn FnMut(&str) + Send),
}

impl std::fmt::Debug for FieldWatcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldWatcher")
            .field("key", &self.key)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<'a> FieldWatcher<'a> {
    /// Watch the string field `field`.
    pub fn new(field: &str, sink: &'a mut (dyn FnMut(&str) + Send)) -> Self {
        FieldWatcher {
            key: format!("\"{field}\""),
            seen: String::new(),
            state: Watch::Searching,
            sink,
        }
    }

    /// Start over (a retried answer).
    pub fn reset(&mut self) {
        self.seen.clear();
        self.state = Watch::Searching;
    }

    /// The next piece of the JSON text.
    pub fn feed(&mut self, chunk: &str) {
        let mut out = String::new();
        for c in chunk.chars() {
            self.state = match std::mem::replace(&mut self.state, Watch::Done) {
                Watch::Searching => {
                    self.seen.push(c);
                    if self.seen.ends_with(&self.key) {
                        Watch::AfterKey
                    } else {
                        Watch::Searching
                    }
                }
                Watch::AfterKey if c.is_whitespace() || c == ':' => Watch::AfterKey,
                Watch::AfterKey if c == '"' => Watch::Inside {
                    escape: false,
                    unicode: None,
                },
                Watch::AfterKey => Watch::Searching,
                Watch::Inside {
                    escape: false,
                    unicode: None,
                } => match c {
                    '\\' => Watch::Inside {
                        escape: true,
                        unicode: None,
                    },
                    '"' => Watch::Done,
                    c => {
                        out.push(c);
                        Watch::Inside {
                            escape: false,
                            unicode: None,
                        }
                    }
                },
                Watch::Inside {
                    escape: true,
                    unicode: None,
                } => {
                    if c == 'u' {
                        Watch::Inside {
                            escape: false,
                            unicode: Some(String::new()),
                        }
                    } else {
                        match c {
                            'n' => out.push('\n'),
                            't' => out.push('\t'),
                            'r' | 'b' | 'f' => {}
                            other => out.push(other),
                        }
                        Watch::Inside {
                            escape: false,
                            unicode: None,
                        }
                    }
                }
                Watch::Inside {
                    escape,
                    unicode: Some(mut hex),
                } => {
                    hex.push(c);
                    if hex.len() == 4 {
                        if let Some(ch) =
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            out.push(ch);
                        }
                        Watch::Inside {
                            escape: false,
                            unicode: None,
                        }
                    } else {
                        Watch::Inside {
                            escape,
                            unicode: Some(hex),
                        }
                    }
                }
                Watch::Done => Watch::Done,
            };
        }
        if !out.is_empty() {
            (self.sink)(&out);
        }
    }
}

fn clip(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_field_streams_decoded_in_pieces() {
        let mut got = String::new();
        let mut sink = |t: &str| got.push_str(t);
        let mut w = FieldWatcher::new("message", &mut sink);
        let json = r#"{"alt_text": "x \"message\": no", "message" : "Here\n is \"it\" \u00e9t\u00e9.", "z": "q"}"#;
        // Fed in awkward pieces, splitting escapes and the key.
        for piece in json.as_bytes().chunks(3) {
            w.feed(std::str::from_utf8(piece).unwrap_or_default());
        }
        drop(w);
        assert_eq!(got, "Here\n is \"it\" été.");
    }
}
