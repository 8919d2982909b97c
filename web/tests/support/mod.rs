//! A real server on port 0 with the real tools (atelier-tiny, MiniLM, embedded Qdrant with the
//! example brands) and a scripted or real chat model, plus a WebSocket client for its protocol.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../agent/tests/common/mod.rs"]
pub mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_agent::testing::ScriptedModel;
use atelier_agent::{Agent, AgentConfig, DirImageStore, MemorySessionStore, Toolbox};
use atelier_inference::diffusion::ImageGenerator;
use atelier_inference::llm::{ChatModel, ChatRequest};
use atelier_tools::critique::Critics;
use atelier_web::server::throttle::Throttled;
use atelier_web::server::{ARTIFACTS, ServerConfig, Services, serve};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PROCEED: &str = r#"{"subject":"a coffee cup, a sunrise, a scooter or leaves","contradiction":"","question":"","choices":[],"assumptions":["a square social post"]}"#;
pub const ASK: &str = r#"{"subject":"","contradiction":"","question":"What should the image show?","choices":["a coffee cup","a sunrise"],"assumptions":[]}"#;
pub const REFINE: &str = r#"{"prompt":"a beige background with an orange circle in the centre","negative_prompt":"","change":"named the ground colour first"}"#;
pub const PRESENT: &str = r#"{"message":"Here is a warm, calm image for your sale.","alt_text":"An orange circle on a cream ground."}"#;

pub fn plan(variants: u32) -> String {
    json!({
        "subject": "a sun over a cup",
        "prompt": "a beige background with an orange circle in the centre",
        "negative_prompt": "",
        "colours": ["Crema", "Ember"],
        "headline": "",
        "guidelines_applied": [],
        "variants": variants,
        "rationale": "warm ground, one accent"
    })
    .to_string()
}

/// A scripted model: the first `understand` of each brief whose text contains "something"
/// asks; every other decision answers the standard way.
pub fn scripted(delay: Duration) -> ScriptedModel {
    ScriptedModel::new(move |decision, req: &ChatRequest| {
        let user = req
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or("");
        Ok(match decision {
            "understand" if user.contains("something") && !user.contains("a coffee cup") => {
                ASK.to_string()
            }
            "understand" => PROCEED.to_string(),
            "plan" => plan(1),
            "refine" => REFINE.to_string(),
            "present" => PRESENT.to_string(),
            other => panic!("unexpected decision {other}"),
        })
    })
    .with_delay(delay)
}

/// Small, quick images: the control flow is under test, not the pictures.
pub fn agent_config() -> AgentConfig {
    AgentConfig {
        width: 64,
        height: 64,
        steps: 3,
        max_iterations: 1,
        answer_timeout: Duration::from_secs(60),
        ..AgentConfig::default()
    }
}

