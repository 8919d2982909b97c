//! Chat LLMs behind one trait.
//!
//! [`ChatModel`] takes messages and streams text deltas. Every backend honours the same
//! request: a token budget, stop strings, temperature, seed, an optional JSON schema that the
//! output must satisfy, and cancellation (drop the stream, or cancel the request's token).
//!
//! Backends:
//! - [`LlamaChatModel`]: llama.cpp in process (GGUF), a pool of contexts, grammar-constrained
//!   JSON, reuse of the KV cache of a shared prompt prefix;
//! - [`OpenAiChatModel`]: any OpenAI-compatible server, structured output via
//!   `response_format`.

mod gguf;
mod llama;
mod openai;
mod schema;
mod text;

use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

pub use gguf::check_gguf;
pub use llama::{LlamaChatModel, LlamaConfig};
pub(crate) use llama::{backend as llama_backend, new_context as new_llama_context};
pub use openai::{OpenAiChatModel, OpenAiConfig, StructuredOutput};
pub use schema::{prepare_schema, validate_against};

/// Hard upper bound for `max_tokens` of any request.
pub const MAX_TOKENS_LIMIT: u32 = 32_768;
/// Longest accepted stop string, in bytes.
pub const MAX_STOP_LEN: usize = 64;
/// Most stop strings per request.
pub const MAX_STOPS: usize = 8;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The role's name as chat templates spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Message {
            role: Role::System,
            content: content.into(),
        }
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A request to a chat model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The conversation so far; the model answers the last message.
    pub messages: Vec<Message>,
    /// Most tokens to generate (1..=[`MAX_TOKENS_LIMIT`]).
    pub max_tokens: u32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Seed for sampling, so runs repeat.
    pub seed: u64,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
    /// When set, the output is one JSON value valid against this schema.
    pub schema: Option<serde_json::Value>,
    /// Cancel to stop generation; dropping the stream cancels too.
    pub cancel: CancellationToken,
}

impl ChatRequest {
    /// A request with defaults: 512 tokens, temperature 0.7, seed 0, no stop, no schema.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            messages,
            max_tokens: 512,
            temperature: 0.7,
            seed: 0,
            stop: Vec::new(),
            schema: None,
            cancel: CancellationToken::new(),
        }
    }

    /// Set the token budget.
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }
    /// Set the temperature.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = temperature;
        self
    }
    /// Set the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Add a stop string.
    pub fn stop(mut self, stop: impl Into<String>) -> Self {
        self.stop.push(stop.into());
        self
    }
    /// Constrain the output to a JSON schema.
    pub fn schema(mut self, schema: serde_json::Value) -> Self {
        self.schema = Some(schema);
        self
    }
    /// Use this cancellation token.
    pub fn cancel_token(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Check every field against the limits; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        if self.messages.is_empty() {
            return invalid("messages", "at least one message is required".into());
        }
        if self.max_tokens == 0 || self.max_tokens > MAX_TOKENS_LIMIT {
            return invalid(
                "max_tokens",
                format!("{} is outside 1..={MAX_TOKENS_LIMIT}", self.max_tokens),
            );
        }
        if !self.temperature.is_finite() || !(0.0..=2.0).contains(&self.temperature) {
            return invalid(
                "temperature",
                format!("{} is outside 0.0..=2.0", self.temperature),
            );
        }
        if self.stop.len() > MAX_STOPS {
            return invalid(
                "stop",
                format!("{} stop strings; at most {MAX_STOPS}", self.stop.len()),
            );
        }
        if let Some(s) = self
            .stop
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_STOP_LEN)
        {
            return invalid("stop", format!("{s:?} must be 1..={MAX_STOP_LEN} bytes"));
        }
        if let Some(schema) = &self.schema
            && !schema.is_object()
        {
            return invalid("schema", "must be a JSON object (a JSON schema)".into());
        }
        Ok(())
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its answer (or the grammar completed).
    Stop,
    /// The token budget ran out.
    Length,
    /// The request was cancelled.
    Cancelled,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV cache was reused from an earlier request.
    pub cached_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Time spent reading the prompt, in microseconds (0 when the backend cannot tell).
    pub prompt_us: u64,
    /// Time spent generating, in microseconds (0 when the backend cannot tell).
    pub completion_us: u64,
}

/// One item of a chat stream.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatDelta {
    /// More text of the answer.
    Text(String),
    /// The end: why, and the token counts. Always the last item of a successful stream.
    Done {
        finish_reason: FinishReason,
        usage: Usage,
    },
}

/// The stream of a chat answer.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatDelta>> + Send>>;

/// A whole answer, collected from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// The text.
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// Token counts.
    pub usage: Usage,
}

/// A chat LLM. Implementations are cheap to share (`Arc<dyn ChatModel>`).
#[async_trait::async_trait]
pub trait ChatModel: Send + Sync {
    /// The model's name, for logs and responses.
    fn name(&self) -> &str;

    /// Start answering; text arrives as it is generated.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream>;

    /// Answer and collect the whole text. With a schema, the text is checked to be one JSON
    /// value that validates, else [`Error::SchemaViolation`].
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.complete_observed(request, &mut |_| {}).await
    }

    /// [`ChatModel::complete`], handing each piece of text to `observe` as it arrives.
    async fn complete_observed(
        &self,
        request: ChatRequest,
        observe: &mut (dyn for<'t> FnMut(&'t str) + Send),
    ) -> Result<ChatResponse> {
        let schema = request.schema.clone();
        let mut stream = self.stream(request).await?;
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            match item? {
                ChatDelta::Text(t) => {
                    observe(&t);
                    text.push_str(&t);
                }
                ChatDelta::Done {
                    finish_reason,
                    usage,
                } => {
                    if let (Some(schema), FinishReason::Stop) = (&schema, finish_reason) {
                        validate_against(schema, &text)?;
                    }
                    return Ok(ChatResponse {
                        text,
                        finish_reason,
                        usage,
                    });
                }
            }
        }
        Err(Error::BackendStopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = ChatRequest::new(vec![Message::user("hi")]);
        assert!(ok.validate().is_ok());
        let err = ok.clone().max_tokens(0).validate().unwrap_err().to_string();
        assert!(err.contains("max_tokens"), "{err}");
        let err = ok
            .clone()
            .temperature(f32::NAN)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("temperature"), "{err}");
        let err = ok.clone().stop("").validate().unwrap_err().to_string();
        assert!(err.contains("stop"), "{err}");
        let err = ok
            .clone()
            .schema(serde_json::json!(3))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("schema"), "{err}");
        let err = ChatRequest::new(vec![]).validate().unwrap_err().to_string();
        assert!(err.contains("messages"), "{err}");
    }
}
