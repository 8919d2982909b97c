//! OpenAI-compatible endpoints: `GET /v1/models`, `POST /v1/images/generations` (the image model
//! directly) and `POST /v1/chat/completions` (model `atelier-agent`: the whole agent, with its
//! messages and image links as the reply; streaming as server-sent events or not).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use atelier_agent::{AgentEvent, SessionIo};
use atelier_inference::diffusion::ImageRequest;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::error::{ApiError, parse_json};
use super::hub::Hub;
use super::protocol::ImageOut;

type Shared = State<Arc<Hub>>;

/// The model name of the agent.
pub const AGENT_MODEL: &str = "atelier-agent";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where clients reach this server: `server.public_url`, else the request's Host.
fn base_url(hub: &Hub, headers: &HeaderMap) -> String {
    let configured = hub.config.public_url.trim().trim_end_matches('/');
    if !configured.is_empty() {
        return configured.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /v1/models`.
pub async fn models(State(hub): Shared) -> Json<Value> {
    let created = now();
    Json(json!({
        "object": "list",
        "data": [
            {"id": AGENT_MODEL, "object": "model", "created": created, "owned_by": "atelier"},
            {"id": hub.services.generator.name(), "object": "model", "created": created, "owned_by": "atelier"},
        ]
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImagesRequest {
    prompt: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    response_format: Option<String>,
    /// Accepted for compatibility; the model has one quality and one style.
    #[serde(default)]
    #[allow(dead_code)]
    quality: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    style: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// Extensions: sampling controls.
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    steps: Option<u32>,
    #[serde(default)]
    negative_prompt: Option<String>,
}

/// `POST /v1/images/generations`.
pub async fn images(
    State(hub): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if hub.shutdown.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    let req: ImagesRequest = parse_json(&body)?;
    let generator = hub.services.generator.clone();
    if let Some(model) = &req.model
        && model != generator.name()
    {
        return Err(ApiError::invalid(
            "model",
            format!(
                "unknown image model `{model}`; available: {}",
                generator.name()
            ),
        ));
    }
    let b64 = match req.response_format.as_deref() {
        None | Some("url") => false,
        Some("b64_json") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "response_format",
                format!("`{other}` is not one of: url, b64_json"),
            ));
        }
    };
    let limits = generator.limits();
    let config = hub.services.agent.config();
    let mut request = ImageRequest::new(req.prompt.trim());
    request.width = config.width;
    request.height = config.height;
    request.steps = req.steps.unwrap_or(config.steps);
    request.guidance = config.guidance;
    request.seed = req.seed.unwrap_or(0);
    request.negative_prompt = req.negative_prompt.filter(|n| !n.trim().is_empty());
    request.count = req.n.unwrap_or(1);
    if request.count == 0 || request.count > limits.max_count {
        return Err(ApiError::invalid(
            "n",
            format!("{}; must be 1..={}", request.count, limits.max_count),
        ));
    }
    if let Some(size) = &req.size {
        let parsed = size
            .split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
        let Some((w, h)) = parsed else {
            return Err(ApiError::invalid(
                "size",
                format!("`{size}` is not WIDTHxHEIGHT, e.g. {0}x{0}", config.width),
            ));
        };
        (request.width, request.height) = (w, h);
    }
    request.validate(&limits).map_err(|e| match e {
        atelier_inference::Error::InvalidRequest { field, reason } => {
            let field = if field == "width" || field == "height" {
                "size"
            } else {
                field
            };
            ApiError::invalid(field, format!("{field}: {reason}"))
        }
        other => ApiError::invalid("body", other.to_string()),
    })?;
    let cancel = request.cancel.clone();
    // A client that goes away stops the generation.
    let _stop = cancel.clone().drop_guard();
    let timeout = Duration::from_secs(hub.config.request_timeout_seconds);
    let generation = match tokio::time::timeout(timeout, generator.generate(request, None)).await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(ApiError::internal(format!("generation failed: {e}"))),
        Err(_) => {
            cancel.cancel();
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "generation took longer than {} s (server.request_timeout_seconds)",
                    timeout.as_secs()
                ),
            ));
        }
    };
    let base = base_url(&hub, &headers);
    let mut data = Vec::new();
    for generated in &generation.images {
        let stored = hub
            .services
            .images
            .put(&generated.image)
            .await
            .map_err(|e| ApiError::internal(format!("storing the image: {e}")))?;
        let item = if b64 {
            let png = hub
                .services
                .images
                .png(&stored.id)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .unwrap_or_default();
            json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(png), "revised_prompt": req.prompt.trim()})
        } else {
            json!({"url": format!("{base}{}{}", hub.services.artifact_path_prefix, stored.id), "revised_prompt": req.prompt.trim()})
        };
        data.push(item);
    }
    Ok(Json(json!({"created": now(), "data": data})).into_response())
}

#[derive(Debug, Deserialize)]
struct ChatMessageIn {
    role: String,
    #[serde(default)]
    content: Value,
}

impl ChatMessageIn {
    /// The text of the message: a string, or the text parts of a list of parts.
    fn text(&self) -> String {
        match &self.content {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChatRequestIn {
    model: String,
    messages: Vec<ChatMessageIn>,
    #[serde(default)]
    stream: bool,
    /// Extension: the brand to work for.
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// Sampling fields OpenAI clients send that the agent does not use (it samples by its own
/// settings); anything else is refused so a typo is not silently ignored.
const TOLERATED: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "user",
    "seed",
    "stream_options",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
    "store",
];

/// What the agent produced for a chat completion.
enum Piece {
    Delta(String),
    Question(String),
    Final {
        message: String,
        alt_text: String,
        images: Vec<ImageOut>,
        passed: bool,
    },
    Failed(String),
}

/// Check the request; the brief (all user messages) and whether the user has answered a
/// question already (an assistant message is in the conversation).
fn brief_of(hub: &Hub, req: &ChatRequestIn) -> Result<(String, bool), ApiError> {
    if req.model != AGENT_MODEL {
        return Err(ApiError::invalid(
            "model",
            format!(
                "unknown model `{}`; chat completions run `{AGENT_MODEL}`",
                req.model
            ),
        ));
    }
    if let Some(field) = req.other.keys().find(|k| !TOLERATED.contains(&k.as_str())) {
        return Err(ApiError::invalid(field, format!("unknown field `{field}`")));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(ApiError::invalid(
                &format!("messages[{i}].role"),
                format!(
                    "`{}` is not one of: system, developer, user, assistant, tool",
                    m.role
                ),
            ));
        }
    }
    let brief = req
        .messages
        .iter()
        .filter(|m| m.role == "user")
        .map(ChatMessageIn::text)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    if brief.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "needs at least one user message with text",
        ));
    }
    let max = hub.config.max_message_chars;
    let chars = brief.chars().count();
    if chars > max {
        return Err(ApiError::invalid(
            "messages",
            format!("the user messages have {chars} characters; at most {max}"),
        ));
    }
    Ok((brief, req.messages.iter().any(|m| m.role == "assistant")))
}

/// Run the agent on `brief` and hand each piece to `out`; returns when the session ends, the
/// agent asks (the question ends the turn) or `out` refuses more.
async fn drive(
    hub: Arc<Hub>,
    brief: String,
    brand: Option<String>,
    answered: bool,
    base: String,
    out: mpsc::Sender<Piece>,
) {
    let fail = |m: String| Piece::Failed(m);
    let agent = hub.services.agent.clone();
    let mut session = match agent.start(&hub.services.tenant, &brief, brand).await {
        Ok(s) => s,
        Err(e) => {
            let _ = out.send(fail(e.to_string())).await;
            return;
        }
    };
    // The user has seen a question and answered it (or chose not to): do not ask again.
    session.just_go = answered;
    let (mut io, mut events, _inputs) = SessionIo::channel(256);
    let cancel = io.cancel.clone();
    let _stop = cancel.clone().drop_guard();
    let abort = hub.abort.clone();
    let run = tokio::spawn(async move {
        tokio::select! {
            r = agent.run(&mut session, &mut io) => r.map_err(|e| e.to_string()),
            () = abort.cancelled() => Err("the server shut down".into()),
        }
    });
    let url = |id: &str| format!("{base}{}{id}", hub.services.artifact_path_prefix);
    while let Some(event) = events.recv().await {
        let piece = match event {
            AgentEvent::MessageDelta { text } => Piece::Delta(text),
            AgentEvent::Question { text, choices, .. } => {
                cancel.cancel();
                let mut q = text;
                if !choices.is_empty() {
                    q.push_str(&format!("\n\nFor example: {}.", choices.join("; ")));
                }
                Piece::Question(q)
            }
            AgentEvent::Final {
                message,
                alt_text,
                images,
                passed,
                ..
            } => Piece::Final {
                message,
                alt_text,
                images: images
                    .into_iter()
                    .map(|i| ImageOut {
                        url: url(&i.id),
                        id: i.id,
                        width: i.width,
                        height: i.height,
                    })
                    .collect(),
                passed,
            },
            AgentEvent::Error {
                message,
                fatal: true,
            } => Piece::Failed(message),
            _ => continue,
        };
        let end = !matches!(piece, Piece::Delta(_));
        if out.send(piece).await.is_err() || end {
            cancel.cancel();
            break;
        }
    }
    if let Ok(Err(e)) = run.await {
        let _ = out.send(fail(e)).await;
    }
}

fn final_text(message: &str, alt_text: &str, images: &[ImageOut]) -> String {
    let mut text = message.trim().to_string();
    for (i, image) in images.iter().enumerate() {
        text.push_str(&format!("\n\n![{alt_text} ({})]({})", i + 1, image.url));
    }
    text
}

/// `POST /v1/chat/completions` with model `atelier-agent`.
pub async fn chat(
    State(hub): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if hub.shutdown.is_cancelled() {
        return Err(ApiError::shutting_down());
    }
    let req: ChatRequestIn = parse_json(&body)?;
    let (brief, answered) = brief_of(&hub, &req)?;
    let base = base_url(&hub, &headers);
    let (tx, mut rx) = mpsc::channel(64);
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = now();
    let driver = tokio::spawn(drive(
        hub.clone(),
        brief,
        req.brand.clone(),
        answered,
        base,
        tx,
    ));
    if req.stream {
        let chunk = move |delta: Value, finish: Option<&str>, extra: Option<Value>| {
            let mut c = json!({
                "id": id, "object": "chat.completion.chunk", "created": created,
                "model": AGENT_MODEL,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            });
            if let (Some(extra), Some(obj)) = (extra, c.as_object_mut()) {
                obj.insert("atelier".into(), extra);
            }
            Event::default().data(c.to_string())
        };
        let (sse_tx, sse_rx) = mpsc::channel::<Result<Event, Infallible>>(64);
        tokio::spawn(async move {
            let send = |e: Event| sse_tx.send(Ok(e));
            if send(chunk(
                json!({"role": "assistant", "content": ""}),
                None,
                None,
            ))
            .await
            .is_err()
            {
                driver.abort();
                return;
            }
            let mut streamed = String::new();
            while let Some(piece) = rx.recv().await {
                let (content, finish, extra) = match piece {
                    Piece::Delta(t) => {
                        streamed.push_str(&t);
                        (t, None, None)
                    }
                    Piece::Question(q) => (q, Some("stop"), Some(json!({"question": true}))),
                    Piece::Final {
                        message,
                        alt_text,
                        images,
                        passed,
                    } => {
                        let full = final_text(&message, &alt_text, &images);
                        let rest = full
                            .strip_prefix(streamed.as_str())
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("\n\n{full}"));
                        (
                            rest,
                            Some("stop"),
                            Some(json!({"images": images, "passed": passed})),
                        )
                    }
                    Piece::Failed(m) => (
                        format!("\n\n[error] {m}"),
                        Some("stop"),
                        Some(json!({"error": m})),
                    ),
                };
                let end = finish.is_some();
                if send(chunk(json!({"content": content}), finish, extra))
                    .await
                    .is_err()
                {
                    break;
                }
                if end {
                    let _ = send(Event::default().data("[DONE]")).await;
                    break;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(sse_rx);
        return Ok(Sse::new(stream)
            .keep_alive(axum::response::sse::KeepAlive::default())
            .into_response());
    }
    let mut streamed = String::new();
    while let Some(piece) = rx.recv().await {
        let (content, extra) = match piece {
            Piece::Delta(t) => {
                streamed.push_str(&t);
                continue;
            }
            Piece::Question(q) => (q, json!({"question": true})),
            Piece::Final {
                message,
                alt_text,
                images,
                passed,
            } => (
                final_text(&message, &alt_text, &images),
                json!({"images": images, "passed": passed}),
            ),
            Piece::Failed(m) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "agent_failed",
                    format!("the agent failed: {m}"),
                ));
            }
        };
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": AGENT_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "atelier": extra,
        }))
        .into_response());
    }
    Err(ApiError::internal("the agent ended without an answer"))
}
