//! What can go wrong in the harness.

use std::path::PathBuf;

/// Errors of the evaluation harness.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A suite file is unreadable or invalid; the message names the case and the field.
    #[error("{}: {message}", path.display())]
    Suite { path: PathBuf, message: String },
    /// A results file is unreadable or not a results file.
    #[error("{}: {message}", path.display())]
    Results { path: PathBuf, message: String },
    /// A run could not be set up or recorded.
    #[error("{0}")]
    Run(String),
    /// The agent could not start a case.
    #[error(transparent)]
    Agent(#[from] atelier_agent::Error),
    /// A threshold given on the command line is malformed.
    #[error("threshold `{given}`: {reason}")]
    Threshold { given: String, reason: String },
    /// Writing the report or the results failed.
    #[error("{}: {message}", path.display())]
    Write { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;
