//! Errors of the platform crate.

/// What can go wrong with the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one this crate can use.
    #[error("database url `{url}`: {reason}")]
    Url { url: String, reason: String },
    /// A value given to the store is outside what it accepts.
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The database could not be reached or opened.
    #[error("connecting to `{url}`: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("migrating the {backend} schema: {source}")]
    Migrate {
        backend: &'static str,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("{action}: {source}")]
    Query {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A directory for the database file could not be made.
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A closure that wraps an sqlx error of `action`.
    pub(crate) fn query(action: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Query { action, source }
    }
}
