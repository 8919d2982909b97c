//! One WebSocket connection of a session: welcome, replay, then live messages out and client
//! messages in, under the frame, length, rate and idle limits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::hub::{ChatSession, ConnectionGuard, Hub};
use super::protocol::{
    ClientLimits, ClientMessage, ErrorCode, Refusal, ServerBody, ServerMessage, VERSION,
    parse_client,
};

/// The largest frame the WebSocket layer accepts at all: frames above `max_frame_bytes` but
/// below this are refused with an error and the connection stays open; above it the
/// connection closes (1009).
pub fn hard_frame_limit(max_frame_bytes: usize) -> usize {
    (max_frame_bytes * 4).max(64 * 1024)
}

struct Connection {
    hub: Arc<Hub>,
    session: Arc<ChatSession>,
    /// The last session sequence number sent.
    sent: u64,
}

/// Serve one connection until the client leaves, idles out or the server shuts down.
pub async fn serve(
    socket: WebSocket,
    hub: Arc<Hub>,
    session: Arc<ChatSession>,
    after: u64,
    guard: ConnectionGuard,
) {
    session.attach(true);
    // A client further along than this log talked to an earlier server process (the session
    // was restored after a restart): it gets the restored log from the start, and `welcome`
    // says so with `replay_from: 0`.
    let after = if after > session.state().last_seq {
        0
    } else {
        after
    };
    let mut latest = session.subscribe();
    let (mut sink, mut stream) = socket.split();
    let config = hub.config.clone();
    let mut conn = Connection {
        hub: hub.clone(),
        session: session.clone(),
        sent: after,
    };
    let limiter = rate_limiter(config.messages_per_second, config.message_burst);
    let idle = Duration::from_secs(config.idle_timeout_seconds);

    let welcome = conn.connection_message(ServerBody::Welcome {
        protocol: VERSION,
        replay_from: after,
        state: session.state(),
        limits: ClientLimits {
            max_frame_bytes: config.max_frame_bytes,
            max_message_chars: config.max_message_chars,
            messages_per_second: config.messages_per_second,
            idle_timeout_seconds: config.idle_timeout_seconds,
        },
    });
    let mut ok = sink.send(Message::Text(welcome)).await.is_ok();
    if ok {
        ok = conn.flush(&mut sink).await;
    }
    let deadline = tokio::time::sleep(idle);
    tokio::pin!(deadline);
    while ok {
        tokio::select! {
            () = hub.shutdown.cancelled() => {
                let m = conn.error(ErrorCode::ShuttingDown, "the server is shutting down; reconnect later", true);
                let _ = sink.send(Message::Text(m)).await;
                let _ = sink.send(close(1001, "server shutting down")).await;
                break;
            }
            changed = latest.changed() => {
                if changed.is_err() {
                    break;
                }
                ok = conn.flush(&mut sink).await;
            }
            () = &mut deadline => {
                let m = conn.error(
                    ErrorCode::IdleTimeout,
                    &format!("nothing received for {} s; closing", config.idle_timeout_seconds),
                    true,
                );
                let _ = sink.send(Message::Text(m)).await;
                let _ = sink.send(close(1000, "idle timeout")).await;
                break;
            }
            frame = stream.next() => {
                let Some(Ok(frame)) = frame else { break };
                deadline.as_mut().reset(tokio::time::Instant::now() + idle);
                let reply = match frame {
                    Message::Text(text) => {
                        if limiter.check().is_err() {
                            Some(conn.error(
                                ErrorCode::RateLimited,
                                &format!(
                                    "more than {} messages per second; this one was dropped, send it again",
                                    config.messages_per_second
                                ),
                                false,
                            ))
                        } else if text.len() > config.max_frame_bytes {
                            Some(conn.error(
                                ErrorCode::FrameTooLarge,
                                &format!(
                                    "the frame has {} bytes; at most {} (server.max_frame_bytes)",
                                    text.len(),
                                    config.max_frame_bytes
                                ),
                                false,
                            ))
                        } else {
                            conn.handle(text.as_str()).await
                        }
                    }
                    Message::Binary(_) => Some(conn.error(
                        ErrorCode::BadJson,
                        "binary frames are not accepted; send JSON text frames",
                        false,
                    )),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => None,
                };
                if let Some(reply) = reply {
                    ok = sink.send(Message::Text(reply)).await.is_ok();
                }
                // Messages the client's message caused (its echo, a state change) go out now.
                if ok {
                    ok = conn.flush(&mut sink).await;
                }
            }
        }
    }
    session.attach(false);
    drop(guard);
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}

fn rate_limiter(per_second: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst))
}

impl Connection {
    /// Send every session message after the last one sent.
    async fn flush<S>(&mut self, sink: &mut S) -> bool
    where
        S: futures::Sink<Message> + Unpin,
    {
        let replay = self.session.replay(self.sent);
        if replay.gap {
            let m = self.error(
                ErrorCode::ReplayGap,
                &format!(
                    "messages after {} are no longer kept; the session state follows in `welcome` or the next `state`",
                    self.sent
                ),
                false,
            );
            if sink.send(Message::Text(m)).await.is_err() {
                return false;
            }
        }
        for (seq, text) in replay.messages {
            if sink
                .send(Message::Text(Utf8Bytes::from(&*text)))
                .await
                .is_err()
            {
                return false;
            }
            self.sent = seq;
        }
        true
    }

    fn connection_message(&self, body: ServerBody) -> Utf8Bytes {
        let m = ServerMessage {
            v: VERSION,
            seq: self.sent,
            body,
        };
        serde_json::to_string(&m).unwrap_or_default().into()
    }

    fn error(&self, code: ErrorCode, message: &str, fatal: bool) -> Utf8Bytes {
        self.connection_message(ServerBody::Error {
            code,
            message: message.into(),
            fatal,
        })
    }

    fn refused(&self, r: Refusal) -> Utf8Bytes {
        self.error(r.code, &r.message, false)
    }

    fn too_long(&self, text: &str) -> Option<Refusal> {
        let max = self.hub.config.max_message_chars;
        let chars = text.chars().count();
        (chars > max).then(|| Refusal {
            code: ErrorCode::MessageTooLong,
            message: format!(
                "`text` has {chars} characters; at most {max} (server.max_message_chars)"
            ),
        })
    }

    /// Act on one client frame; the answer, if the client gets one of its own.
    async fn handle(&mut self, text: &str) -> Option<Utf8Bytes> {
        let message = match parse_client(text) {
            Ok(m) => m,
            Err(r) => return Some(self.refused(r)),
        };
        let outcome = match message {
            ClientMessage::Ping { nonce } => {
                return Some(self.connection_message(ServerBody::Pong { nonce }));
            }
            ClientMessage::Message { text, brand } => match self.too_long(&text) {
                Some(r) => Err(r),
                None if self.session.question().is_some() => {
                    self.session.answer(None, Some(text)).await
                }
                None => self.hub.submit(&self.session, &text, brand).await,
            },
            ClientMessage::Answer { text, question_id } => match self.too_long(&text) {
                Some(r) => Err(r),
                None => self.session.answer(question_id, Some(text)).await,
            },
            ClientMessage::Skip { question_id } => self.session.answer(question_id, None).await,
            ClientMessage::Choose { image_id } => self.session.choose(&image_id),
            ClientMessage::Cancel => self.session.cancel(),
        };
        outcome.err().map(|r| self.refused(r))
    }
}
