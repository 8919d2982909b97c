//! Any OpenAI-compatible chat server, through `async-openai`.

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionNamedToolChoice, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestUserMessage, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionToolChoiceOption, ChatCompletionTools, CreateChatCompletionRequest,
    FinishReason as ApiFinish, FunctionName, FunctionObject, ResponseFormat,
    ResponseFormatJsonSchema, StopConfiguration,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

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
    /// How a request's JSON schema reaches the model.
    pub structured: StructuredOutput,
}

/// How structured answers are asked of a hosted model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// Native tool calling: the schema is the parameters of one function the model must call
    /// (`tool_choice` names it); the call's arguments are the answer.
    #[default]
    ToolCall,
    /// `response_format: {"type": "json_schema"}`: the message content is the answer.
    ResponseFormat,
}

/// The function name for a schema: its `title` in `[a-zA-Z0-9_-]`, else `answer`.
fn tool_name(schema: &serde_json::Value) -> String {
    let name: String = schema
        .get("title")
        .and_then(|t| t.as_str())
        .unwrap_or("answer")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "answer".into()
    } else {
        name
    }
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
        let (mut response_format, mut tools, mut tool_choice) = (None, None, None);
        if let Some(schema) = &request.schema {
            let name = tool_name(schema);
            match self.config.structured {
                StructuredOutput::ResponseFormat => {
                    response_format = Some(ResponseFormat::JsonSchema {
                        json_schema: ResponseFormatJsonSchema {
                            description: None,
                            name,
                            schema: prepare_schema(schema),
                            strict: Some(true),
                        },
                    });
                }
                StructuredOutput::ToolCall => {
                    tools = Some(vec![ChatCompletionTools::Function(ChatCompletionTool {
                        function: FunctionObject {
                            name: name.clone(),
                            description: Some(
                                "Give your answer as this function's arguments.".into(),
                            ),
                            parameters: Some(prepare_schema(schema)),
                            strict: Some(true),
                        },
                    })]);
                    tool_choice = Some(ChatCompletionToolChoiceOption::Function(
                        ChatCompletionNamedToolChoice {
                            function: FunctionName { name },
                        },
                    ));
                }
            }
        }
        CreateChatCompletionRequest {
            messages,
            model: self.config.model.clone(),
            max_completion_tokens: Some(request.max_tokens),
            temperature: Some(request.temperature),
            seed: Some(request.seed as i64),
            stop: (!request.stop.is_empty())
                .then(|| StopConfiguration::StringArray(request.stop.clone())),
            response_format,
            tools,
            tool_choice,
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
        let mut api_request = self.build_request(&request);
        // async-openai's `byot` feature (used by the images backend) leaves `stream` as given.
        api_request.stream = Some(true);
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
                    // The answer is the content, or with tool calling the call's arguments.
                    let arguments = choice
                        .delta
                        .tool_calls
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.function.and_then(|f| f.arguments));
                    for text in choice.delta.content.into_iter().chain(arguments) {
                        if !text.is_empty() && tx.send(Ok(ChatDelta::Text(text))).await.is_err() {
                            return;
                        }
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
