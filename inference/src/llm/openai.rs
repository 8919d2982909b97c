//! Any OpenAI-compatible chat server, through `async-openai`.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, FinishReason as ApiFinish,
    ResponseFormat, ResponseFormatJsonSchema, StopConfiguration,
};
use futures::StreamExt;

use super::schema::prepare_schema;
use super::{ChatDelta, ChatModel, ChatRequest, ChatStream, FinishReason, Role, Usage};
use crate::error::{Error, Result};

/// Where the server is and which model to ask for.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// Base URL including the version prefix, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// API key; empty for servers that need none.
    pub api_key: String,
    /// Model name sent with every request.
    pub model: String,
}

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiChatModel {
    client: Client<OpenAIConfig>,
    config: OpenAiConfig,
}

impl OpenAiChatModel {
    /// A client for `config`; nothing is sent until the first request.
    pub fn new(config: OpenAiConfig) -> Self {
        let api = OpenAIConfig::new()
            .with_api_base(config.base_url.trim_end_matches('/'))
            .with_api_key(config.api_key.clone());
        OpenAiChatModel {
            client: Client::with_config(api),
            config,
        }
    }

    fn api_error(&self, detail: impl std::fmt::Display) -> Error {
        Error::Api {
            base_url: self.config.base_url.clone(),
            detail: detail.to_string(),
        }
    }

    // `seed` is deprecated by OpenAI but honoured by llama.cpp's server, vLLM and others.
    #[allow(deprecated)]
    fn build_request(&self, request: &ChatRequest) -> CreateChatCompletionRequest {
        let messages = request
            .messages
            .iter()
            .map(|m| -> ChatCompletionRequestMessage {
                match m.role {
                    Role::System => {
                        ChatCompletionRequestSystemMessage::from(m.content.as_str()).into()
                    }
                    Role::User => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
                    Role::Assistant => {
                        ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
                    }
                }
            })
            .collect();
        let response_format = request
            .schema
            .as_ref()
            .map(|schema| ResponseFormat::JsonSchema {
                json_schema: ResponseFormatJsonSchema {
                    description: None,
                    name: "answer".into(),
                    schema: prepare_schema(schema),
                    strict: Some(true),
                },
            });
        CreateChatCompletionRequest {
            messages,
            model: self.config.model.clone(),
            max_completion_tokens: Some(request.max_tokens),
            temperature: Some(request.temperature),
            seed: Some(request.seed as i64),
            stop: (!request.stop.is_empty())
                .then(|| StopConfiguration::StringArray(request.stop.clone())),
            response_format,
            stream_options: Some(ChatCompletionStreamOptions {
                include_usage: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl ChatModel for OpenAiChatModel {
    fn name(&self) -> &str {
        &self.config.model
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        request.validate()?;
        let api_request = self.build_request(&request);
        let mut upstream = self
            .client
            .chat()
            .create_stream(api_request)
            .await
            .map_err(|e| self.api_error(e))?;
        let this = self.clone();
        let cancel = request.cancel.clone();
        let stream = async_stream_like(move |tx| async move {
            let mut usage = Usage::default();
            let mut finish = FinishReason::Length;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => {
                        finish = FinishReason::Cancelled;
                        break;
                    }
                    next = upstream.next() => next,
                };
                let Some(chunk) = next else { break };
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let _ = tx.send(Err(this.api_error(e))).await;
                        return;
                    }
                };
                if let Some(u) = chunk.usage {
                    usage.prompt_tokens = u.prompt_tokens;
                    usage.completion_tokens = u.completion_tokens;
                    usage.cached_tokens = u
                        .prompt_tokens_details
                        .and_then(|d| d.cached_tokens)
                        .unwrap_or(0);
                }
                for choice in chunk.choices {
                    if let Some(text) = choice.delta.content.filter(|t| !t.is_empty())
                        && tx.send(Ok(ChatDelta::Text(text))).await.is_err()
                    {
                        return;
                    }
                    if let Some(reason) = choice.finish_reason {
                        finish = match reason {
                            ApiFinish::Length => FinishReason::Length,
                            _ => FinishReason::Stop,
                        };
                    }
                }
            }
            let _ = tx
                .send(Ok(ChatDelta::Done {
                    finish_reason: finish,
                    usage,
                }))
                .await;
        });
        Ok(stream)
    }
}

/// Run `produce` as a task feeding a channel, and return the channel as a stream. Dropping the
/// stream closes the channel, which ends the task at its next send.
fn async_stream_like<F, Fut>(produce: F) -> ChatStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ChatDelta>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