pub fn server_config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".into(),
        ..ServerConfig::default()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    /// The agent's sessions, when they are kept in memory (not on a database).
    pub sessions: Option<Arc<MemorySessionStore>>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    handle: Mutex<Option<tokio::task::JoinHandle<anyhow::Result<()>>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(llm: Arc<dyn ChatModel>, agent: AgentConfig, config: ServerConfig) -> Self {
        Self::start_with(llm, common::tiny(), agent, config).await
    }

    pub async fn start_with(
        llm: Arc<dyn ChatModel>,
        generator: Arc<dyn ImageGenerator>,
        agent: AgentConfig,
        config: ServerConfig,
    ) -> Self {
        Self::start_full(llm, generator, agent, config, None).await
    }

    /// A server whose agent sessions and chats live in the metadata database `db` (so a second
    /// server on the same database picks them up).
    pub async fn start_on_database(
        llm: Arc<dyn ChatModel>,
        agent: AgentConfig,
        config: ServerConfig,
        db: atelier_platform::Database,
    ) -> Self {
        Self::start_full(llm, common::tiny(), agent, config, Some(db)).await
    }

    async fn start_full(
        llm: Arc<dyn ChatModel>,
        generator: Arc<dyn ImageGenerator>,
        agent: AgentConfig,
        config: ServerConfig,
        db: Option<atelier_platform::Database>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // As in production: model calls share `max_running` permits.
        let permits = Arc::new(tokio::sync::Semaphore::new(config.max_running));
        let llm: Arc<dyn ChatModel> = Arc::new(Throttled::new(llm, permits.clone()));
        let generator: Arc<dyn ImageGenerator> = Arc::new(Throttled::new(generator, permits));
        let images = Arc::new(
            DirImageStore::new(dir.path().join("artifacts"))
                .unwrap()
                .with_uri_prefix(ARTIFACTS),
        );
        let brands = common::brands();
        let memory = db.is_none().then(|| Arc::new(MemorySessionStore::new()));
        let store: Arc<dyn atelier_agent::SessionStore> = match (&db, &memory) {
            (Some(db), _) => Arc::new(atelier_web::sessions::DbSessionStore::new(db.clone())),
            (None, Some(m)) => m.clone(),
            (None, None) => unreachable!(),
        };
        let llm_name = llm.name().to_string();
        let agent = Agent::new(
            llm,
            Toolbox {
                generator: generator.clone(),
                brands: Some(brands.clone()),
                images: images.clone(),
                critics: Critics {
                    safety: Some(common::nsfw()),
                    alignment: None,
                },
                upscale: None,
            },
            store,
            agent,
        )
        .unwrap();
        let services = Services {
            agent: Arc::new(agent),
            generator,
            images,
            brands: Some(brands),
            tenant: "one".into(),
            artifact_path_prefix: ARTIFACTS.into(),
            llm_name,
            chats: db.map(atelier_platform::ChatRecords::new),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(serve(Arc::new(services), config, listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            sessions: memory,
            stop: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Begin a graceful shutdown.
    pub fn begin_shutdown(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }

    /// Shut down and wait for the server to return.
    pub async fn stop(&self) {
        self.begin_shutdown();
        let handle = self.handle.lock().unwrap().take();
        if let Some(h) = handle {
            tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("the server did not stop within 60 s")
                .unwrap()
                .unwrap();
        }
    }

    /// POST /v1/sessions; returns the session id.
    pub async fn create_session(&self, body: Value) -> String {
        let r = http()
            .post(self.url("/v1/sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{:?}", r.text().await);
        let v: Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    pub async fn ws(&self, session: &str, after: u64) -> Client {
        Client::connect(&format!(
            "ws://{}/v1/sessions/{session}/ws?after={after}",
            self.addr
        ))
        .await
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// A protocol client that records every message it receives.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub received: Vec<Value>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut c = Client {
            ws,
            received: Vec::new(),
        };
        let welcome = c.next().await.expect("a welcome message");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        c
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// The next message (180 s at most: with 100 sessions sharing a few model slots a session
    /// can wait that long for its turn); `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(180), self.ws.next())
                .await
                .expect("no message within 180 s")?;
            match frame {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["v"], 1, "{v}");
                    assert!(v["seq"].is_u64(), "{v}");
                    self.received.push(v.clone());
                    return Some(v);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Read until a message of type `kind` (returned); panics when the connection ends first.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let m = self
                .next()
                .await
                .unwrap_or_else(|| panic!("closed before `{kind}`; got {:#?}", self.kinds()));
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Read until the running brief ends (an idle-making `state`: done, failed or cancelled).
    pub async fn until_finished(&mut self) -> Value {
        loop {
            let m = self.until("state").await;
            let phase = m["state"]["phase"].as_str().unwrap_or("").to_string();
            if !m["state"]["running"].as_bool().unwrap_or(true)
                && ["done", "failed", "cancelled"].contains(&phase.as_str())
            {
                return m;
            }
        }
    }

    pub fn kinds(&self) -> Vec<String> {
        self.received
            .iter()
            .map(|m| m["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
