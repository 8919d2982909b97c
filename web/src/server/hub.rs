//! The sessions a server holds: each one's numbered message log (kept for replay), its state,
//! the brief running in it, and the limits on how many of each there may be.
//!
//! A session's messages are serialised once, numbered, appended to its log and announced on a
//! `watch` channel; every connection of the session reads the log from the last number it
//! sent. A slow connection therefore never slows the agent, and a reconnecting client gets what
//! it missed from the same log.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use atelier_agent::{Agent, AgentEvent, Phase, SessionIo, UserInput};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::Services;
use super::config::ServerConfig;
use super::protocol::{
    ErrorCode, QuestionOut, Refusal, ServerBody, ServerMessage, SessionState, VERSION,
};

/// Why a session or connection could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capacity {
    /// The limit is reached; try again after this many seconds.
    Full { limit: usize, retry_after: u64 },
    /// The server is shutting down.
    ShuttingDown,
}

/// Everything the server holds.
pub struct Hub {
    pub services: Arc<Services>,
    pub config: Arc<ServerConfig>,
    sessions: Mutex<HashMap<String, Arc<ChatSession>>>,
    connections: AtomicUsize,
    running: AtomicUsize,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// Cancelled when the shutdown grace is over: running briefs stop.
    pub abort: CancellationToken,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("sessions", &self.session_count())
            .field("connections", &self.connections.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    pub fn new(services: Arc<Services>, config: ServerConfig) -> Arc<Self> {
        Arc::new(Hub {
            services,
            config: Arc::new(config),
            sessions: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            shutdown: CancellationToken::new(),
            abort: CancellationToken::new(),
        })
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Briefs running now (including those waiting for an answer or for the models).
    pub fn running_count(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// A new session, for `brand` when given (checked by the caller).
    pub fn create(&self, brand: Option<String>) -> Result<Arc<ChatSession>, Capacity> {
        if self.shutdown.is_cancelled() {
            return Err(Capacity::ShuttingDown);
        }
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= self.config.max_sessions {
            let ttl = Duration::from_secs(self.config.session_ttl_seconds);
            sessions.retain(|_, s| !s.expired(ttl));
        }
        if sessions.len() >= self.config.max_sessions {
            return Err(Capacity::Full {
                limit: self.config.max_sessions,
                retry_after: 30,
            });
        }
        let session = Arc::new(ChatSession::new(
            uuid::Uuid::new_v4().to_string(),
            self.services.tenant.clone(),
            brand,
            self.config.replay_bytes,
        ));
        sessions.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    pub fn get(&self, id: &str) -> Option<Arc<ChatSession>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Record `session` (tenant, brand, current brief) in the metadata database, so a
    /// restarted server can pick it up. A failed write is logged, not fatal: the chat goes on
    /// in this process.
    pub async fn record(&self, session: &ChatSession, brief_session: Option<&str>) {
        let Some(chats) = &self.services.chats else {
            return;
        };
        let brand = session.lock().brand.clone();
        if let Err(e) = chats
            .put(
                &session.id,
                &session.tenant,
                brand.as_deref(),
                brief_session,
            )
            .await
        {
            tracing::warn!(session = %session.id, error = %e, "could not record the chat; it will not survive a restart");
        }
    }

    /// The session `id`: from this process, or else from the metadata database when a
    /// previous process recorded it within `session_ttl_seconds`. A restored session whose
    /// brief had not ended continues it (a question is asked again).
    pub async fn find(self: &Arc<Self>, id: &str) -> Option<Arc<ChatSession>> {
        if let Some(found) = self.get(id) {
            return Some(found);
        }
        if self.shutdown.is_cancelled() {
            return None;
        }
        let chats = self.services.chats.as_ref()?;
        let record = match chats.get(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "could not look the chat up");
                return None;
            }
        };
        let ttl_ms =
            i64::try_from(self.config.session_ttl_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        let now_ms = chrono::Utc::now().timestamp_millis();
        if now_ms.saturating_sub(record.updated_ms) > ttl_ms
            || record.tenant != self.services.tenant
        {
            return None;
        }
        let brief = match &record.brief_session {
            Some(brief) => match self.services.agent.resume(brief).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "could not load the chat's brief");
                    None
                }
            },
            None => None,
        };
        let session = Arc::new(ChatSession::new(
            record.id.clone(),
            record.tenant.clone(),
            record.brand.clone(),
            self.config.replay_bytes,
        ));
        {
            // Another connection may have restored it meanwhile: theirs wins.
            let mut sessions = lock(&self.sessions);
            if let Some(existing) = sessions.get(id) {
                return Some(existing.clone());
            }
            if sessions.len() >= self.config.max_sessions {
                let ttl = Duration::from_secs(self.config.session_ttl_seconds);
                sessions.retain(|_, s| !s.expired(ttl));
            }
            if sessions.len() >= self.config.max_sessions {
                return None;
            }
            sessions.insert(session.id.clone(), session.clone());
        }
        match brief {
            Some(brief) if !brief.phase.is_terminal() => {
                session.publish(ServerBody::Message {
                    text: format!(
                        "The server restarted; continuing your brief from where it was ({}).",
                        phase_name(brief.phase)
                    ),
                });
                self.continue_brief(&session, brief);
            }
            Some(brief) => session.set_phase(
                phase_name(brief.phase),
                "the last brief ended before the server restarted; send another brief",
            ),
            None => {}
        }
        tracing::info!(session = %id, "chat restored from the metadata database");
        Some(session)
    }

