//! The production pipeline's shared state. This crate starts with the metadata database: an
//! SQLite file on one machine, PostgreSQL past it (both through sqlx, each with its own
//! migrations, applied on connect), and the agent session records kept in it.
//!
//! Chat records (a WebSocket chat's tenant, brand and current brief) live beside them, so a
//! restarted server can pick a chat up.
//!
//! It knows nothing of the agent's types: a session is stored as its serialised state with the
//! few columns a query needs (tenant, phase, times). The composition root (`web`) adapts it to
//! the agent's `SessionStore`.

pub mod chats;
pub mod db;
pub mod error;
pub mod sessions;
pub mod testing;

pub use chats::{ChatRecord, ChatRecords};
pub use db::{Database, DatabaseConfig};
pub use error::{Error, Result};
pub use sessions::{MAX_STATE_BYTES, SessionRecord, SessionRecords, SessionSummary};
