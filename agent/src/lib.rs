//! The agent loop: a session state machine that reads a brief, asks when it must, retrieves the
//! brand's guidelines, plans, generates, critiques and refines until the work passes or the
//! budget is spent, and reports every step as an [`AgentEvent`].
//!
//! - [`agent`]: [`Agent`], the transitions, the tool policy;
//! - [`session`]: the serialisable [`Session`] and the [`SessionStore`] trait;
//! - [`event`]: [`AgentEvent`] (out) and [`UserInput`] (in);
//! - [`decide`]: the structured decisions and their JSON schemas;
//! - [`prompts`]: the templates of `prompts/agent/`;
//! - [`present`]: the final message, from the model's description and the critique's outcome;
//! - [`images`]: where images go ([`ImageStore`]);
//! - [`testing`]: a scripted [`atelier_inference::llm::ChatModel`] for control-flow tests.

pub mod agent;
pub mod config;
pub mod decide;
pub mod error;
pub mod event;
pub mod images;
pub mod present;
pub mod prompts;
pub mod session;
pub mod testing;

pub use agent::{Agent, Ask, SessionIo, Tool, Toolbox, allowed_tools, needs_asking};
pub use config::AgentConfig;
pub use error::{Error, Result};
pub use event::{AgentEvent, ImageRef, UserInput};
pub use images::{DirImageStore, ImageStore, is_image_id};
pub use session::{MemorySessionStore, Phase, Session, SessionStore};