    /// Run a stored, unfinished brief again in `session` (after a restart).
    fn continue_brief(self: &Arc<Self>, session: &Arc<ChatSession>, brief: atelier_agent::Session) {
        let (io, events, inputs) = SessionIo::channel(256);
        {
            let mut inner = session.lock();
            if inner.run.is_some() {
                return;
            }
            inner.run = Some(RunHandle {
                inputs,
                cancel: io.cancel.clone(),
            });
        }
        self.spawn_run(session.clone(), brief, io, events);
    }

    fn spawn_run(
        self: &Arc<Self>,
        session: Arc<ChatSession>,
        brief: atelier_agent::Session,
        io: SessionIo,
        events: mpsc::Receiver<AgentEvent>,
    ) {
        let agent = self.services.agent.clone();
        self.running.fetch_add(1, Ordering::AcqRel);
        let hub = self.clone();
        tokio::spawn(async move {
            hub.run(&agent, &session, brief, io, events).await;
            hub.running.fetch_sub(1, Ordering::AcqRel);
        });
    }

    /// Forget sessions nobody has used for `session_ttl_seconds`.
    pub fn evict_expired(&self) -> usize {
        let ttl = Duration::from_secs(self.config.session_ttl_seconds);
        let mut sessions = lock(&self.sessions);
        let before = sessions.len();
        sessions.retain(|_, s| !s.expired(ttl));
        before - sessions.len()
    }

