//! The WebSocket chat protocol, version 1: what clients send ([`ClientMessage`]) and what the
//! server sends ([`ServerMessage`]). `docs/protocol.md` describes it for people and
//! `docs/protocol.schema.json` (generated from these types, checked by a test) for programs.

use atelier_agent::AgentEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The protocol version this server speaks.
pub const VERSION: u32 = 1;

/// A message from the client. Every message is one JSON object in one text frame; `v` may be
/// given and must then be 1.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// What the user typed. With no run going it starts one with this brief; while a question
    /// is open it answers the question.
    Message {
        text: String,
        /// The brand to work for (a brand of the tenant; see `GET /v1/brands`). Kept for the
        /// session's later briefs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        brand: Option<String>,
    },
    /// The answer to the open question (a quick reply or typed text).
    Answer {
        text: String,
        /// The question answered; when given it must be the open one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<u32>,
    },
    /// Stop asking: go on with stated assumptions.
    Skip {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<u32>,
    },
    /// Pick one of the session's images as the chosen variant.
    Choose { image_id: String },
    /// Stop the running brief.
    Cancel,
    /// Keep the connection alive; answered by `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
}

/// A message from the server: the protocol version, the session sequence number, and the body.
///
/// Session messages (everything but `welcome`, `pong` and errors about the client's own
/// message) are numbered 1, 2, 3 … per session and kept for replay: a client that connects
/// with `?after=N` first gets every kept message with `seq > N`. Connection messages repeat
/// the sequence number of the last session message sent before them and are not replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerMessage {
    pub v: u32,
    pub seq: u64,
    #[serde(flatten)]
    pub body: ServerBody,
}

/// Where a session stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionState {
    pub session_id: String,
    /// `idle` (waiting for a brief), the agent's phase, or how the last brief ended (`done`,
    /// `failed`, `cancelled`).
    pub phase: String,
    pub detail: String,
    /// A brief is being worked on.
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    /// The question waiting for an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<QuestionOut>,
    /// The last session sequence number.
    pub last_seq: u64,
}

/// A clarifying question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QuestionOut {
    pub id: u32,
    pub text: String,
    /// Quick replies; any typed answer is fine too.
    pub choices: Vec<String>,
}

/// A stored image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageOut {
    /// Content hash (sha256 of the PNG).
    pub id: String,
    /// `/v1/artifacts/{id}`.
    pub url: String,
    pub width: u32,
    pub height: u32,
}

/// One critique check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckOut {
    pub name: String,
    pub passed: bool,
    pub score: f32,
    pub detail: String,
}

/// A check that could not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NotMeasuredOut {
    pub name: String,
    pub reason: String,
}

/// How a tool call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Started,
    Ok,
    Failed,
}

/// Why something failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    BadJson,
    /// A field is missing, unknown or of the wrong type, or `type` is unknown.
    InvalidMessage,
    /// `v` is not a version this server speaks.
    UnsupportedVersion,
    /// The frame is larger than `server.max_frame_bytes`.
    FrameTooLarge,
    /// The text is longer than `server.max_message_chars`.
    MessageTooLong,
    /// More than `server.messages_per_second` messages; wait and send again.
    RateLimited,
    /// The brief or the brand was refused (the message says which field and why).
    InvalidRequest,
    /// A brief is running and no question is open; wait for it or cancel it.
    Busy,
    /// There is no open question (or `question_id` is not the open one).
    NoQuestion,
    /// Nothing is running to cancel.
    NotRunning,
    /// `image_id` is not an image of this session.
    UnknownImage,
    /// Messages after `after` are no longer kept; the session state follows.
    ReplayGap,
    /// The agent failed; `fatal` ends the brief.
    AgentFailed,
    /// No message for `server.idle_timeout_seconds`; the connection closes.
    IdleTimeout,
    /// The server is shutting down; reconnect later.
    ShuttingDown,
}

