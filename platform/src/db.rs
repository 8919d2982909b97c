//! Connecting to the metadata database and migrating its schema.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{Error, Result};

/// Most connections a pool may hold.
pub const MAX_CONNECTIONS: u32 = 1000;

/// Where the database is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (a file, created when missing) or `postgres://USER:PASSWORD@HOST/DB`.
    pub url: String,
    /// Connections in the pool (1..=[`MAX_CONNECTIONS`]).
    pub max_connections: u32,
    /// How long to wait for a connection before giving up.
    pub connect_timeout: Duration,
}

impl DatabaseConfig {
    /// A config for `url` with 8 connections and a 10-second timeout.
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseConfig {
            url: url.into(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Run `$body` with `$pool` bound to whichever engine's pool `$db` holds. The statements are
/// written once with `$N` placeholders, which both PostgreSQL and sqlx's SQLite driver bind by
/// number; the body is type-checked once per engine.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => $body,
            $crate::db::Database::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A pool on one of the two engines, with its schema migrated.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Connect and bring the schema up to date (the migrations under `platform/migrations`,
    /// embedded in the binary; PostgreSQL serialises concurrent migrators with a lock).
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        if !(1..=MAX_CONNECTIONS).contains(&config.max_connections) {
            return Err(Error::Invalid {
                field: "max_connections",
                reason: format!(
                    "{} is outside 1..={MAX_CONNECTIONS}",
                    config.max_connections
                ),
            });
        }
        let url = config.url.trim();
        let shown = redact(url);
        let bad_url = |reason: String| Error::Url {
            url: shown.clone(),
            reason,
        };
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad_url(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true);
            let file = options.get_filename();
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty())
                && file.as_os_str() != ":memory:"
            {
                std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                    action: format!("creating {}", parent.display()),
                    source,
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.connect_timeout)
                .connect_with(options)
                .await
                .map_err(|source| Error::Connect {
                    url: shown.clone(),
                    source,
                })?;
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|source| Error::Migrate {
                    backend: "sqlite",
                    source,
                })?;
            tracing::debug!(url = %shown, "metadata database ready (sqlite)");
            Ok(Database::Sqlite(pool))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad_url(e.to_string()))?;
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.connect_timeout)
                .connect_with(options)
                .await
                .map_err(|source| Error::Connect {
                    url: shown.clone(),
                    source,
                })?;
            sqlx::migrate!("migrations/postgres")
                .run(&pool)
                .await
                .map_err(|source| Error::Migrate {
                    backend: "postgres",
                    source,
                })?;
            tracing::debug!(url = %shown, "metadata database ready (postgres)");
            Ok(Database::Postgres(pool))
        } else {
            Err(bad_url(
                "must start with `sqlite://` (a file on this machine) or `postgres://` (a server)"
                    .into(),
            ))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Close every connection (waits for those in use).
    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://atelier:s3cret@db.internal:5432/atelier"),
            "postgres://atelier:***@db.internal:5432/atelier"
        );
        assert_eq!(
            redact("postgres://atelier@localhost/atelier"),
            "postgres://atelier@localhost/atelier"
        );
        assert_eq!(
            redact("sqlite:///var/lib/atelier/atelier.db"),
            "sqlite:///var/lib/atelier/atelier.db"
        );
        assert_eq!(
            redact("postgresql://u:p@h/db?sslmode=require"),
            "postgresql://u:***@h/db?sslmode=require"
        );
    }
}
