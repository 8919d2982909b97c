//! The server target: each case as a user of a running `atelier serve` would run it, over
//! HTTP and the WebSocket chat protocol v1 (`docs/protocol.md`). The protocol is read as the
//! documented JSON, not through the server's types, as any client would.

use std::path::Path;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use atelier_agent::{AgentEvent, ImageRef, Phase};
use atelier_tools::critique::Check;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::error::{Error, Result};
use crate::record::{QuestionRecord, Setup, TimedEvent, UsageRecord};
use crate::runner::{Answers, IMAGES_DIR, Target, Transcript};
use crate::suite::Case;

/// Largest image the harness downloads.
const MAX_IMAGE_BYTES: usize = 64 << 20;

/// A running Atelier server.
#[derive(Debug, Clone)]
pub struct Server {
    base: String,
    http: reqwest::Client,
    chat_model: String,
    image_model: String,
}

impl Server {
    /// Check that the server at `url` (e.g. `http://127.0.0.1:8080`) is ready and learn its
    /// models.
    pub async fn connect(url: &str) -> Result<Server> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::Run(format!(
                "--server `{url}`: give the server's http:// or https:// address"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Run(format!("HTTP client: {e}")))?;
        let ready: Value = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .map_err(|e| Error::Run(format!("{base}/readyz: {e}")))?
            .json()
            .await
            .map_err(|e| Error::Run(format!("{base}/readyz: not an Atelier server ({e})")))?;
        if ready["ready"] != Value::Bool(true) {
            return Err(Error::Run(format!("{base} is not ready: {ready}")));
        }
        let models = &ready["checks"]["models"];
        Ok(Server {
            chat_model: models["chat"].as_str().unwrap_or("unknown").to_string(),
            image_model: models["image"].as_str().unwrap_or("unknown").to_string(),
            base,
            http,
        })
    }

