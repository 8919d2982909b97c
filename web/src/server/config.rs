//! `[server]`: where the server listens and every limit it enforces.

use serde::{Deserialize, Serialize};

/// `[server]` settings. Every limit is explicit; `atelier.example.toml` documents each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where `atelier serve` listens (HOST:PORT); `--addr` overrides it.
    pub addr: String,
    /// The URL clients reach the server at, for absolute links in OpenAI-compatible answers;
    /// empty: taken from each request's `Host` header.
    pub public_url: String,
    /// The image model the server generates with (`atelier models list`).
    pub image_model: String,
    /// Largest HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket frame a client may send, in bytes.
    pub max_frame_bytes: usize,
    /// Longest user message or answer, in characters.
    pub max_message_chars: usize,
    /// Messages a connection may send per second (sustained) …
    pub messages_per_second: u32,
    /// … and at once after a quiet spell.
    pub message_burst: u32,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_seconds: u64,
    /// Open WebSocket connections at most; more get 429 with Retry-After.
    pub max_connections: usize,
    /// Sessions held at most; more get 429 with Retry-After.
    pub max_sessions: usize,
    /// Model calls (LLM decisions, image generations) at once, over all sessions and
    /// endpoints; later ones wait. A session waiting for its user holds none.
    pub max_running: usize,
    /// A session with no connection and nothing running is forgotten after this long.
    pub session_ttl_seconds: u64,
    /// Bytes of past messages kept per session for replay after a reconnect.
    pub replay_bytes: usize,
    /// On shutdown, how long running briefs get to finish before they are cancelled.
    pub shutdown_grace_seconds: u64,
    /// Longest a chat completion or image generation request may run.
    pub request_timeout_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".into(),
            public_url: String::new(),
            image_model: "atelier-tiny".into(),
            max_body_bytes: 64 * 1024,
            max_frame_bytes: 16 * 1024,
            max_message_chars: 4000,
            messages_per_second: 5,
            message_burst: 10,
            idle_timeout_seconds: 600,
            max_connections: 12_000,
            max_sessions: 12_000,
            max_running: 2,
            session_ttl_seconds: 3600,
            replay_bytes: 2 * 1024 * 1024,
            shutdown_grace_seconds: 30,
            request_timeout_seconds: 600,
        }
    }
}

impl ServerConfig {
    /// Check every value; the error names the key and what is allowed.
    pub fn validate(&self) -> Result<(), (&'static str, String, String)> {
        fn range(
            key: &'static str,
            value: u64,
            lo: u64,
            hi: u64,
        ) -> Result<(), (&'static str, String, String)> {
            if value < lo || value > hi {
                return Err((key, value.to_string(), format!("must be in {lo}..={hi}")));
            }
            Ok(())
        }
        let n = |v: usize| v as u64;
        if self.addr.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "server.addr",
                format!("{:?}", self.addr),
                "must be IP:PORT, e.g. 127.0.0.1:8080".into(),
            ));
        }
        let url = self.public_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err((
                "server.public_url",
                format!("{url:?}"),
                "must be empty or an http:// or https:// URL".into(),
            ));
        }
        range(
            "server.max_body_bytes",
            n(self.max_body_bytes),
            1024,
            16 << 20,
        )?;
        range(
            "server.max_frame_bytes",
            n(self.max_frame_bytes),
            256,
            1 << 20,
        )?;
        range(
            "server.max_message_chars",
            n(self.max_message_chars),
            1,
            4000,
        )?;
        range(
            "server.messages_per_second",
            u64::from(self.messages_per_second),
            1,
            1000,
        )?;
        range(
            "server.message_burst",
            u64::from(self.message_burst),
            1,
            1000,
        )?;
        range(
            "server.idle_timeout_seconds",
            self.idle_timeout_seconds,
            1,
            86_400,
        )?;
        range(
            "server.max_connections",
            n(self.max_connections),
            1,
            1_000_000,
        )?;
        range("server.max_sessions", n(self.max_sessions), 1, 1_000_000)?;
        range("server.max_running", n(self.max_running), 1, 256)?;
        range(
            "server.session_ttl_seconds",
            self.session_ttl_seconds,
            1,
            7 * 86_400,
        )?;
        range("server.replay_bytes", n(self.replay_bytes), 4096, 256 << 20)?;
        range(
            "server.shutdown_grace_seconds",
            self.shutdown_grace_seconds,
            0,
            3600,
        )?;
        range(
            "server.request_timeout_seconds",
            self.request_timeout_seconds,
            1,
            3600,
        )?;
        Ok(())
    }
}
