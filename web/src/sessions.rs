//! The agent's [`SessionStore`] on the platform's metadata database (SQLite on one machine,
//! PostgreSQL past it): every transition of a session is saved there, so a session survives a
//! restart of the process (`atelier brief --resume ID`).

use async_trait::async_trait;
use atelier_agent::{Session, SessionStore};
use atelier_platform::{Database, SessionRecords};

use crate::server::hub::phase_name;
use crate::settings::Settings;

/// Sessions as rows of the `sessions` table.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    records: SessionRecords,
}

impl DbSessionStore {
    pub fn new(db: Database) -> Self {
        DbSessionStore {
            records: SessionRecords::new(db),
        }
    }

    /// Connect to the database the settings name (migrating its schema).
    pub async fn open(settings: &Settings) -> anyhow::Result<Self> {
        let db = Database::connect(&settings.database_config()).await?;
        Ok(Self::new(db))
    }

    /// The rows underneath (listings, tests).
    pub fn records(&self) -> &SessionRecords {
        &self.records
    }
}

fn store_error(e: impl std::fmt::Display) -> atelier_agent::Error {
    atelier_agent::Error::Store(e.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn save(&self, session: &Session) -> atelier_agent::Result<()> {
        let state = serde_json::to_string(session).map_err(store_error)?;
        self.records
            .put(
                &session.id,
                &session.tenant,
                phase_name(session.phase),
                &state,
            )
            .await
            .map_err(store_error)
    }

    async fn load(&self, id: &str) -> atelier_agent::Result<Option<Session>> {
        let Some(record) = self.records.get(id).await.map_err(store_error)? else {
            return Ok(None);
        };
        serde_json::from_str(&record.state)
            .map(Some)
            .map_err(|e| store_error(format!("stored session {id} does not parse: {e}")))
    }

    async fn delete(&self, id: &str) -> atelier_agent::Result<()> {
        self.records.delete(id).await.map(drop).map_err(store_error)
    }
}