    /// Count a new connection, or refuse it past `max_connections`.
    pub fn connect(self: &Arc<Self>) -> Result<ConnectionGuard, Capacity> {
        if self.shutdown.is_cancelled() {
            return Err(Capacity::ShuttingDown);
        }
        let limit = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| Capacity::Full {
                limit,
                retry_after: 5,
            })?;
        Ok(ConnectionGuard { hub: self.clone() })
    }

    /// Start working on `text` in `session`: checks the brief and the brand, records the user's
    /// message, and runs the agent in the background.
    pub async fn submit(
        self: &Arc<Self>,
        session: &Arc<ChatSession>,
        text: &str,
        brand: Option<String>,
    ) -> Result<(), Refusal> {
        if self.shutdown.is_cancelled() {
            return Err(refusal(
                ErrorCode::ShuttingDown,
                "the server is shutting down; reconnect and send the brief again later",
            ));
        }
        let (io, events, inputs) = SessionIo::channel(256);
        let cancel = io.cancel.clone();
        // Claim the session before any await, so two messages cannot start two runs.
        let brand = {
            let mut inner = session.lock();
            if inner.run.is_some() {
                return Err(refusal(
                    ErrorCode::Busy,
                    "a brief is being worked on and no question is open; wait for it or send `cancel`",
                ));
            }
            inner.run = Some(RunHandle {
                inputs,
                cancel: cancel.clone(),
            });
            brand.or_else(|| inner.brand.clone())
        };
        let agent = self.services.agent.clone();
        let started = agent.start(&session.tenant, text, brand.clone()).await;
        let agent_session = match started {
            Ok(s) => s,
            Err(e) => {
                session.lock().run = None;
                let code = match e {
                    atelier_agent::Error::InvalidRequest { .. } => ErrorCode::InvalidRequest,
                    _ => ErrorCode::AgentFailed,
                };
                return Err(refusal(code, e.to_string()));
            }
        };
        {
            let mut inner = session.lock();
            inner.brand = brand;
        }
        self.record(session, Some(&agent_session.id)).await;
        session.publish(ServerBody::User {
            text: agent_session.brief.clone(),
        });
        self.spawn_run(session.clone(), agent_session, io, events);
        Ok(())
    }

    async fn run(
        &self,
        agent: &Agent,
        chat: &Arc<ChatSession>,
        mut session: atelier_agent::Session,
        mut io: SessionIo,
        mut events: mpsc::Receiver<AgentEvent>,
    ) {
        // When the shutdown grace is over the run is interrupted, not cancelled: the session
        // stays stored as of its last step and the next server continues it.
        let abort = self.abort.clone();
        let stop = io.interrupt.clone();
        let watchdog = tokio::spawn(async move {
            abort.cancelled().await;
            stop.cancel();
        });
        let forward = {
            let chat = chat.clone();
            let url = self.services.artifact_path_prefix.clone();
            tokio::spawn(async move {
                let to_url = |id: &str| format!("{url}{id}");
                while let Some(event) = events.recv().await {
                    match event {
                        AgentEvent::Status { phase, detail } => {
                            chat.set_phase(phase_name(phase), &detail);
                        }
                        AgentEvent::Cancelled => chat.set_phase("cancelled", "cancelled"),
                        other => {
                            if let Some(body) = ServerBody::from_agent(other, &to_url) {
                                chat.publish(body);
                            }
                        }
                    }
                }
            })
        };
        let result = agent.run(&mut session, &mut io).await;
        drop(io);
        let _ = forward.await;
        watchdog.abort();
        let (phase, detail) = match (&result, session.phase) {
            (Err(atelier_agent::Error::Interrupted), _) => (
                "interrupted",
                "the server stopped; this brief continues when it is back".to_string(),
            ),
            (Err(e), _) => {
                chat.publish(ServerBody::Error {
                    code: ErrorCode::AgentFailed,
                    message: e.to_string(),
                    fatal: true,
                });
                ("failed", e.to_string())
            }
            (Ok(()), Phase::Done) => ("done", "finished; send another brief".into()),
            (Ok(()), Phase::Cancelled) => ("cancelled", "cancelled; send another brief".into()),
            (Ok(()), _) => (
                "failed",
                session
                    .failure
                    .clone()
                    .unwrap_or_else(|| "the brief failed".into()),
            ),
        };
        chat.finish_run(phase, &detail);
    }

    /// After shutdown began: wait up to the grace period for running briefs, then stop them and
    /// wait (briefly) for them to save their state.
    pub async fn drain(&self) {
        let grace = Duration::from_secs(self.config.shutdown_grace_seconds);
        let deadline = Instant::now() + grace;
        while self.running_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.running_count() > 0 {
            tracing::warn!(
                running = self.running_count(),
                "shutdown grace over: cancelling the briefs still running"
            );
        }
        self.abort.cancel();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn refusal(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The protocol name of an agent phase.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Understand => "understand",
        Phase::Clarify => "clarify",
        Phase::Retrieve => "retrieve",
        Phase::Plan => "plan",
        Phase::Generate => "generate",
        Phase::Critique => "critique",
        Phase::Refine => "refine",
        Phase::Present => "present",
        Phase::Done => "done",
        Phase::Failed => "failed",
        Phase::Cancelled => "cancelled",
    }
}

