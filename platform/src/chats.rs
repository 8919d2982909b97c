//! Chat records: a chat session of the WebSocket protocol, its tenant and brand, and the brief
//! (agent session) it is working on. The message log stays in the serving process; what a
//! restarted server needs to pick a chat up is here.

use sqlx::Row;

use crate::db::{Database, on_pool};
use crate::error::{Error, Result};
use crate::sessions::{check_name, now_ms};

/// One stored chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    pub id: String,
    pub tenant: String,
    pub brand: Option<String>,
    /// The agent session of the latest brief, if one was sent.
    pub brief_session: Option<String>,
    /// Milliseconds since the Unix epoch of the first and the latest save.
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// The chats table.
#[derive(Debug, Clone)]
pub struct ChatRecords {
    db: Database,
}

const UPSERT: &str = "INSERT INTO chats (id, tenant, brand, brief_session, created_ms, updated_ms) \
     VALUES ($1, $2, $3, $4, $5, $5) \
     ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, brand = excluded.brand, \
     brief_session = excluded.brief_session, updated_ms = excluded.updated_ms";
const SELECT_ONE: &str =
    "SELECT id, tenant, brand, brief_session, created_ms, updated_ms FROM chats WHERE id = $1";
const DELETE: &str = "DELETE FROM chats WHERE id = $1";

impl ChatRecords {
    pub fn new(db: Database) -> Self {
        ChatRecords { db }
    }

    /// Insert the chat or replace its row (its creation time is kept).
    pub async fn put(
        &self,
        id: &str,
        tenant: &str,
        brand: Option<&str>,
        brief_session: Option<&str>,
    ) -> Result<()> {
        check_name("chat id", id)?;
        check_name("tenant", tenant)?;
        if let Some(b) = brand {
            check_name("brand", b)?;
        }
        if let Some(s) = brief_session {
            check_name("brief session id", s)?;
        }
        let now = now_ms();
        on_pool!(&self.db, |pool| sqlx::query(UPSERT)
            .bind(id)
            .bind(tenant)
            .bind(brand)
            .bind(brief_session)
            .bind(now)
            .execute(pool)
            .await
            .map(drop))
        .map_err(Error::query("saving a chat"))
    }

    /// The stored chat `id`, if any.
    pub async fn get(&self, id: &str) -> Result<Option<ChatRecord>> {
        on_pool!(&self.db, |pool| sqlx::query(SELECT_ONE)
            .bind(id)
            .fetch_optional(pool)
            .await
            .and_then(|row| {
                row.map(|r| {
                    Ok(ChatRecord {
                        id: r.try_get("id")?,
                        tenant: r.try_get("tenant")?,
                        brand: r.try_get("brand")?,
                        brief_session: r.try_get("brief_session")?,
                        created_ms: r.try_get("created_ms")?,
                        updated_ms: r.try_get("updated_ms")?,
                    })
                })
                .transpose()
            }))
        .map_err(Error::query("loading a chat"))
    }

    /// Remove the chat; true when it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        let affected = on_pool!(&self.db, |pool| sqlx::query(DELETE)
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(Error::query("deleting a chat"))?;
        Ok(affected > 0)
    }
}
