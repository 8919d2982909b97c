//! The OpenAI-compatible backend against a local server speaking the protocol on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use atelier_inference::Error;
use atelier_inference::llm::{
    ChatModel, ChatRequest, FinishReason, Message, OpenAiChatModel, OpenAiConfig, StructuredOutput,
};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use serde_json::{Value, json};

/// What the server saw of one request: path, authorization header, JSON body.
type SeenRequest = (String, Option<String>, Value);

#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<SeenRequest>>>,
}

/// Streams `{"headline": "Sun's out"}` in three chunks, then usage, then [DONE].
async fn completions(
    State(seen): State<Seen>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let body: Value = serde_json::from_str(&body).unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    seen.requests
        .lock()
        .unwrap()
        .push((uri.path().to_string(), auth, body));
    let chunk = |content: &str, finish: Option<&str>| {
        json!({
            "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "test-model",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
        })
    };
    let usage = json!({
        "id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "test-model", "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    });
    let events = [
        chunk("{\"headline\": ", None),
        chunk("\"Sun's out\"", None),
        chunk("}", Some("stop")),
        usage,
    ];
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!("data: {e}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], sse)
}

/// Answers by calling the requested function: its arguments arrive in two chunks.
async fn tool_call(State(seen): State<Seen>, uri: Uri, body: String) -> impl IntoResponse {
    let body: Value = serde_json::from_str(&body).unwrap();
    seen.requests
        .lock()
        .unwrap()
        .push((uri.path().to_string(), None, body));
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({
            "id": "c2", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        })
    };
    let events = [
        chunk(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                "function": {"name": "plan", "arguments": "{\"headline\": "}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Sun's out\"}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    let mut sse = String::new();
    for e in events {
        sse.push_str(&format!("data: {e}\n\n"));
    }
    sse.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], sse)
}

#[tokio::test]
async fn native_tool_calling_carries_the_schema_and_returns_the_arguments() {
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/chat/completions", post(tool_call))
        .with_state(seen.clone());
    let base = serve(router).await;
    let model = OpenAiChatModel::new(OpenAiConfig {
        base_url: format!("{base}/v1"),
        api_key: String::new(),
        model: "m".into(),
        structured: StructuredOutput::ToolCall,
    });
    let schema = json!({"title": "plan", "type": "object",
        "properties": {"headline": {"type": "string"}}, "required": ["headline"]});
    let response = model
        .complete(ChatRequest::new(vec![Message::user("A summer banner")]).schema(schema))
        .await
        .unwrap();
    assert_eq!(response.text, r#"{"headline": "Sun's out"}"#);
    assert_eq!(response.finish_reason, FinishReason::Stop);
    let requests = seen.requests.lock().unwrap();
    let body = &requests[0].2;
    assert!(body.get("response_format").is_none(), "{body}");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "plan");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["properties"]["headline"]["type"],
        "string"
    );
    assert_eq!(body["tool_choice"]["type"], "function");
    assert_eq!(body["tool_choice"]["function"]["name"], "plan");
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn custom_base_url_is_used_and_structured_output_requested() {
    let seen = Seen::default();
    let router = Router::new()
        .route("/custom/prefix/v1/chat/completions", post(completions))
        .with_state(seen.clone());
    let base = serve(router).await;
    let model = OpenAiChatModel::new(OpenAiConfig {
        base_url: format!("{base}/custom/prefix/v1"),
        api_key: "sk-test".into(),
        model: "test-model".into(),
        structured: StructuredOutput::ResponseFormat,
    });
    let schema = json!({"type": "object", "properties": {"headline": {"type": "string"}}, "required": ["headline"]});
    let response = model
        .complete(
            ChatRequest::new(vec![
                Message::system("JSON only"),
                Message::user("A summer banner"),
            ])
            .schema(schema)
            .max_tokens(64)
            .seed(5)
            .stop("###"),
        )
        .await
        .unwrap();
    assert_eq!(response.text, r#"{"headline": "Sun's out"}"#);
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage.prompt_tokens, 12);
    assert_eq!(response.usage.completion_tokens, 3);

    let requests = seen.requests.lock().unwrap();
    assert_eq!(
        requests.len(),
        1,
        "exactly one request reached the custom base URL"
    );
    let (path, auth, body) = &requests[0];
    assert_eq!(path, "/custom/prefix/v1/chat/completions");
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["max_completion_tokens"], 64);
    assert_eq!(body["seed"], 5);
    assert_eq!(body["stop"], json!(["###"]));
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "A summer banner");
    assert_eq!(body["response_format"]["type"], "json_schema");
    let sent_schema = &body["response_format"]["json_schema"]["schema"];
    assert_eq!(sent_schema["properties"]["headline"]["type"], "string");
    assert!(
        sent_schema["properties"]["headline"]["maxLength"].is_u64(),
        "strings are capped"
    );
}