/// The body of a server message, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerBody {
    /// First message of every connection (connection message).
    Welcome {
        protocol: u32,
        /// Messages after this sequence number follow: the `after` the client gave, or 0. It is
        /// 0 also when the client's `after` lies beyond the session's log — the session was
        /// restored by a restarted server and numbers its messages afresh; the client then
        /// continues from `replay_from`.
        replay_from: u64,
        state: SessionState,
        limits: ClientLimits,
    },
    /// The session's state changed.
    State { state: SessionState },
    /// What the user said (kept so a reconnecting client can redraw the conversation).
    User { text: String },
    /// The next piece of the assistant's final message while it is written.
    Delta { text: String },
    /// A note from the assistant (the plan, a change of course).
    Message { text: String },
    /// A clarifying question.
    Question { question: QuestionOut },
    /// A tool call started or ended.
    Tool {
        call_id: u32,
        tool: String,
        status: ToolStatus,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        summary: String,
    },
    /// A generation step finished; `preview` is a small PNG `data:` URL when the model has one.
    Progress {
        image: u32,
        step: u32,
        steps: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview: Option<String>,
    },
    /// A finished image with its score.
    Image {
        image: ImageOut,
        iteration: u32,
        seed: u64,
        prompt: String,
        score: f32,
        passed: bool,
    },
    /// The checks of one image.
    Critique {
        image_id: String,
        passed: bool,
        score: f32,
        checks: Vec<CheckOut>,
        /// Checks that could not run and why (alignment without CLIP weights).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_measured: Vec<NotMeasuredOut>,
    },
    /// The user chose an image.
    Chosen { image_id: String },
    /// The brief's result.
    Final {
        message: String,
        alt_text: String,
        images: Vec<ImageOut>,
        passed: bool,
        assumptions: Vec<String>,
        citations: Vec<String>,
        iterations: u32,
        /// Why refining stopped before an image passed every check (a budget spent, a round
        /// that did not improve, generation failing); absent when it did not stop early.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stopped: Option<String>,
    },
    /// Something failed. `fatal: true` ended the running brief; the connection stays usable
    /// unless the server closes it right after.
    Error {
        code: ErrorCode,
        message: String,
        fatal: bool,
    },
    /// The answer to `ping` (connection message).
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<String>,
    },
}

/// The limits a client must respect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClientLimits {
    pub max_frame_bytes: usize,
    pub max_message_chars: usize,
    pub messages_per_second: u32,
    pub idle_timeout_seconds: u64,
}

