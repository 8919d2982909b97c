//! Errors of the tools crate.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong loading a brand kit, storing or retrieving its guidelines.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A brand kit file is malformed. `field` is the TOML path (`palette[2].hex`) when known.
    #[error("{}:{line}:{column}: {}{message}", file.display(), field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    BrandKit {
        file: PathBuf,
        line: usize,
        column: usize,
        field: Option<String>,
        message: String,
    },

    /// A brand kit references a file that cannot be read, or its folder is unreadable.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A request to a tool or the store is invalid; `field` names the argument.
    #[error("invalid `{field}`: {reason}")]
    InvalidRequest { field: &'static str, reason: String },

    /// The vector store failed (embedded engine or server).
    #[error("brand store ({backend}) failed to {action}: {detail}")]
    Store {
        backend: &'static str,
        action: &'static str,
        detail: String,
    },

    /// The embedder failed.
    #[error(transparent)]
    Inference(#[from] atelier_inference::Error),
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