#[tokio::test]
async fn server_errors_become_typed_errors() {
    let router = Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            (
                StatusCode::UNAUTHORIZED,
                r#"{"error": {"message": "bad key", "type": "auth"}}"#,
            )
        }),
    );
    let base = serve(router).await;
    let model = OpenAiChatModel::new(OpenAiConfig {
        base_url: format!("{base}/v1"),
        api_key: "wrong".into(),
        model: "m".into(),
        structured: StructuredOutput::default(),
    });
    let err = model
        .complete(ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err}");
    assert!(
        err.to_string().contains(&base),
        "the error names the server: {err}"
    );
}

#[tokio::test]
async fn schema_violations_from_a_server_are_caught() {
    let router = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(Seen::default());
    let base = serve(router).await;
    let model = OpenAiChatModel::new(OpenAiConfig {
        base_url: format!("{base}/v1"),
        api_key: String::new(),
        model: "m".into(),
        structured: StructuredOutput::ResponseFormat,
    });
    let schema = json!({"type": "object", "properties": {"headline": {"type": "integer"}}});
    let err = model
        .complete(ChatRequest::new(vec![Message::user("x")]).schema(schema))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SchemaViolation(_)), "{err}");
}

/// Answers /v1/embeddings with vectors [index+1, 1, 0, …] (4 dims), in reverse order.
async fn embeddings(
    State(seen): State<Seen>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let body: Value = serde_json::from_str(&body).unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let n = body["input"].as_array().unwrap().len();
    seen.requests
        .lock()
        .unwrap()
        .push((uri.path().to_string(), auth, body));
    let data: Vec<Value> = (0..n)
        .rev()
        .map(|i| json!({"object": "embedding", "index": i, "embedding": [i as f32 + 1.0, 1.0, 0.0, 0.0]}))
        .collect();
    axum::Json(
        json!({"object": "list", "model": "embed-test", "data": data,
        "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_come_back_in_order_and_normalised() {
    use atelier_inference::embed::{Embedder, OpenAiEmbedder};
    let seen = Seen::default();
    let router = Router::new()
        .route("/v1/embeddings", post(embeddings))
        .with_state(seen.clone());
    let base = serve(router).await;
    let config = OpenAiConfig {
        base_url: format!("{base}/v1"),
        api_key: "sk-e".into(),
        model: "embed-test".into(),
        structured: StructuredOutput::default(),
    };
    let embedder = OpenAiEmbedder::new(config.clone(), 4).unwrap();
    let texts: Vec<String> = (0..300).map(|i| format!("text {i}")).collect();
    let vectors = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(vectors.len(), 300);
    for (i, v) in vectors.iter().enumerate() {
        let k = (i % 256) as f32 + 1.0; // two requests: 256 + 44
        let norm = (k * k + 1.0).sqrt();
        assert!(
            (v[0] - k / norm).abs() < 1e-6 && (v[1] - 1.0 / norm).abs() < 1e-6,
            "vector {i}: {v:?}"
        );
    }
    {
        let requests = seen.requests.lock().unwrap();
        assert_eq!(requests.len(), 2, "batched into 256 + 44");
        assert_eq!(requests[0].1.as_deref(), Some("Bearer sk-e"));
        assert_eq!(requests[0].2["model"], "embed-test");
    }

    // A dimension mismatch is a typed error naming the model; empty text is refused up front.
    let wrong = OpenAiEmbedder::new(config.clone(), 8).unwrap();
    let err = tokio::task::spawn_blocking(move || wrong.embed(&["a"]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, Error::Api { .. }) && err.to_string().contains("4-dimensional"),
        "{err}"
    );
    let e = OpenAiEmbedder::new(config, 4).unwrap();
    let err = tokio::task::spawn_blocking(move || e.embed(&["ok", "  "]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("text 1 is empty"), "{err}");
}
