//! `atelier brief`: one agent session from the terminal, events printed live.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use atelier_agent::{Agent, AgentEvent, DirImageStore, Phase, SessionIo, Toolbox, UserInput};
use atelier_tools::brand::Ingestor;

use crate::cli::BriefArgs;

/// Print a line to stdout, ignoring a closed pipe (`atelier brief --json | head` must not
/// panic the event printer and with it the session).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: BriefArgs) -> anyhow::Result<()> {
    // Open the store first: a bad database setting fails before any model loads.
    let sessions = Arc::new(crate::sessions::DbSessionStore::open(settings).await?);
    let tenant = args
        .tenant
        .clone()
        .unwrap_or_else(|| settings.brands.default_tenant.clone());
    let llm = super::chat_model(settings, args.model.as_deref(), 1).await?;
    let generator = super::image_generator(settings, &args.image_model, None).await?;
    let brands = if args.no_brands {
        None
    } else {
        let embedder = super::embedder(settings).await?;
        let store = super::brand_store(settings, embedder.dimensions()).await?;
        Some(Ingestor::new(store, embedder))
    };
    let images = Arc::new(
        DirImageStore::new(&args.out)
            .with_context(|| format!("preparing {}", args.out.display()))?,
    );
    let agent = Agent::new(
        llm,
        Toolbox {
            generator,
            brands,
            images,
            critics: super::critics(settings).await?,
            upscale: super::optional_upscalers(settings).await?,
        },
        sessions,
        settings.agent.clone(),
    )?;
    let mut session = match (&args.resume, &args.text) {
        (Some(id), _) => {
            let session = agent.resume(id).await?.with_context(|| {
                format!("no stored session `{id}` (the id `atelier brief` printed when it started)")
            })?;
            anyhow::ensure!(
                !session.phase.is_terminal(),
                "session `{id}` has already ended ({}); nothing to resume",
                crate::server::hub::phase_name(session.phase)
            );
            eprintln!(
                "resuming session {id} at {}",
                crate::server::hub::phase_name(session.phase)
            );
            session
        }
        (None, Some(text)) => agent.start(&tenant, text, args.brand.clone()).await?,
        (None, None) => anyhow::bail!("give a brief, or --resume SESSION_ID"),
    };
    eprintln!(
        "session {} (continue it later with `atelier brief --resume {}`)",
        session.id, session.id
    );
    let (mut io, mut events, inputs) = SessionIo::channel(256);
    // Ctrl-C stops the process but not the session: it stays stored as of its last step.
    let interrupt = io.interrupt.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });

    let json = args.json;
    let mut answers = args.answers.clone().into_iter();
    let printer = tokio::spawn(async move {
        let interactive = std::io::stdin().is_terminal() && !json;
        // Checks that could not run are said once, not after every critique.
        let mut unmeasured = std::collections::HashSet::new();
        while let Some(event) = events.recv().await {
            print_event(&event, json, &mut unmeasured);
            if let AgentEvent::Question { .. } = &event {
                let input = match answers.next() {
                    Some(a) if a == "-" => UserInput::JustGo,
                    Some(a) => UserInput::Answer { text: a },
                    None if interactive => read_answer().await,
                    None => UserInput::JustGo,
                };
                if !json {
                    match &input {
                        UserInput::Answer { text } => out!("  > {text}"),
                        _ => out!("  > (go on with assumptions)"),
                    }
                }
                let _ = inputs.send(input).await;
            }
        }
    });
    let result = agent.run(&mut session, &mut io).await;
    drop(io);
    printer.await.context("event printer failed")?;
    if let Err(atelier_agent::Error::Interrupted) = result {
        anyhow::bail!(
            "stopped; the session is saved: continue it with `atelier brief --resume {}`",
            session.id
        );
    }
    result?;
    match session.phase {
        Phase::Done => Ok(()),
        Phase::Cancelled => anyhow::bail!("cancelled"),
        _ => anyhow::bail!(
            "the session failed: {}",
            session.failure.unwrap_or_else(|| "unknown reason".into())
        ),
    }
}

async fn read_answer() -> UserInput {
    tokio::task::spawn_blocking(|| {
        print!("  your answer (empty: go on) > ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(n) if n > 0 && !line.trim().is_empty() => UserInput::Answer {
                text: line.trim().to_string(),
            },
            _ => UserInput::JustGo,
        }
    })
    .await
    .unwrap_or(UserInput::JustGo)
}

fn print_event(event: &AgentEvent, json: bool, unmeasured: &mut std::collections::HashSet<String>) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            out!("{line}");
        }
        return;
    }
    match event {
        AgentEvent::Status { detail, .. } => out!("· {detail}"),
        AgentEvent::Message { text } => out!("{text}"),
        AgentEvent::Question { text, choices, .. } => {
            out!("? {text}");
            if !choices.is_empty() {
                out!("  choices: {}", choices.join(" | "));
            }
        }
        AgentEvent::ToolCall { tool, .. } => out!("→ {tool}"),
        AgentEvent::ToolResult {
            tool, ok, summary, ..
        } => {
            out!("{} {tool}: {summary}", if *ok { "✓" } else { "✗" })
        }
        AgentEvent::Progress { .. } | AgentEvent::MessageDelta { .. } => {}
        AgentEvent::Image {
            image,
            score,
            passed,
            ..
        } => out!(
            "  image {} score {score:.2} {}",
            image.uri,
            if *passed { "passed" } else { "failed" }
        ),
        AgentEvent::Critique {
            checks,
            not_measured,
            ..
        } => {
            for c in checks.iter().filter(|c| !c.passed) {
                out!("    ✗ {}: {}", c.name, c.detail);
            }
            for m in not_measured {
                if unmeasured.insert(m.name.clone()) {
                    out!("    - {}: not measured ({})", m.name, m.reason);
                }
            }
        }
        AgentEvent::Final {
            message,
            alt_text,
            images,
            passed,
            assumptions,
            citations,
            iterations,
            stopped,
        } => {
            out!();
            out!("{message}");
            out!("alt text: {alt_text}");
            for i in images {
                out!("image: {}", i.uri);
            }
            out!(
                "{} after {iterations} round(s)",
                if *passed {
                    "passed every check"
                } else {
                    "did not pass every check"
                }
            );
            if let Some(reason) = stopped {
                out!("stopped early: {reason}");
            }
            if !citations.is_empty() {
                out!("guidelines applied: {}", citations.join("; "));
            }
            if !assumptions.is_empty() {
                out!("assumptions: {}", assumptions.join("; "));
            }
        }
        AgentEvent::Error { message, .. } => eprintln!("error: {message}"),
        AgentEvent::Cancelled => out!("cancelled"),
    }
}
