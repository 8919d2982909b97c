//! Helpers for tests that need a real PostgreSQL: a scratch database per test, created on the
//! server named by `ATELIER_TEST_POSTGRES_URL` (default: the local server's `postgres`
//! database, as on the project's machines) and dropped afterwards.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::db::redact;
use crate::error::{Error, Result};

/// The server tests use when `ATELIER_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for one test.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// URL of the scratch database.
    pub url: String,
}

/// The administrative URL tests connect to.
pub fn admin_url() -> String {
    std::env::var("ATELIER_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

impl ScratchDatabase {
    /// Create a fresh, empty database on the test server.
    pub async fn create() -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let name = format!(
            "atelier_test_{}_{}_{}",
            std::process::id(),
            stamp,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn =
            PgConnection::connect(&admin_url)
                .await
                .map_err(|source| Error::Connect {
                    url: redact(&admin_url),
                    source,
                })?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(Error::query("creating a scratch database"))?;
        let _ = conn.close().await;
        let base = match admin_url.rfind('/') {
            Some(slash) if slash > admin_url.find("://").map_or(0, |i| i + 2) => {
                &admin_url[..slash]
            }
            _ => admin_url.as_str(),
        };
        let url = format!("{base}/{name}");
        Ok(ScratchDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// Drop the database (closing whatever still connects to it).
    pub async fn drop_database(self) -> Result<()> {
        let mut conn = PgConnection::connect(&self.admin_url)
            .await
            .map_err(|source| Error::Connect {
                url: redact(&self.admin_url),
                source,
            })?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .map_err(Error::query("dropping a scratch database"))?;
        let _ = conn.close().await;
        Ok(())
    }
}
