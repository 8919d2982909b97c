//! A scripted chat model: answers come from a function of the decision being asked, and every
//! request is recorded. For testing the agent's control flow (every state, budgets,
//! cancellation, retries, restarts) without model compute; the real model is tested too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_inference::llm::{ChatDelta, ChatModel, ChatRequest, ChatStream, FinishReason, Usage};

/// Which decision a request asks for, from its schema.
pub fn decision_of(request: &ChatRequest) -> &'static str {
    let props = request
        .schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.as_object());
    match props {
        Some(p) if p.contains_key("contradiction") => "understand",
        Some(p) if p.contains_key("subject") => "plan",
        Some(p) if p.contains_key("change") => "refine",
        Some(p) if p.contains_key("alt_text") => "present",
        _ => "other",
    }
}

type Script = dyn Fn(&'static str, &ChatRequest) -> atelier_inference::Result<String> + Send + Sync;

/// A [`ChatModel`] that answers from a script.
#[derive(Clone)]
pub struct ScriptedModel {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
    delay: Duration,
}

impl std::fmt::Debug for ScriptedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedModel")
            .field("requests", &self.requests().len())
            .finish_non_exhaustive()
    }
}

impl ScriptedModel {
    /// Answer each request with `script(decision, request)`.
    pub fn new(
        script: impl Fn(&'static str, &ChatRequest) -> atelier_inference::Result<String>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        ScriptedModel {
            script: Arc::new(script),
            requests: Arc::new(Mutex::new(Vec::new())),
            delay: Duration::ZERO,
        }
    }

    /// Take this long before answering (to cancel mid-answer).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The decisions asked so far, in order.
    pub fn decisions(&self) -> Vec<&'static str> {
        self.requests().iter().map(decision_of).collect()
    }
}

#[async_trait::async_trait]
impl ChatModel for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, request: ChatRequest) -> atelier_inference::Result<ChatStream> {
        request.validate()?;
        if let Ok(mut r) = self.requests.lock() {
            r.push(request.clone());
        }
        if !self.delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(self.delay) => {}
                () = request.cancel.cancelled() => return Err(atelier_inference::Error::Cancelled),
            }
        }
        let text = (self.script)(decision_of(&request), &request)?;
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
            ..Usage::default()
        };
        let items = vec![
            Ok(ChatDelta::Text(text)),
            Ok(ChatDelta::Done {
                finish_reason: FinishReason::Stop,
                usage,
            }),
        ];
        Ok(Box::pin(futures::stream::iter(items)))
    }
}
