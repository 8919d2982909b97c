//! The server on the real default chat model (Qwen2.5-Coder-0.5B in llama.cpp): a brief over
//! the WebSocket protocol is asked about when the model finds it vague, answered with a quick
//! reply, and ends in images served as artifacts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::{TestServer, http, server_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vague_brief_over_websocket_on_the_real_model_ends_in_images() {
    let llm = tokio::task::spawn_blocking(support::common::llm)
        .await
        .unwrap();
    let agent = atelier_agent::AgentConfig {
        width: 64,
        height: 64,
        steps: 8,
        max_iterations: 2,
        max_variants: 2,
        max_images: 4,
        time_budget: Duration::from_secs(240),
        ..atelier_agent::AgentConfig::default()
    };
    let server = TestServer::start(llm, agent, server_config()).await;
    let id = server.create_session(json!({"brand": "solstice"})).await;
    let mut c = server.ws(&id, 0).await;
    c.send(json!({"type": "message", "text": "make something for the summer"}))
        .await;
    let mut asked = false;
    let fin = loop {
        let m = c.next().await.expect("the server closed mid-brief");
        match m["type"].as_str().unwrap() {
            "question" => {
                asked = true;
                let q = &m["question"];
                let reply = q["choices"][0]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| "a coffee cup on a sunny table".into());
                c.send(json!({"type": "answer", "question_id": q["id"], "text": reply}))
                    .await;
            }
            "final" => break m,
            "error" if m["fatal"] == true => panic!("the brief failed: {m}"),
            _ => {}
        }
    };
    println!("asked: {asked}; final: {fin}");
    let images = fin["images"].as_array().unwrap();
    assert!(!images.is_empty(), "{fin}");
    assert!(!fin["message"].as_str().unwrap().trim().is_empty());
    for image in images {
        let r = http()
            .get(server.url(image["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let end = c.until_finished().await;
    assert_eq!(end["state"]["phase"], "done", "{end}");
    server.stop().await;
}
