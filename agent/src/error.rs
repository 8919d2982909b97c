//! Errors of the agent crate.

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The session's input is invalid; `field` names it.
    #[error("invalid `{field}`: {reason}")]
    InvalidRequest { field: &'static str, reason: String },

    /// The model's answer could not be used even after the bounded retries.
    #[error("the model gave no usable answer to `{decision}` after {attempts} attempts: {detail}")]
    Decision {
        decision: &'static str,
        attempts: u32,
        detail: String,
    },

    /// A prompt template failed to render (a bug in `prompts/agent`).
    #[error("prompt template `{name}`: {detail}")]
    Template { name: &'static str, detail: String },

    /// The session was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The process is stopping; the session stays stored as of its last transition.
    #[error("interrupted: the process is stopping; the session can be resumed")]
    Interrupted,

    /// The session store failed.
    #[error("session store: {0}")]
    Store(String),

    /// Storing an image failed.
    #[error("image store: {0}")]
    Images(String),

    /// A model failed.
    #[error(transparent)]
    Inference(#[from] atelier_inference::Error),

    /// A tool failed.
    #[error(transparent)]
    Tool(#[from] atelier_tools::Error),
}
