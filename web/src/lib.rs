//! Transports and the composition root of Atelier: the command line, settings, and the HTTP
//! server (WebSocket chat protocol, chat UI, OpenAI-compatible endpoints).
//!
//! The `atelier` binary is a thin shell over [`commands::run`]; tests start the server through
//! [`server::launch`] on port 0.

pub mod cli;
pub mod commands;
pub mod server;
pub mod sessions;
pub mod settings;