impl ServerBody {
    /// The protocol body of an agent event; `None` for events the protocol does not carry
    /// (status changes become [`ServerBody::State`] in the hub, which knows the whole state).
    pub fn from_agent(event: AgentEvent, artifact_url: &dyn Fn(&str) -> String) -> Option<Self> {
        let image_out = |i: atelier_agent::ImageRef| ImageOut {
            url: artifact_url(&i.id),
            id: i.id,
            width: i.width,
            height: i.height,
        };
        Some(match event {
            AgentEvent::Status { .. } | AgentEvent::Cancelled => return None,
            AgentEvent::Message { text } => ServerBody::Message { text },
            AgentEvent::MessageDelta { text } => ServerBody::Delta { text },
            AgentEvent::Question { id, text, choices } => ServerBody::Question {
                question: QuestionOut { id, text, choices },
            },
            AgentEvent::ToolCall { id, tool, .. } => ServerBody::Tool {
                call_id: id,
                tool,
                status: ToolStatus::Started,
                summary: String::new(),
            },
            AgentEvent::ToolResult {
                id,
                tool,
                ok,
                summary,
                ..
            } => ServerBody::Tool {
                call_id: id,
                tool,
                status: if ok {
                    ToolStatus::Ok
                } else {
                    ToolStatus::Failed
                },
                summary,
            },
            AgentEvent::Progress {
                step,
                steps,
                image,
                preview_png_base64,
            } => ServerBody::Progress {
                image,
                step,
                steps,
                preview: preview_png_base64.map(|b| format!("data:image/png;base64,{b}")),
            },
            AgentEvent::Image {
                image,
                iteration,
                seed,
                prompt,
                score,
                passed,
            } => ServerBody::Image {
                image: image_out(image),
                iteration,
                seed,
                prompt,
                score,
                passed,
            },
            AgentEvent::Critique {
                image_id,
                passed,
                score,
                checks,
                not_measured,
            } => ServerBody::Critique {
                image_id,
                passed,
                score,
                checks: checks
                    .into_iter()
                    .map(|c| CheckOut {
                        name: c.name,
                        passed: c.passed,
                        score: c.score,
                        detail: c.detail,
                    })
                    .collect(),
                not_measured: not_measured
                    .into_iter()
                    .map(|m| NotMeasuredOut {
                        name: m.name,
                        reason: m.reason,
                    })
                    .collect(),
            },
            AgentEvent::Final {
                message,
                alt_text,
                images,
                passed,
                assumptions,
                citations,
                iterations,
                stopped,
            } => ServerBody::Final {
                message,
                alt_text,
                images: images.into_iter().map(image_out).collect(),
                passed,
                assumptions,
                citations,
                iterations,
                stopped,
            },
            AgentEvent::Error { message, fatal } => ServerBody::Error {
                code: ErrorCode::AgentFailed,
                message,
                fatal,
            },
        })
    }
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// Parse one text frame: a JSON object, `v` absent or 1, a known `type` with valid fields.
pub fn parse_client(text: &str) -> Result<ClientMessage, Refusal> {
    let refuse = |code, message: String| Refusal { code, message };
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        refuse(
            ErrorCode::BadJson,
            format!("the frame is not valid JSON: {e}"),
        )
    })?;
    let Some(object) = value.as_object_mut() else {
        return Err(refuse(
            ErrorCode::BadJson,
            "the frame must be a JSON object with a `type` field".into(),
        ));
    };
    if let Some(v) = object.remove("v")
        && v.as_u64() != Some(u64::from(VERSION))
    {
        return Err(refuse(
            ErrorCode::UnsupportedVersion,
            format!("`v` is {v}; this server speaks protocol version {VERSION}"),
        ));
    }
    match object.get("type").and_then(|t| t.as_str()) {
        None => {
            return Err(refuse(
                ErrorCode::InvalidMessage,
                "`type` is missing; one of: message, answer, skip, choose, cancel, ping".into(),
            ));
        }
        Some("message" | "answer" | "skip" | "choose" | "cancel" | "ping") => {}
        Some(other) => {
            return Err(refuse(
                ErrorCode::InvalidMessage,
                format!(
                    "`type` {other:?} is unknown; one of: message, answer, skip, choose, cancel, ping"
                ),
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| refuse(ErrorCode::InvalidMessage, format!("invalid message: {e}")))
}

/// The JSON Schema of both directions, as written to `docs/protocol.schema.json`: one document
/// whose `$defs` hold `ClientMessage` (what a client sends) and `ServerMessage` (what it
/// receives); a message is valid when it matches the one for its direction.
pub fn schema() -> serde_json::Value {
    let mut generator = schemars::SchemaGenerator::default();
    let client = generator.subschema_for::<ClientMessage>();
    let server = generator.subschema_for::<ServerMessage>();
    let defs = generator.take_definitions(true);
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Atelier WebSocket chat protocol",
        "description": format!("Version {VERSION}. Client frames match $defs/ClientMessage, server frames $defs/ServerMessage; see docs/protocol.md."),
        "oneOf": [client, server],
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(
            parse_client(r#"{"type":"message","text":"a banner","v":1}"#),
            Ok(ClientMessage::Message {
                text: "a banner".into(),
                brand: None
            })
        );
        assert_eq!(
            parse_client(r#"{"type":"cancel"}"#),
            Ok(ClientMessage::Cancel)
        );
        let code = |t: &str| parse_client(t).err().map(|r| r.code);
        assert_eq!(code("not json"), Some(ErrorCode::BadJson));
        assert_eq!(code("[1]"), Some(ErrorCode::BadJson));
        assert_eq!(code(r#"{"text":"x"}"#), Some(ErrorCode::InvalidMessage));
        assert_eq!(code(r#"{"type":"dance"}"#), Some(ErrorCode::InvalidMessage));
        assert_eq!(
            code(r#"{"type":"message","text":"x","v":2}"#),
            Some(ErrorCode::UnsupportedVersion)
        );
        let err = parse_client(r#"{"type":"message","txt":"x"}"#).err();
        let message = err.map(|r| r.message).unwrap_or_default();
        assert!(message.contains("txt"), "{message}");
        assert_eq!(
            code(r#"{"type":"answer","text":5}"#),
            Some(ErrorCode::InvalidMessage)
        );
    }

    #[test]
    fn the_checked_in_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.schema.json");
        let current = serde_json::to_string_pretty(&schema()).unwrap_or_default() + "\n";
        if std::env::var_os("UPDATE_PROTOCOL_SCHEMA").is_some() {
            std::fs::write(&path, &current).unwrap_or_else(|e| unreachable!("{e}"));
        }
        let stored = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            stored == current,
            "docs/protocol.schema.json is out of date: run `UPDATE_PROTOCOL_SCHEMA=1 cargo test --workspace -- the_checked_in_schema_is_current`"
        );
    }

    #[test]
    fn server_messages_are_flat_objects_with_version_sequence_and_type() {
        let m = ServerMessage {
            v: VERSION,
            seq: 7,
            body: ServerBody::Delta { text: "Hi".into() },
        };
        let json = serde_json::to_value(&m).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"v":1,"seq":7,"type":"delta","text":"Hi"})
        );
        // And it validates against the published schema, as does a client message.
        let schema = schema();
        let server = serde_json::json!({"$ref": "#/$defs/ServerMessage", "$defs": schema["$defs"]});
        let client = serde_json::json!({"$ref": "#/$defs/ClientMessage", "$defs": schema["$defs"]});
        let valid = |s: &serde_json::Value, v: &serde_json::Value| {
            jsonschema::validator_for(s)
                .map(|val| val.is_valid(v))
                .unwrap_or(false)
        };
        assert!(valid(&server, &json));
        assert!(valid(
            &client,
            &serde_json::json!({"type": "answer", "text": "a cup", "question_id": 1})
        ));
        assert!(!valid(&client, &serde_json::json!({"type": "answer"})));
        assert!(!valid(
            &server,
            &serde_json::json!({"v": 1, "type": "delta", "text": "x"})
        ));
    }
}
