//! The server end to end on port 0: the WebSocket chat protocol (a full session, reconnect and
//! replay, cancel, every limit, 100 sessions at once), artifacts, health, the OpenAI-compatible
//! endpoints and graceful shutdown. A scripted chat model drives the agent; the tools are real
//! (atelier-tiny, MiniLM, embedded Qdrant with the example brands).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Client, TestServer, agent_config, http, scripted, server_config};
use tokio_tungstenite::tungstenite::Message;

async fn server() -> TestServer {
    TestServer::start(
        Arc::new(scripted(Duration::ZERO)),
        agent_config(),
        server_config(),
    )
    .await
}

/// The sequence numbers of session messages (not welcome, pong or connection errors).
fn session_seqs(messages: &[Value]) -> Vec<u64> {
    let mut last = 0;
    let mut seqs = Vec::new();
    for m in messages {
        if m["type"] == "welcome" || m["type"] == "pong" {
            continue;
        }
        let seq = m["seq"].as_u64().unwrap();
        if seq > last {
            seqs.push(seq);
            last = seq;
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brief_is_asked_about_answered_and_ends_in_images_served_as_artifacts() {
    let server = server().await;
    let id = server.create_session(json!({"brand": "solstice"})).await;
    let mut c = server.ws(&id, 0).await;
    c.send(json!({"type": "message", "text": "something for the summer"}))
        .await;
    let user = c.until("user").await;
    assert_eq!(user["text"], "something for the summer");
    let q = c.until("question").await;
    assert_eq!(q["question"]["choices"][0], "a coffee cup");
    // The state says a question is open.
    let state: Value = http()
        .get(server.url(&format!("/v1/sessions/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["question"]["id"], q["question"]["id"], "{state}");
    c.send(json!({"type": "answer", "question_id": q["question"]["id"], "text": "a coffee cup"}))
        .await;
    let image = c.until("image").await;
    let fin = c.until("final").await;
    // The model's words, then the checks' outcome in the agent's.
    let message = fin["message"].as_str().unwrap();
    assert!(
        message.starts_with("Here is a warm, calm image for your sale.\n\nIt "),
        "{message}"
    );
    let done = c.until_finished().await;
    assert_eq!(done["state"]["phase"], "done", "{done}");
    let kinds = c.kinds();
    for k in [
        "state", "user", "question", "tool", "progress", "image", "critique", "final",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no `{k}` in {kinds:?}");
    }
    // Session messages are numbered 1, 2, 3 … without gaps.
    let seqs = session_seqs(&c.received);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // The progress carried a preview as a data URL.
    assert!(c.received.iter().any(|m| {
        m["type"] == "progress"
            && m["preview"]
                .as_str()
                .is_some_and(|p| p.starts_with("data:image/png;base64,"))
    }));

    // The image is served by content hash, cached for good, revalidated by ETag.
    let url = image["image"]["url"].as_str().unwrap();
    let image_id = image["image"]["id"].as_str().unwrap();
    assert_eq!(url, format!("/v1/artifacts/{image_id}"));
    let r = http().get(server.url(url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["etag"], format!("\"{image_id}\""));
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let png = r.bytes().await.unwrap();
    let decoded = image::load_from_memory(&png).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (64, 64));
    let r = http()
        .get(server.url(url))
        .header("if-none-match", format!("\"{image_id}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    for (path, status) in [
        ("/v1/artifacts/..%2F..%2Fetc%2Fpasswd", 400),
        ("/v1/artifacts/ABC", 400),
        (&format!("/v1/artifacts/{}", "0".repeat(64)) as &str, 404),
    ] {
        let r = http().get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    // Choosing a variant is recorded; an image of no session is refused.
    c.send(json!({"type": "choose", "image_id": image_id}))
        .await;
    assert_eq!(c.until("chosen").await["image_id"], image_id);
    c.send(json!({"type": "choose", "image_id": "0".repeat(64)}))
        .await;
    assert_eq!(c.until("error").await["code"], "unknown_image");
    c.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reconnects_gets_exactly_what_it_missed() {
    let server = server().await;
    let id = server.create_session(json!({"brand": "solstice"})).await;
    let mut first = server.ws(&id, 0).await;
    first
        .send(json!({"type": "message", "text": "A warm autumn post: a sun rising over a coffee cup"}))
        .await;
    // Leave after a few messages, mid-brief.
    for _ in 0..3 {
        first.next().await.unwrap();
    }
    let seen = session_seqs(&first.received);
    let last_seen = *seen.last().unwrap();
    first.close().await;

    // Wait for the brief to end without anyone connected.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s: Value = http()
            .get(server.url(&format!("/v1/sessions/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["phase"] == "done" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = server.ws(&id, last_seen).await;
    assert_eq!(again.received[0]["replay_from"], last_seen);
    again.until("final").await;
    again.until_finished().await;
    let replayed = session_seqs(&again.received);
    assert_eq!(replayed.first(), Some(&(last_seen + 1)), "{replayed:?}");
    assert_eq!(
        replayed,
        (last_seen + 1..=*replayed.last().unwrap()).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    // From the start: the whole conversation, the user's brief first.
    let mut all = server.ws(&id, 0).await;
    assert_eq!(
        all.until("user").await["text"],
        "A warm autumn post: a sun rising over a coffee cup"
    );
    // A sequence number that is not one is refused before the upgrade.
    let r = http()
        .get(server.url(&format!("/v1/sessions/{id}/ws?after=abc")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .get(server.url("/v1/sessions/nope/ws"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_brief_and_the_session_takes_the_next_one() {
    let server = TestServer::start(
        Arc::new(scripted(Duration::from_millis(1500))),
        agent_config(),
        server_config(),
    )
    .await;
    let id = server.create_session(json!({})).await;
    let mut c = server.ws(&id, 0).await;
    c.send(json!({"type": "cancel"})).await;
    assert_eq!(c.until("error").await["code"], "not_running");
    c.send(
        json!({"type": "message", "text": "A warm autumn post: a sun rising over a coffee cup"}),
    )
    .await;
    c.until("user").await;
    // A second brief while one runs is refused; the first goes on.
    c.send(json!({"type": "message", "text": "another one"}))
        .await;
    assert_eq!(c.until("error").await["code"], "busy");
    c.send(json!({"type": "skip"})).await;
    assert_eq!(c.until("error").await["code"], "no_question");
    c.send(json!({"type": "cancel"})).await;
    let end = c.until_finished().await;
    assert_eq!(end["state"]["phase"], "cancelled", "{end}");
    assert!(!c.kinds().contains(&"final".to_string()));
    // The connection and the session are still usable.
    c.send(json!({"type": "ping", "nonce": "n1"})).await;
    assert_eq!(c.until("pong").await["nonce"], "n1");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_limit_answers_with_a_clear_error_and_the_connection_stays_usable() {
    let config = atelier_web::server::ServerConfig {
        max_frame_bytes: 1024,
        max_message_chars: 40,
        messages_per_second: 1,
        message_burst: 20,
        max_connections: 3,
        max_sessions: 3,
        ..server_config()
    };
    let server =
        TestServer::start(Arc::new(scripted(Duration::ZERO)), agent_config(), config).await;
    let id = server.create_session(json!({})).await;
    let mut c = server.ws(&id, 0).await;
    let welcome = &c.received[0];
    assert_eq!(welcome["limits"]["max_message_chars"], 40);

    let cases: Vec<(Message, &str)> = vec![
        (Message::text("x".repeat(2000)), "frame_too_large"),
        (Message::text("not json"), "bad_json"),
        (Message::text("[1,2]"), "bad_json"),
        (Message::binary(vec![1u8, 2, 3]), "bad_json"),
        (Message::text(r#"{"type":"dance"}"#), "invalid_message"),
        (Message::text(r#"{"type":"message"}"#), "invalid_message"),
        (
            Message::text(r#"{"type":"message","text":"hi","v":9}"#),
            "unsupported_version",
        ),
        (
            Message::text(json!({"type":"message","text":"é".repeat(41)}).to_string()),
            "message_too_long",
        ),
        (
            Message::text(r#"{"type":"message","text":"a cup","brand":"nope"}"#),
            "invalid_request",
        ),
        (
            Message::text(r#"{"type":"message","text":"   "}"#),
            "invalid_request",
        ),
    ];
    for (frame, code) in cases {
        c.send_raw(frame).await;
        let e = c.until("error").await;
        assert_eq!(e["code"], code, "{e}");
        assert_eq!(e["fatal"], false);
        assert!(e["message"].as_str().unwrap().len() > 10, "{e}");
    }
    // The invalid field is named.
    assert!(
        c.received
            .iter()
            .any(|m| m["message"].as_str().is_some_and(|t| t.contains("`brand`")))
    );
    // A frame beyond the hard limit closes the connection (1009); a new one works.
    c.send_raw(Message::text("x".repeat(70_000))).await;
    while c.next().await.is_some() {}
    let mut c = server.ws(&id, 0).await;
    c.send(json!({"type": "ping", "nonce": "still here"})).await;
    assert_eq!(c.until("pong").await["nonce"], "still here");

    // Rate: the burst is 20, then one per second.
    for _ in 0..25 {
        c.send(json!({"type": "ping"})).await;
    }
    let mut limited = 0;
    for _ in 0..25 {
        let m = c.next().await.unwrap();
        if m["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited >= 3, "{:?}", c.kinds());

    // Connections past the limit: 429 with Retry-After, never a hang or a 5xx.
    let _second = server.ws(&id, 0).await;
    let _third = server.ws(&id, 0).await;
    let r = http()
        .get(server.url(&format!("/v1/sessions/{id}/ws")))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // Sessions past the limit likewise.
    server.create_session(json!({})).await;
    server.create_session(json!({})).await;
    let r = http()
        .post(server.url("/v1/sessions"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    // Bad session requests name the field.
    let r = http()
        .post(server.url("/v1/sessions"))
        .json(&json!({"brand": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "brand", "{body}");
    let r = http()
        .post(server.url("/v1/sessions"))
        .json(&json!({"colour": "red"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "colour", "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_told_and_closed() {
    let config = atelier_web::server::ServerConfig {
        idle_timeout_seconds: 1,
        ..server_config()
    };
    let server =
        TestServer::start(Arc::new(scripted(Duration::ZERO)), agent_config(), config).await;
    let id = server.create_session(json!({})).await;
    let mut c = server.ws(&id, 0).await;
    let e = c.until("error").await;
    assert_eq!(e["code"], "idle_timeout");
    assert!(c.next().await.is_none(), "closed after the timeout");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_sessions_at_once_all_finish() {
    let config = atelier_web::server::ServerConfig {
        max_running: 4,
        ..server_config()
    };
    let server = Arc::new(
        TestServer::start(Arc::new(scripted(Duration::ZERO)), agent_config(), config).await,
    );
    let mut tasks = Vec::new();
    for i in 0..100 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let id = server.create_session(json!({"brand": "solstice"})).await;
            let mut c: Client = server.ws(&id, 0).await;
            c.send(json!({"type": "message", "text": format!("Post {i}: a sun rising over a coffee cup")}))
                .await;
            let fin = c.until("final").await;
            let images = fin["images"].as_array().unwrap().len();
            let seqs = session_seqs(&c.received);
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
            c.close().await;
            (id, images)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (id, images) = t.await.unwrap();
        assert!(images >= 1);
        ids.insert(id);
    }
    assert_eq!(ids.len(), 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_brands_and_unknown_routes() {
    let server = server().await;
    let r = http().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["brand_store"]["ok"], true);
    let body: Value = http()
        .get(server.url("/v1/brands"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["brands"], json!(["solstice"]));
    let r = http().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    // The UI and its assets.
    let page = http().get(server.url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("/app.js"));
    let js = http().get(server.url("/app.js")).send().await.unwrap();
    assert!(js.text().await.unwrap().contains("WebSocket"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_images_chat_and_models() {
    let server = server().await;
    let models: Value = http()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["atelier-agent", "atelier-tiny"]);

    // Images: URL and base64, same pixels for the same request.
    let req = json!({"prompt": "an orange circle on a cream ground", "n": 2, "size": "64x64"});
    let r = http()
        .post(server.url("/v1/images/generations"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let url = data[0]["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("http://{}/v1/artifacts/", server.addr)),
        "{url}"
    );
    let png = http().get(url).send().await.unwrap().bytes().await.unwrap();
    let mut req_b64 = req.clone();
    req_b64["response_format"] = json!("b64_json");
    let body: Value = http()
        .post(server.url("/v1/images/generations"))
        .json(&req_b64)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        bytes,
        png.to_vec(),
        "same request, same content-addressed image"
    );

    for (bad, param) in [
        (json!({"prompt": ""}), "prompt"),
        (json!({"n": 1}), "prompt"),
        (json!({"prompt": "x", "size": "big"}), "size"),
        (json!({"prompt": "x", "size": "4096x4096"}), "size"),
        (json!({"prompt": "x", "n": 99}), "n"),
        (
            json!({"prompt": "x", "response_format": "gif"}),
            "response_format",
        ),
        (json!({"prompt": "x", "model": "dall-e-9"}), "model"),
        (json!({"prompt": "x", "colour": "red"}), "colour"),
    ] {
        let r = http()
            .post(server.url("/v1/images/generations"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(body["error"]["param"], param, "{bad} → {body}");
    }

    // Chat: the agent's final message with image links.
    let chat = json!({"model": "atelier-agent", "brand": "solstice", "messages": [
        {"role": "user", "content": "A warm autumn post: a sun rising over a coffee cup"}]});
    let body: Value = http()
        .post(server.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Here is a warm, calm image"),
        "{content}"
    );
    assert!(
        content.contains(&format!("](http://{}/v1/artifacts/", server.addr)),
        "{content}"
    );
    assert_eq!(body["object"], "chat.completion");
    // A vague brief gets the question back; answering it (one assistant turn in the
    // conversation) makes images without asking again.
    let vague = json!({"model": "atelier-agent", "messages": [{"role": "user", "content": "something nice"}]});
    let body: Value = http()
        .post(server.url("/v1/chat/completions"))
        .json(&vague)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let question = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        question.starts_with("What should the image show?"),
        "{question}"
    );
    assert_eq!(body["atelier"]["question"], true);
    let answered = json!({"model": "atelier-agent", "brand": "solstice", "messages": [
        {"role": "user", "content": "something nice"},
        {"role": "assistant", "content": question},
        {"role": "user", "content": "a sunrise"}]});
    let body: Value = http()
        .post(server.url("/v1/chat/completions"))
        .json(&answered)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["atelier"]["images"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{body}"
    );

    // Streaming: server-sent chunks, then [DONE].
    let mut stream_req = chat.clone();
    stream_req["stream"] = json!(true);
    let text = http()
        .post(server.url("/v1/chat/completions"))
        .json(&stream_req)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let chunks: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(chunks.last(), Some(&"[DONE]"), "{text}");
    let mut content = String::new();
    for c in &chunks[..chunks.len() - 1] {
        let v: Value = serde_json::from_str(c).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        content.push_str(v["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert!(content.contains("Here is a warm, calm image"), "{content}");
    assert!(content.contains("/v1/artifacts/"), "{content}");

    for (bad, param) in [
        (
            json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            json!({"model": "atelier-agent", "messages": []}),
            "messages",
        ),
        (
            json!({"model": "atelier-agent", "messages": [{"role": "wizard", "content": "x"}]}),
            "messages[0].role",
        ),
        (
            json!({"model": "atelier-agent", "messages": [{"role": "user", "content": "x"}], "tempreature": 1}),
            "tempreature",
        ),
    ] {
        let r = http()
            .post(server.url("/v1/chat/completions"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_lets_the_running_brief_finish() {
    let server = TestServer::start(
        Arc::new(scripted(Duration::from_millis(400))),
        agent_config(),
        server_config(),
    )
    .await;
    let id = server.create_session(json!({"brand": "solstice"})).await;
    let mut c = server.ws(&id, 0).await;
    c.send(
        json!({"type": "message", "text": "A warm autumn post: a sun rising over a coffee cup"}),
    )
    .await;
    c.until("user").await;
    server.begin_shutdown();
    let e = c.until("error").await;
    assert_eq!(e["code"], "shutting_down");
    server.stop().await;
    // The brief finished within the grace period and its session was saved as done.
    use atelier_agent::SessionStore;
    let sessions = server.sessions.as_ref().unwrap();
    let ids = sessions.ids();
    assert_eq!(ids.len(), 1);
    let saved = sessions.load(&ids[0]).await.unwrap().unwrap();
    assert_eq!(
        saved.phase,
        atelier_agent::Phase::Done,
        "{:?}",
        saved.failure
    );
    // New work is refused with 503 while shutting down; after it, nothing listens.
    assert!(http().get(server.url("/healthz")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_waiting_for_its_user_does_not_hold_up_the_others() {
    // One model call at a time, and the first session sits on its question.
    let config = atelier_web::server::ServerConfig {
        max_running: 1,
        ..server_config()
    };
    let server =
        TestServer::start(Arc::new(scripted(Duration::ZERO)), agent_config(), config).await;
    let waiting = server.create_session(json!({"brand": "solstice"})).await;
    let mut a = server.ws(&waiting, 0).await;
    a.send(json!({"type": "message", "text": "something for the summer"}))
        .await;
    a.until("question").await;
    let other = server.create_session(json!({"brand": "solstice"})).await;
    let mut b = server.ws(&other, 0).await;
    b.send(
        json!({"type": "message", "text": "A warm autumn post: a sun rising over a coffee cup"}),
    )
    .await;
    b.until("final").await;
    // The first one still gets its answer through.
    a.send(json!({"type": "answer", "text": "a coffee cup"}))
        .await;
    a.until("final").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eval_harness_runs_a_suite_over_the_websocket_protocol() {
    use atelier_evals::runner::{RunOptions, run_suite};
    use atelier_evals::server::Server;

    let server = server().await;
    // The suite's kits: an example brand the server holds, and one it does not.
    let kits = tempfile::tempdir().unwrap();
    let examples = support::common::repo().join("examples/brands");
    for (from, to) in [("solstice", "solstice"), ("voltline", "ghost")] {
        copy_dir(&examples.join(from), &kits.path().join(to));
    }
    let suite = atelier_evals::Suite::parse(
        r#"
name = "over-ws"
brands = "."

[[case]]
id = "clear"
brief = "A warm autumn post: a sun rising over a coffee cup"
brand = "solstice"
[case.expect]
asks = false
palette = "brand"
text = ["Autumn"]

[[case]]
id = "vague"
brief = "something for the summer"
brand = "solstice"
answers = ["a coffee cup"]
[case.expect]
asks = true

[[case]]
id = "unknown-brand"
brief = "A scooter."
brand = "ghost"
"#,
        &kits.path().join("suite.toml"),
    )
    .unwrap();
    let target = Server::connect(&server.url("")).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out: out.path().to_path_buf(),
        compute_usd_per_hour: 0.0,
        case_timeout: Duration::from_secs(120),
        critics: atelier_tools::critique::Critics {
            safety: Some(support::common::nsfw()),
            alignment: None,
        },
    };
    let results = run_suite(&suite, &target, &options, |_, _| {})
        .await
        .unwrap();
    assert_eq!(results.setup.mode, "server");
    assert!(
        results.setup.image_model.contains("tiny"),
        "{:?}",
        results.setup
    );

    let [clear, vague, unknown] = &results.cases[..] else {
        panic!("three cases expected")
    };
    assert_eq!(clear.status, "done", "{:?}", clear.error);
    assert!(!clear.scores.asked);
    assert!(!clear.images.is_empty() && !clear.delivered.is_empty());
    for image in &clear.images {
        assert!(
            out.path().join(&image.file).is_file(),
            "downloaded {}",
            image.file
        );
        // Every generated image was critiqued; a delivered image resized for the channel is
        // the critiqued one at another size.
        assert!(
            image.post_processed || !image.checks.is_empty(),
            "critique checks recorded for {}",
            image.id
        );
    }
    assert!(clear.images.iter().any(|i| !i.checks.is_empty()));
    assert!(clear.scores.metrics["palette"].value.is_some());
    // Over the protocol the plan is not visible: said, not guessed.
    assert_eq!(clear.scores.metrics["headline"].value, None);
    assert!(
        clear.scores.metrics["headline"]
            .note
            .contains("not measured")
    );
    let steps: Vec<&str> = clear.steps.iter().map(|s| s.step.as_str()).collect();
    assert!(steps.contains(&"tool:generate_image"), "{steps:?}");

    assert_eq!(vague.status, "done", "{:?}", vague.error);
    assert!(vague.scores.asked);
    assert_eq!(vague.questions[0].answer.as_deref(), Some("a coffee cup"));

    // The server does not know `ghost`: the refused session is recorded with the server's
    // reason, and the run went on.
    assert_eq!(unknown.status, "error");
    let why = unknown.error.as_deref().unwrap_or_default();
    assert!(why.contains("ghost") && why.contains("400"), "{why}");
    let d = results.summary.decisions.as_ref().unwrap();
    assert_eq!((d.tp, d.fn_, d.fp), (1, 0, 0));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The OpenAI-compatible images backend (async-openai) round-trips against Atelier's own
/// `/v1/images/generations`: with the extensions it gets the same pixels as the model in
/// process for the same seed, in both response formats; the server's refusal comes back with
/// its reason; img2img and requests outside the configured sizes are refused before sending;
/// cancellation ends the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_images_backend_round_trips_against_atelier_own_endpoint() {
    use atelier_inference::diffusion::openai::{OpenAiImages, OpenAiImagesConfig, ResponseFormat};
    use atelier_inference::diffusion::{ImageGenerator, ImageRequest, InitImage};
    use std::sync::atomic::{AtomicU32, Ordering};

    let server = server().await;
    let config = |response_format| OpenAiImagesConfig {
        base_url: server.url("/v1"),
        api_key: String::new(),
        model: "atelier-tiny".into(),
        response_format,
        extensions: true,
        min_side: 64,
        max_side: 512,
        multiple_of: 64,
    };
    let remote = OpenAiImages::new(config(ResponseFormat::B64Json)).unwrap();
    assert_eq!(remote.name(), "atelier-tiny");
    let mut request = ImageRequest::new("an orange circle on a cream ground");
    (request.width, request.height) = (64, 64);
    request.count = 2;
    request.seed = 7;
    request.steps = 3;
    request.guidance = agent_config().guidance;
    let arrived = Arc::new(AtomicU32::new(0));
    let counter = arrived.clone();
    let got = remote
        .generate(
            request.clone(),
            Some(Box::new(move |p| {
                assert_eq!((p.step, p.steps), (1, 1));
                counter.fetch_add(1, Ordering::SeqCst);
            })),
        )
        .await
        .unwrap();
    assert_eq!(
        arrived.load(Ordering::SeqCst),
        2,
        "one progress event per image"
    );
    assert_eq!((got.model.as_str(), got.steps), ("atelier-tiny", 3));
    let local = support::common::tiny()
        .generate(request.clone(), None)
        .await
        .unwrap();
    assert_eq!(got.images.len(), 2);
    for (a, b) in got.images.iter().zip(&local.images) {
        assert_eq!(a.seed, b.seed);
        assert!(
            a.image == b.image,
            "seed {}: the service's pixels differ",
            a.seed
        );
    }
    let via_url = OpenAiImages::new(config(ResponseFormat::Url))
        .unwrap()
        .generate(request.clone(), None)
        .await
        .unwrap();
    assert!(
        via_url.images[0].image == local.images[0].image,
        "links give the same pixels"
    );

    // The service's own refusal, with its reason.
    let unknown = OpenAiImages::new(OpenAiImagesConfig {
        model: "dall-e-9".into(),
        ..config(ResponseFormat::B64Json)
    })
    .unwrap();
    let err = unknown
        .generate(request.clone(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&server.url("/v1")) && err.contains("unknown image model `dall-e-9`"),
        "{err}"
    );
    // Refused before sending: outside the configured sizes, and img2img.
    let mut big = request.clone();
    big.width = 1024;
    let err = remote.generate(big, None).await.unwrap_err().to_string();
    assert!(err.contains("width") && err.contains("64..=512"), "{err}");
    let mut edit = request.clone();
    edit.init = Some(InitImage {
        image: local.images[0].image.clone(),
        strength: 0.5,
    });
    let err = remote.generate(edit, None).await.unwrap_err().to_string();
    assert!(err.contains("init") && err.contains("img2img"), "{err}");
    // Configuration errors name the setting.
    let err = OpenAiImages::new(OpenAiImagesConfig {
        base_url: "localhost:8080".into(),
        ..config(ResponseFormat::B64Json)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("base_url") && err.contains("http://"), "{err}");
    // Cancelled: the request ends with Cancelled, not an answer.
    let cancelled = request.clone();
    cancelled.cancel.cancel();
    let err = remote.generate(cancelled, None).await.unwrap_err();
    assert!(matches!(err, atelier_inference::Error::Cancelled), "{err}");
    server.stop().await;
}
