//! Agent session records: one row per session, holding its serialised state.
//!
//! The state is opaque here (the agent serialises it; the adapter in `web` turns it back into
//! a session). Writes are upserts, so saving after every transition costs one statement.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Row;

use crate::db::{Database, on_pool};
use crate::error::{Error, Result};

/// Largest serialised state a session may have (8 MiB).
pub const MAX_STATE_BYTES: usize = 8 << 20;
/// Longest session id or tenant name.
pub const MAX_ID_CHARS: usize = 200;
/// Most sessions one listing returns.
pub const MAX_LIST: u32 = 1000;

/// One stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub tenant: String,
    /// The state machine's phase when it was saved (`clarify`, `done`, …).
    pub phase: String,
    /// The serialised state.
    pub state: String,
    /// Milliseconds since the Unix epoch of the first and the latest save.
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// A session in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub id: String,
    pub phase: String,
    pub updated_ms: i64,
}

/// The sessions table.
#[derive(Debug, Clone)]
pub struct SessionRecords {
    db: Database,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn check_name(field: &'static str, value: &str) -> Result<()> {
    let chars = value.chars().count();
    if value.trim().is_empty() || chars > MAX_ID_CHARS {
        return Err(Error::Invalid {
            field,
            reason: format!("must be 1..={MAX_ID_CHARS} characters, not blank (got {chars})"),
        });
    }
    Ok(())
}

const UPSERT: &str = "INSERT INTO sessions (id, tenant, phase, state, created_ms, updated_ms) \
     VALUES ($1, $2, $3, $4, $5, $5) \
     ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, phase = excluded.phase, \
     state = excluded.state, updated_ms = excluded.updated_ms";
const SELECT_ONE: &str =
    "SELECT id, tenant, phase, state, created_ms, updated_ms FROM sessions WHERE id = $1";
const LIST: &str = "SELECT id, phase, updated_ms FROM sessions WHERE tenant = $1 \
     ORDER BY updated_ms DESC, id LIMIT $2";
const DELETE: &str = "DELETE FROM sessions WHERE id = $1";

impl SessionRecords {
    pub fn new(db: Database) -> Self {
        SessionRecords { db }
    }

    /// The database underneath.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Insert the session or replace its stored state (its creation time is kept).
    pub async fn put(&self, id: &str, tenant: &str, phase: &str, state: &str) -> Result<()> {
        check_name("session id", id)?;
        check_name("tenant", tenant)?;
        check_name("phase", phase)?;
        if state.len() > MAX_STATE_BYTES {
            return Err(Error::Invalid {
                field: "session state",
                reason: format!(
                    "{} bytes serialised; at most {MAX_STATE_BYTES}",
                    state.len()
                ),
            });
        }
        let now = now_ms();
        on_pool!(&self.db, |pool| sqlx::query(UPSERT)
            .bind(id)
            .bind(tenant)
            .bind(phase)
            .bind(state)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))
        .map_err(Error::query("saving a session"))
    }

    /// The stored session `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<SessionRecord>> {
        on_pool!(&self.db, |pool| sqlx::query(SELECT_ONE)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|row| {
                row.map(|r| {
                    Ok(SessionRecord {
                        id: r.try_get("id")?,
                        tenant: r.try_get("tenant")?,
                        phase: r.try_get("phase")?,
                        state: r.try_get("state")?,
                        created_ms: r.try_get("created_ms")?,
                        updated_ms: r.try_get("updated_ms")?,
                    })
                })
                .transpose()
            }))
        .map_err(Error::query("loading a session"))
    }

    /// Remove the session; true when it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let affected = on_pool!(&self.db, |pool| sqlx::query(DELETE)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(Error::query("deleting a session"))?;
        Ok(affected > 0)
    }

    /// The tenant's sessions, most recently saved first (at most `limit`, 1..=[`MAX_LIST`]).
    pub async fn list(&self, tenant: &str, limit: u32) -> Result<Vec<SessionSummary>> {
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(Error::Invalid {
                field: "limit",
                reason: format!("{limit} is outside 1..={MAX_LIST}"),
            });
        }
        on_pool!(&self.db, |pool| sqlx::query(LIST)
            .bind(tenant)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| {
                        Ok(SessionSummary {
                            id: r.try_get("id")?,
                            phase: r.try_get("phase")?,
                            updated_ms: r.try_get("updated_ms")?,
                        })
                    })
                    .collect()
            }))
        .map_err(Error::query("listing sessions"))
    }
}