/// Holds one connection's place; dropping it frees the place.
pub struct ConnectionGuard {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for ConnectionGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionGuard")
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

struct RunHandle {
    inputs: mpsc::Sender<UserInput>,
    cancel: CancellationToken,
}

struct Inner {
    log: VecDeque<(u64, Arc<str>)>,
    log_bytes: usize,
    /// The highest sequence number ever evicted from the log (0: none).
    evicted_to: u64,
    last_seq: u64,
    phase: String,
    detail: String,
    brand: Option<String>,
    run: Option<RunHandle>,
    question: Option<QuestionOut>,
    images: HashSet<String>,
    connections: usize,
    idle_since: Instant,
}

/// One chat session: its log, state and running brief.
pub struct ChatSession {
    pub id: String,
    pub tenant: String,
    inner: Mutex<Inner>,
    latest: watch::Sender<u64>,
    replay_bytes: usize,
}

impl std::fmt::Debug for ChatSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatSession")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What a connection reads from the log.
#[derive(Debug)]
pub struct Replay {
    /// Serialised messages with `seq` above the asked one, in order.
    pub messages: Vec<(u64, Arc<str>)>,
    /// Messages after the asked one were evicted: the client missed some for good.
    pub gap: bool,
}

impl ChatSession {
    fn new(id: String, tenant: String, brand: Option<String>, replay_bytes: usize) -> Self {
        let (latest, _) = watch::channel(0);
        ChatSession {
            id,
            tenant,
            inner: Mutex::new(Inner {
                log: VecDeque::new(),
                log_bytes: 0,
                evicted_to: 0,
                last_seq: 0,
                phase: "idle".into(),
                detail: "waiting for a brief".into(),
                brand,
                run: None,
                question: None,
                images: HashSet::new(),
                connections: 0,
                idle_since: Instant::now(),
            }),
            latest,
            replay_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    fn expired(&self, ttl: Duration) -> bool {
        let inner = self.lock();
        inner.connections == 0 && inner.run.is_none() && inner.idle_since.elapsed() >= ttl
    }

    fn state_of(&self, inner: &Inner) -> SessionState {
        SessionState {
            session_id: self.id.clone(),
            phase: inner.phase.clone(),
            detail: inner.detail.clone(),
            running: inner.run.is_some(),
            brand: inner.brand.clone(),
            question: inner.question.clone(),
            last_seq: inner.last_seq,
        }
    }

    /// The session's state now.
    pub fn state(&self) -> SessionState {
        let inner = self.lock();
        self.state_of(&inner)
    }

    /// Hear about new messages (the latest sequence number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Number, record and announce a session message; returns its sequence number.
    pub fn publish(&self, mut body: ServerBody) -> u64 {
        let seq = {
            let mut inner = self.lock();
            match &body {
                ServerBody::Question { question } => inner.question = Some(question.clone()),
                ServerBody::Image { image, .. } => {
                    inner.images.insert(image.id.clone());
                }
                ServerBody::State { state } if state.phase != "clarify" => inner.question = None,
                _ => {}
            }
            inner.last_seq += 1;
            let seq = inner.last_seq;
            if let ServerBody::State { state } = &mut body {
                state.last_seq = seq;
            }
            let text: Arc<str> = match serde_json::to_string(&ServerMessage {
                v: VERSION,
                seq,
                body,
            }) {
                Ok(t) => t.into(),
                Err(e) => {
                    tracing::error!(error = %e, "a server message did not serialise");
                    return seq;
                }
            };
            inner.log_bytes += text.len();
            inner.log.push_back((seq, text));
            while inner.log_bytes > self.replay_bytes && inner.log.len() > 1 {
                if let Some((old, t)) = inner.log.pop_front() {
                    inner.log_bytes -= t.len();
                    inner.evicted_to = old;
                }
            }
            inner.idle_since = Instant::now();
            seq
        };
        self.latest.send_replace(seq);
        seq
    }

    fn set_phase(&self, phase: &str, detail: &str) {
        let state = {
            let mut inner = self.lock();
            inner.phase = phase.into();
            inner.detail = detail.into();
            if phase != "clarify" {
                inner.question = None;
            }
            self.state_of(&inner)
        };
        self.publish(ServerBody::State { state });
    }

    fn finish_run(&self, phase: &str, detail: &str) {
        {
            let mut inner = self.lock();
            inner.run = None;
            inner.question = None;
        }
        self.set_phase(phase, detail);
    }

    /// Every kept message with `seq > after`.
    pub fn replay(&self, after: u64) -> Replay {
        let inner = self.lock();
        let gap = after < inner.evicted_to;
        let start = inner.log.partition_point(|(seq, _)| *seq <= after);
        Replay {
            messages: inner.log.range(start..).cloned().collect(),
            gap,
        }
    }

    /// A connection joined (`true`) or left (`false`).
    pub fn attach(&self, joined: bool) {
        let mut inner = self.lock();
        if joined {
            inner.connections += 1;
        } else {
            inner.connections = inner.connections.saturating_sub(1);
        }
        inner.idle_since = Instant::now();
    }

    /// The open question, if any.
    pub fn question(&self) -> Option<QuestionOut> {
        self.lock().question.clone()
    }

    /// Answer the open question (`None`: go on with assumptions).
    pub async fn answer(
        &self,
        question_id: Option<u32>,
        text: Option<String>,
    ) -> Result<(), Refusal> {
        let inputs = {
            let mut inner = self.lock();
            let Some(open) = &inner.question else {
                return Err(refusal(ErrorCode::NoQuestion, "no question is open"));
            };
            if let Some(id) = question_id
                && id != open.id
            {
                return Err(refusal(
                    ErrorCode::NoQuestion,
                    format!("question {id} is not the open one (that is {})", open.id),
                ));
            }
            let Some(run) = &inner.run else {
                return Err(refusal(ErrorCode::NoQuestion, "no question is open"));
            };
            let inputs = run.inputs.clone();
            inner.question = None;
            inputs
        };
        let (input, said) = match text {
            Some(text) => (UserInput::Answer { text: text.clone() }, text),
            None => (
                UserInput::JustGo,
                "Go ahead with your assumptions.".to_string(),
            ),
        };
        self.publish(ServerBody::User { text: said });
        inputs
            .send(input)
            .await
            .map_err(|_| refusal(ErrorCode::NoQuestion, "the brief has already ended"))
    }

    /// Stop the running brief.
    pub fn cancel(&self) -> Result<(), Refusal> {
        match &self.lock().run {
            Some(run) => {
                run.cancel.cancel();
                Ok(())
            }
            None => Err(refusal(ErrorCode::NotRunning, "nothing is running")),
        }
    }

    /// Record the user's choice of one of the session's images.
    pub fn choose(&self, image_id: &str) -> Result<(), Refusal> {
        if !self.lock().images.contains(image_id) {
            return Err(refusal(
                ErrorCode::UnknownImage,
                format!("`{image_id}` is not an image of this session"),
            ));
        }
        self.publish(ServerBody::Chosen {
            image_id: image_id.into(),
        });
        Ok(())
    }
}
