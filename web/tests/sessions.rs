//! Agent sessions on the platform's metadata database survive a restart: a session that asked
//! a question is stored, the process "dies", and a new agent on a new connection to the same
//! database picks it up, asks again and finishes. Once on the embedded SQLite file, once on a
//! real PostgreSQL server. And the same for a WebSocket chat across a server restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use atelier_agent::{
    Agent, AgentEvent, DirImageStore, Phase, SessionIo, SessionStore, Toolbox, UserInput,
};
use atelier_platform::testing::ScratchDatabase;
use atelier_platform::{Database, DatabaseConfig};
use atelier_web::sessions::DbSessionStore;
use serde_json::json;
use support::{TestServer, agent_config, common, scripted, server_config};

async fn agent_on(config: &DatabaseConfig, out: &std::path::Path) -> (Agent, DbSessionStore) {
    let store = DbSessionStore::new(Database::connect(config).await.unwrap());
    let agent = Agent::new(
        Arc::new(scripted(Duration::ZERO)),
        Toolbox {
            generator: common::tiny(),
            brands: Some(common::brands()),
            images: Arc::new(DirImageStore::new(out).unwrap()),
            critics: Default::default(),
            upscale: None,
        },
        Arc::new(store.clone()),
        agent_config(),
    )
    .unwrap();
    (agent, store)
}

async fn survives_a_restart(config: DatabaseConfig) {
    let out = tempfile::tempdir().unwrap();
    // First process: the brief is ambiguous, the agent asks, and the process dies waiting.
    let (first, _) = agent_on(&config, out.path()).await;
    let mut s = first
        .start("one", "something for the autumn", Some("solstice".into()))
        .await
        .unwrap();
    let id = s.id.clone();
    let (mut io, mut events, _inputs) = SessionIo::channel(64);
    let run = tokio::spawn(async move {
        let _ = first.run(&mut s, &mut io).await;
    });
    while let Some(e) = events.recv().await {
        if matches!(e, AgentEvent::Question { .. }) {
            break;
        }
    }
    run.abort();
    let _ = run.await;

    // Second process, new connection: the stored session waits at its question.
    let (second, store) = agent_on(&config, out.path()).await;
    let row = store.records().get(&id).await.unwrap().unwrap();
    assert_eq!(
        (row.tenant.as_str(), row.phase.as_str()),
        ("one", "clarify")
    );
    let mut s = second.resume(&id).await.unwrap().unwrap();
    assert_eq!(s.phase, Phase::Clarify);
    assert_eq!(s.brand.as_deref(), Some("solstice"));

    let (mut io, mut events, inputs) = SessionIo::channel(1024);
    let collector = tokio::spawn(async move {
        let mut kinds = Vec::new();
        while let Some(e) = events.recv().await {
            if matches!(e, AgentEvent::Question { .. }) {
                inputs
                    .send(UserInput::Answer {
                        text: "a coffee cup".into(),
                    })
                    .await
                    .unwrap();
            }
            kinds.push(
                serde_json::to_value(&e).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        kinds
    });
    second.run(&mut s, &mut io).await.unwrap();
    drop(io);
    let kinds = collector.await.unwrap();
    assert!(
        kinds.iter().any(|k| k == "question"),
        "asked again: {kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "final"), "{kinds:?}");
    assert_eq!(s.phase, Phase::Done, "{:?}", s.failure);
    assert_eq!(s.exchanges[0].answer.as_deref(), Some("a coffee cup"));

    // The database holds the finished session; a third connection reads it whole.
    let (_, store) = agent_on(&config, out.path()).await;
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.phase, Phase::Done);
    assert_eq!(stored, s);
    assert_eq!(
        store.records().get(&id).await.unwrap().unwrap().phase,
        "done"
    );
    store.delete(&id).await.unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_on_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("atelier.db").display());
    survives_a_restart(DatabaseConfig::new(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_survives_a_restart_on_postgres() {
    let scratch = ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed (scripts/test.sh starts it): {e}"));
    survives_a_restart(DatabaseConfig::new(scratch.url.clone())).await;
    scratch.drop_database().await.unwrap();
}

/// A chat waiting at a question when its server stops is picked up by the next server on the
/// same database: the client reconnects with the sequence number it had, is told to follow the
/// new log (`replay_from: 0`), hears that the server restarted, gets the question again, answers
/// it and gets the result.
async fn a_chat_survives_a_server_restart(config: DatabaseConfig) {
    let quick_shutdown = atelier_web::server::ServerConfig {
        shutdown_grace_seconds: 1,
        ..server_config()
    };
    let db = Database::connect(&config).await.unwrap();
    let first = TestServer::start_on_database(
        Arc::new(scripted(Duration::ZERO)),
        agent_config(),
        quick_shutdown.clone(),
        db.clone(),
    )
    .await;
    let id = first.create_session(json!({"brand": "solstice"})).await;
    let mut c = first.ws(&id, 0).await;
    c.send(json!({"type": "message", "text": "something for the autumn"}))
        .await;
    let question = c.until("question").await;
    let seen = question["seq"].as_u64().unwrap();
    first.stop().await;

    let second = TestServer::start_on_database(
        Arc::new(scripted(Duration::ZERO)),
        agent_config(),
        quick_shutdown,
        db,
    )
    .await;
    // Plain HTTP finds it too.
    let state: serde_json::Value = reqwest::get(second.url(&format!("/v1/sessions/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["session_id"], id.as_str(), "{state}");
    let mut c = second.ws(&id, seen).await;
    assert_eq!(c.received[0]["replay_from"], 0, "{}", c.received[0]);
    let note = c.until("message").await;
    assert!(
        note["text"].as_str().unwrap().contains("restarted"),
        "{note}"
    );
    let again = c.until("question").await;
    assert_eq!(again["question"]["text"], question["question"]["text"]);
    c.send(json!({"type": "answer", "text": "a coffee cup"}))
        .await;
    c.until("final").await;
    let finished = c.until_finished().await;
    assert_eq!(finished["state"]["phase"], "done", "{finished}");
    second.stop().await;

    // An unknown id is still a 404.
    let third = TestServer::start_on_database(
        Arc::new(scripted(Duration::ZERO)),
        agent_config(),
        server_config(),
        Database::connect(&config).await.unwrap(),
    )
    .await;
    let r = reqwest::get(third.url("/v1/sessions/no-such-chat"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_survives_a_server_restart_on_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("atelier.db").display());
    a_chat_survives_a_server_restart(DatabaseConfig::new(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_survives_a_server_restart_on_postgres() {
    let scratch = ScratchDatabase::create()
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed (scripts/test.sh starts it): {e}"));
    a_chat_survives_a_server_restart(DatabaseConfig::new(scratch.url.clone())).await;
    scratch.drop_database().await.unwrap();
}
