//! `atelier chat`: one question, the answer streamed to stdout.

use std::io::Write;

use anyhow::Context;
use atelier_inference::llm::{ChatDelta, ChatRequest, FinishReason, Message, validate_against};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cli::ChatArgs;
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: ChatArgs) -> anyhow::Result<()> {
    let schema = match &args.schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the schema file {}", path.display()))?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("the schema file {} is not valid JSON", path.display()))?;
            jsonschema::validator_for(&schema).map_err(|e| {
                anyhow::anyhow!(
                    "the schema file {} is not a valid JSON schema: {e}",
                    path.display()
                )
            })?;
            Some(schema)
        }
        None => None,
    };
    let model = super::chat_model(settings, args.model.as_deref(), 1).await?;

    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(Message::system(system.clone()));
    } else if schema.is_some() {
        messages.push(Message::system(
            "Answer with one JSON value that follows the requested structure.",
        ));
    }
    messages.push(Message::user(args.text.clone()));
    let cancel = CancellationToken::new();
    let mut request = ChatRequest::new(messages)
        .max_tokens(args.max_tokens)
        .temperature(args.temperature)
        .seed(args.seed)
        .cancel_token(cancel.clone());
    request.schema = schema.clone();
    request.validate()?;

    // Ctrl-C stops generation; what was generated so far stays printed.
    tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        }
    });

    let mut stream = model.stream(request).await?;
    let mut stdout = std::io::stdout().lock();
    let mut text = String::new();
    let mut done = None;
    while let Some(item) = stream.next().await {
        match item? {
            ChatDelta::Text(delta) => {
                if schema.is_none() {
                    stdout.write_all(delta.as_bytes())?;
                    stdout.flush()?;
                }
                text.push_str(&delta);
            }
            ChatDelta::Done {
                finish_reason,
                usage,
            } => done = Some((finish_reason, usage)),
        }
    }
    let (finish, usage) = done.context("the model stopped without finishing its answer")?;
    if let Some(schema) = &schema {
        if finish != FinishReason::Stop {
            let shown: String = text.chars().take(300).collect();
            anyhow::bail!(
                "the answer ended early ({finish:?}) after {} tokens, before the JSON value was complete; \
                 raise --max-tokens. It began: {shown}",
                usage.completion_tokens
            );
        }
        let value = validate_against(schema, &text)?;
        writeln!(stdout, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(stdout)?;
    }
    if args.stats {
        let rate = |tokens: u32, us: u64| {
            if us == 0 {
                0.0
            } else {
                tokens as f64 * 1e6 / us as f64
            }
        };
        eprintln!(
            "[{}] prompt {} tokens ({} cached, {:.1} tok/s), generated {} tokens ({:.1} tok/s), finish: {:?}",
            model.name(),
            usage.prompt_tokens,
            usage.cached_tokens,
            rate(usage.prompt_tokens - usage.cached_tokens, usage.prompt_us),
            usage.completion_tokens,
            rate(usage.completion_tokens, usage.completion_us),
            finish
        );
    }
    if finish == FinishReason::Cancelled {
        anyhow::bail!("cancelled");
    }
    Ok(())
}
