//! `atelier brief`: one agent session from the terminal, events printed live.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use atelier_agent::{
    Agent, AgentEvent, DirImageStore, MemorySessionStore, Phase, SessionIo, Toolbox, UserInput,
};
use atelier_tools::brand::Ingestor;

use crate::cli::BriefArgs;
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: BriefArgs) -> anyhow::Result<()> {
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
        Arc::new(MemorySessionStore::new()),
        settings.agent.clone(),
    )?;
    let mut session = agent.start(&tenant, &args.text, args.brand.clone()).await?;
    let (mut io, mut events, inputs) = SessionIo::channel(256);
    let cancel = io.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
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
                        UserInput::Answer { text } => println!("  > {text}"),
                        _ => println!("  > (go on with assumptions)"),
                    }
                }
                let _ = inputs.send(input).await;
            }
        }
    });
    agent.run(&mut session, &mut io).await?;
    drop(io);
    printer.await.context("event printer failed")?;
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
            println!("{line}");
        }
        return;
    }
    match event {
        AgentEvent::Status { detail, .. } => println!("· {detail}"),
        AgentEvent::Message { text } => println!("{text}"),
        AgentEvent::Question { text, choices, .. } => {
            println!("? {text}");
            if !choices.is_empty() {
                println!("  choices: {}", choices.join(" | "));
            }
        }
        AgentEvent::ToolCall { tool, .. } => println!("→ {tool}"),
        AgentEvent::ToolResult {
            tool, ok, summary, ..
        } => {
            println!("{} {tool}: {summary}", if *ok { "✓" } else { "✗" })
        }
        AgentEvent::Progress { .. } | AgentEvent::MessageDelta { .. } => {}
        AgentEvent::Image {
            image,
            score,
            passed,
            ..
        } => println!(
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
                println!("    ✗ {}: {}", c.name, c.detail);
            }
            for m in not_measured {
                if unmeasured.insert(m.name.clone()) {
                    println!("    - {}: not measured ({})", m.name, m.reason);
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
        } => {
            println!();
            println!("{message}");
            println!("alt text: {alt_text}");
            for i in images {
                println!("image: {}", i.uri);
            }
            println!(
                "{} after {iterations} round(s)",
                if *passed {
                    "passed every check"
                } else {
                    "did not pass every check"
                }
            );
            if !citations.is_empty() {
                println!("guidelines applied: {}", citations.join("; "));
            }
            if !assumptions.is_empty() {
                println!("assumptions: {}", assumptions.join("; "));
            }
        }
        AgentEvent::Error { message, .. } => eprintln!("error: {message}"),
        AgentEvent::Cancelled => println!("cancelled"),
    }
}