    async fn download(&self, url: &str, id: &str, run_dir: &Path) -> Result<()> {
        let path = run_dir.join(IMAGES_DIR).join(format!("{id}.png"));
        if path.is_file() {
            return Ok(());
        }
        let full = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let bytes = self
            .http
            .get(&full)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::Run(format!("downloading {full}: {e}")))?
            .bytes()
            .await
            .map_err(|e| Error::Run(format!("downloading {full}: {e}")))?;
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(Error::Run(format!(
                "{full}: {} bytes; the harness keeps images up to {MAX_IMAGE_BYTES}",
                bytes.len()
            )));
        }
        crate::record::write_atomic(&path, &bytes)
    }

    async fn create_session(&self, case: &Case) -> Result<String> {
        let mut body = json!({});
        if let Some(b) = &case.brand {
            body["brand"] = json!(b);
        }
        let response = self
            .http
            .post(format!("{}/v1/sessions", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Run(format!("creating a session: {e}")))?;
        let status = response.status();
        let value: Value = response
            .json()
            .await
            .map_err(|e| Error::Run(format!("creating a session: {e}")))?;
        if !status.is_success() {
            return Err(Error::Run(format!(
                "creating a session: {status}: {}",
                value["error"]["message"].as_str().unwrap_or("no message")
            )));
        }
        value["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Run(format!("creating a session: no id in {value}")))
    }
}

fn image_ref(v: &Value) -> Option<(ImageRef, String)> {
    let id = v["id"].as_str()?.to_string();
    let url = v["url"].as_str()?.to_string();
    Some((
        ImageRef {
            uri: format!("{IMAGES_DIR}/{id}.png"),
            id,
            width: v["width"].as_u64()? as u32,
            height: v["height"].as_u64()? as u32,
        },
        url,
    ))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl Target for Server {
    fn setup(&self) -> Setup {
        Setup {
            mode: "server".into(),
            server_url: Some(self.base.clone()),
            chat_model: self.chat_model.clone(),
            image_model: self.image_model.clone(),
            agent: json!("as configured on the server"),
            compute_usd_per_hour: 0.0,
        }
    }

    async fn run(&self, case: &Case, run_dir: &Path, timeout: Duration) -> Result<Transcript> {
        let started = Instant::now();
        let id = self.create_session(case).await?;
        let ws_url = format!(
            "{}/v1/sessions/{id}/ws",
            self.base.replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .map_err(|e| Error::Run(format!("connecting to {ws_url}: {e}")))?;
        let mut brief = json!({"type": "message", "text": case.brief});
        if let Some(b) = &case.brand {
            brief["brand"] = json!(b);
        }
        ws.send(Message::text(brief.to_string()))
            .await
            .map_err(|e| Error::Run(format!("sending the brief: {e}")))?;

        let mut answers = Answers::new(case);
        let mut t = Transcript {
            status: "failed".into(),
            ..Transcript::default()
        };
        let mut phase: Option<Phase> = None;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => {
                    let _ = ws.send(Message::text(r#"{"type":"cancel"}"#)).await;
                    t.error = Some(format!(
                        "the case ran past its {} s limit",
                        timeout.as_secs()
                    ));
                    break;
                }
                Ok(None) => {
                    t.error = Some("the server closed the connection".into());
                    break;
                }
                Ok(Some(Err(e))) => {
                    t.error = Some(format!("WebSocket: {e}"));
                    break;
                }
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(Message::Close(_)))) => {
                    t.error = Some("the server closed the connection".into());
                    break;
                }
                Ok(Some(Ok(_))) => continue,
            };
            let at_ms = started.elapsed().as_secs_f64() * 1000.0;
            let m: Value = serde_json::from_str(&frame)
                .map_err(|e| Error::Run(format!("the server sent bad JSON ({e}): {frame:.200}")))?;
            let mut push = |event: AgentEvent| t.events.push(TimedEvent { at_ms, event });
            match m["type"].as_str().unwrap_or_default() {
                "state" => {
                    let name = &m["state"]["phase"];
                    if let Ok(p) = serde_json::from_value::<Phase>(name.clone())
                        && phase != Some(p)
                    {
                        phase = Some(p);
                        push(AgentEvent::Status {
                            phase: p,
                            detail: m["state"]["detail"].as_str().unwrap_or_default().into(),
                        });
                    }
                    if name == "cancelled" {
                        t.status = "cancelled".into();
                        break;
                    }
                }
                "message" => push(AgentEvent::Message {
                    text: m["text"].as_str().unwrap_or_default().into(),
                }),
                "question" => {
                    let q = &m["question"];
                    let qid = q["id"].as_u64().unwrap_or(0) as u32;
                    let text = q["text"].as_str().unwrap_or_default().to_string();
                    let choices = strings(&q["choices"]);
                    push(AgentEvent::Question {
                        id: qid,
                        text: text.clone(),
                        choices: choices.clone(),
                    });
                    let input = answers.next_input();
                    let (reply, answer) = match input {
                        atelier_agent::UserInput::Answer { text } => (
                            json!({"type": "answer", "text": text, "question_id": qid}),
                            Some(text),
                        ),
                        _ => (json!({"type": "skip", "question_id": qid}), None),
                    };
                    t.questions.push(QuestionRecord {
                        text,
                        choices,
                        answer,
                    });
                    ws.send(Message::text(reply.to_string()))
                        .await
                        .map_err(|e| Error::Run(format!("answering: {e}")))?;
                }
                "tool" => {
                    let call = m["call_id"].as_u64().unwrap_or(0) as u32;
                    let tool = m["tool"].as_str().unwrap_or_default().to_string();
                    match m["status"].as_str() {
                        Some("started") => push(AgentEvent::ToolCall {
                            id: call,
                            tool,
                            args: Value::Null,
                        }),
                        Some(s) => push(AgentEvent::ToolResult {
                            id: call,
                            tool,
                            ok: s == "ok",
                            summary: m["summary"].as_str().unwrap_or_default().into(),
                            image: None,
                        }),
                        None => {}
                    }
                }
                "progress" => push(AgentEvent::Progress {
                    step: m["step"].as_u64().unwrap_or(0) as u32,
                    steps: m["steps"].as_u64().unwrap_or(0) as u32,
                    image: m["image"].as_u64().unwrap_or(0) as u32,
                    preview_png_base64: None,
                }),
                "image" => {
                    if let Some((image, url)) = image_ref(&m["image"]) {
                        self.download(&url, &image.id, run_dir).await?;
                        push(AgentEvent::Image {
                            image,
                            iteration: m["iteration"].as_u64().unwrap_or(0) as u32,
                            seed: m["seed"].as_u64().unwrap_or(0),
                            prompt: m["prompt"].as_str().unwrap_or_default().into(),
                            score: m["score"].as_f64().unwrap_or(0.0) as f32,
                            passed: m["passed"].as_bool().unwrap_or(false),
                        });
                    }
                }
                "critique" => push(AgentEvent::Critique {
                    image_id: m["image_id"].as_str().unwrap_or_default().into(),
                    passed: m["passed"].as_bool().unwrap_or(false),
                    score: m["score"].as_f64().unwrap_or(0.0) as f32,
                    checks: serde_json::from_value::<Vec<Check>>(m["checks"].clone())
                        .unwrap_or_default(),
                    not_measured: serde_json::from_value(m["not_measured"].clone())
                        .unwrap_or_default(),
                }),
                "final" => {
                    let mut images = Vec::new();
                    for v in m["images"].as_array().into_iter().flatten() {
                        if let Some((image, url)) = image_ref(v) {
                            self.download(&url, &image.id, run_dir).await?;
                            images.push(image);
                        }
                    }
                    push(AgentEvent::Final {
                        message: m["message"].as_str().unwrap_or_default().into(),
                        alt_text: m["alt_text"].as_str().unwrap_or_default().into(),
                        images,
                        passed: m["passed"].as_bool().unwrap_or(false),
                        assumptions: strings(&m["assumptions"]),
                        citations: strings(&m["citations"]),
                        iterations: m["iterations"].as_u64().unwrap_or(0) as u32,
                        stopped: m["stopped"].as_str().map(str::to_string),
                    });
                    t.status = "done".into();
                    break;
                }
                "error" if m["fatal"] == Value::Bool(true) => {
                    let message = m["message"].as_str().unwrap_or_default().to_string();
                    push(AgentEvent::Error {
                        message: message.clone(),
                        fatal: true,
                    });
                    t.error = Some(format!(
                        "{}: {message}",
                        m["code"].as_str().unwrap_or("error")
                    ));
                    break;
                }
                _ => {}
            }
        }
        let _ = ws.close(None).await;
        t.usage = UsageRecord {
            images: t
                .events
                .iter()
                .filter(|e| matches!(e.event, AgentEvent::Image { .. }))
                .count() as u32,
            ..UsageRecord::default()
        };
        t.duration_ms = started.elapsed().as_millis() as u64;
        Ok(t)
    }
}
