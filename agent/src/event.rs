//! What a session tells its transports ([`AgentEvent`]) and what they tell it ([`UserInput`]).
//!
//! Every transport (WebSocket, Slack, the terminal, the eval harness) consumes the same typed
//! stream. Serialised, each event is one JSON object with a `type` field.

use atelier_tools::critique::{Check, NotMeasured};
use serde::{Deserialize, Serialize};

use crate::session::Phase;

/// A stored image, by content address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// sha256 of the PNG bytes.
    pub id: String,
    /// Where a client can get it (a path or URL, depending on the store).
    pub uri: String,
    pub width: u32,
    pub height: u32,
}

/// One event of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The session moved to another phase.
    Status { phase: Phase, detail: String },
    /// Text for the user (a note, a plan summary).
    Message { text: String },
    /// The next piece of the final message while the model writes it; `final` repeats it whole.
    MessageDelta { text: String },
    /// A clarifying question; answer with [`UserInput::Answer`] or [`UserInput::JustGo`].
    Question {
        id: u32,
        text: String,
        choices: Vec<String>,
    },
    /// A tool started.
    ToolCall {
        id: u32,
        tool: String,
        args: serde_json::Value,
    },
    /// A tool finished; `ok: false` carries the error as `summary`.
    ToolResult {
        id: u32,
        tool: String,
        ok: bool,
        summary: String,
        /// The image the tool made (`upscale`, `resize`, `compose_layout`), so a derived image
        /// can be traced to the one it came from (the call's `image` argument).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image: Option<ImageRef>,
    },
    /// A generation step finished; `preview` is a small PNG as base64 when the model has one.
    Progress {
        step: u32,
        steps: u32,
        image: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preview_png_base64: Option<String>,
    },
    /// A finished image with its score.
    Image {
        image: ImageRef,
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
        checks: Vec<Check>,
        /// Checks that could not run, each with the reason (alignment without CLIP weights).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        not_measured: Vec<NotMeasured>,
    },
    /// The session's result.
    Final {
        message: String,
        alt_text: String,
        images: Vec<ImageRef>,
        passed: bool,
        assumptions: Vec<String>,
        /// Guideline passages the plan applied, as `document § section`.
        citations: Vec<String>,
        iterations: u32,
        /// Why refining stopped before an image passed every check, when it did.
        stopped: Option<String>,
    },
    /// Something went wrong; `fatal` ends the session.
    Error { message: String, fatal: bool },
    /// The session was cancelled.
    Cancelled,
}

impl AgentEvent {
    /// The `type` tag of the event.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentEvent::Status { .. } => "status",
            AgentEvent::Message { .. } => "message",
            AgentEvent::MessageDelta { .. } => "message_delta",
            AgentEvent::Question { .. } => "question",
            AgentEvent::ToolCall { .. } => "tool_call",
            AgentEvent::ToolResult { .. } => "tool_result",
            AgentEvent::Progress { .. } => "progress",
            AgentEvent::Image { .. } => "image",
            AgentEvent::Critique { .. } => "critique",
            AgentEvent::Final { .. } => "final",
            AgentEvent::Error { .. } => "error",
            AgentEvent::Cancelled => "cancelled",
        }
    }

    /// True for the events after which a session sends nothing more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            AgentEvent::Final { .. }
                | AgentEvent::Cancelled
                | AgentEvent::Error { fatal: true, .. }
        )
    }
}

/// What the user sends to a running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserInput {
    /// The answer to the open question.
    Answer { text: String },
    /// Stop asking; go on with stated assumptions.
    JustGo,
    /// Stop the session.
    Cancel,
}
