//! One suite for both engines: the SQLite file (embedded default) and a real PostgreSQL server
//! (a scratch database on `ATELIER_TEST_POSTGRES_URL`, default the local server).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use atelier_platform::testing::ScratchDatabase;
use atelier_platform::{
    ChatRecords, Database, DatabaseConfig, Error, MAX_STATE_BYTES, SessionRecords,
};

async fn suite(config: &DatabaseConfig) {
    let db = Database::connect(config).await.unwrap();
    let records = SessionRecords::new(db.clone());

    // Insert, read back.
    records
        .put("s1", "acme", "understand", r#"{"brief":"a sunrise"}"#)
        .await
        .unwrap();
    let first = records.get("s1").await.unwrap().unwrap();
    assert_eq!(
        (
            first.tenant.as_str(),
            first.phase.as_str(),
            first.state.as_str()
        ),
        ("acme", "understand", r#"{"brief":"a sunrise"}"#)
    );
    assert_eq!(first.created_ms, first.updated_ms);
    assert!(records.get("missing").await.unwrap().is_none());

    // Replace: new phase and state, creation time kept, update time moves on.
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Non-ASCII text, and the JSON escape of a NUL character (which JSONB would refuse).
    let unicode = r#"{"brief":"ein Plakat für den Sommer — 夏 ☀","answer":null,"nul":"a\u0000b"}"#;
    records.put("s1", "acme", "clarify", unicode).await.unwrap();
    let second = records.get("s1").await.unwrap().unwrap();
    assert_eq!(second.phase, "clarify");
    assert_eq!(second.state, unicode);
    assert_eq!(second.created_ms, first.created_ms);
    assert!(second.updated_ms > first.updated_ms);

    // Listings are per tenant, newest first, bounded.
    for (id, tenant) in [("s2", "acme"), ("s3", "globex"), ("s4", "acme")] {
        tokio::time::sleep(Duration::from_millis(2)).await;
        records.put(id, tenant, "done", "{}").await.unwrap();
    }
    let acme: Vec<String> = records
        .list("acme", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(acme, ["s4", "s2", "s1"]);
    assert_eq!(records.list("acme", 2).await.unwrap().len(), 2);
    let globex = records.list("globex", 10).await.unwrap();
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0].id, "s3");
    assert!(records.list("nobody", 10).await.unwrap().is_empty());

    // Bad input is refused with the field named, and nothing stored changes.
    let too_big = "x".repeat(MAX_STATE_BYTES + 1);
    for (id, tenant, phase, state, field) in [
        ("", "acme", "done", "{}", "session id"),
        ("s1", "  ", "done", "{}", "tenant"),
        ("s1", "acme", "", "{}", "phase"),
        ("s1", "acme", "done", too_big.as_str(), "session state"),
    ] {
        match records.put(id, tenant, phase, state).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }
    assert!(matches!(
        records.list("acme", 0).await,
        Err(Error::Invalid { field: "limit", .. })
    ));
    assert_eq!(records.get("s1").await.unwrap().unwrap(), second);

    // Chats: tenant, brand and the brief they work on.
    let chats = ChatRecords::new(db.clone());
    chats
        .put("c1", "acme", Some("solstice"), None)
        .await
        .unwrap();
    let chat = chats.get("c1").await.unwrap().unwrap();
    assert_eq!(
        (chat.brand.as_deref(), chat.brief_session.as_deref()),
        (Some("solstice"), None)
    );
    tokio::time::sleep(Duration::from_millis(2)).await;
    chats
        .put("c1", "acme", Some("solstice"), Some("s1"))
        .await
        .unwrap();
    let later = chats.get("c1").await.unwrap().unwrap();
    assert_eq!(later.brief_session.as_deref(), Some("s1"));
    assert_eq!(later.created_ms, chat.created_ms);
    assert!(later.updated_ms > chat.updated_ms);
    chats.put("c2", "acme", None, None).await.unwrap();
    assert_eq!(chats.get("c2").await.unwrap().unwrap().brand, None);
    assert!(matches!(
        chats.put("c1", "acme", Some(""), None).await,
        Err(Error::Invalid { field: "brand", .. })
    ));
    assert_eq!(chats.get("c1").await.unwrap().unwrap(), later);
    assert!(chats.delete("c2").await.unwrap());
    assert!(chats.get("c2").await.unwrap().is_none());

    // Delete.
    assert!(records.delete("s2").await.unwrap());
    assert!(!records.delete("s2").await.unwrap());
    assert!(records.get("s2").await.unwrap().is_none());
    db.close().await;

    // Reopen (migrations run again and change nothing): the same rows.
    let db = Database::connect(config).await.unwrap();
    let records = SessionRecords::new(db.clone());
    assert_eq!(records.get("s1").await.unwrap().unwrap(), second);
    assert_eq!(records.list("acme", 10).await.unwrap().len(), 2);
    assert_eq!(
        ChatRecords::new(db.clone())
            .get("c1")
            .await
            .unwrap()
            .unwrap(),
        later
    );
    db.close().await;
}

#[tokio::test]
async fn sqlite_file_keeps_sessions_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // The parent directory does not exist yet: connecting creates it.
    let path = dir.path().join("data/atelier.db");
    suite(&DatabaseConfig::new(format!("sqlite://{}", path.display()))).await;
    assert!(path.is_file());
}

#[tokio::test]
async fn postgres_server_keeps_sessions_across_reconnect() {
    let scratch = ScratchDatabase::create().await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed for this test (scripts/test.sh starts the local server; \
             set ATELIER_TEST_POSTGRES_URL for another): {e}"
        )
    });
    suite(&DatabaseConfig::new(scratch.url.clone())).await;
    scratch.drop_database().await.unwrap();
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors_without_the_password() {
    let err = Database::connect(&DatabaseConfig::new("mysql://u:hunter2@h/db"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Url { .. }), "{text}");
    assert!(
        text.contains("sqlite://") && text.contains("postgres://"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    // Nothing listens on port 1: a connect error, quickly, password hidden.
    let config = DatabaseConfig {
        connect_timeout: Duration::from_secs(2),
        ..DatabaseConfig::new("postgres://atelier:hunter2@127.0.0.1:1/atelier")
    };
    let err = Database::connect(&config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    let err = Database::connect(&DatabaseConfig {
        max_connections: 0,
        ..DatabaseConfig::new("sqlite://x.db")
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Invalid {
                field: "max_connections",
                ..
            }
        ),
        "{err}"
    );
}
