//! `atelier bench agent`: the agent's decisions per chat model on labelled briefs;
//! `atelier bench agent-overhead`: what one turn costs besides model compute.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use atelier_agent::testing::ScriptedModel;
use atelier_agent::{
    Agent, AgentConfig, AgentEvent, DirImageStore, MemorySessionStore, Phase, Session, SessionIo,
    Toolbox,
};
use atelier_inference::diffusion::{
    GeneratedImage, Generation, ImageGenerator, ImageRequest, Limits, ProgressFn,
};
use atelier_inference::embed::Embedder;
use atelier_tools::brand::{BrandKit, BrandStore, EdgeStore, Ingestor};
use atelier_tools::retrieve::{RetrieveArgs, retrieve_brand_guidelines};
use tokio_util::sync::CancellationToken;

use super::bench::{median, publish};
use crate::cli::{BenchAgentArgs, BenchAgentOverheadArgs};
use crate::settings::Settings;

use super::bench::percentile;

/// A brief labelled with whether the agent should ask about it.
struct LabelledBrief {
    text: String,
    brand: String,
    ask: bool,
}

/// The labelled, branded cases of an eval suite.
fn labelled_briefs(suite: &str) -> anyhow::Result<Vec<LabelledBrief>> {
    let suite = atelier_evals::Suite::load(suite)?;
    Ok(suite
        .cases
        .into_iter()
        .filter_map(|c| {
            Some(LabelledBrief {
                ask: c.expect.asks?,
                brand: c.brand?,
                text: c.brief,
            })
        })
        .collect())
}

/// An embedded store under `dir` holding the example brands. The store flushes when its last
/// handle drops, so `dir` must outlive every clone of the returned ingestor.
async fn example_brands(embedder: Arc<dyn Embedder>, dir: &Path) -> anyhow::Result<Ingestor> {
    let store: Arc<dyn BrandStore> =
        Arc::new(EdgeStore::open(&dir.join("brands"), embedder.dimensions()).await?);
    let ingestor = Ingestor::new(store, embedder);
    for name in ["solstice", "voltline"] {
        let kit = BrandKit::load(Path::new("examples/brands").join(name).as_path())
            .with_context(|| format!("loading examples/brands/{name} (run from the repository)"))?;
        ingestor.ingest("bench", &kit).await?;
    }
    Ok(ingestor)
}

struct Row {
    model: String,
    tp: u32,
    fp: u32,
    fn_: u32,
    correct: u32,
    plans_valid: u32,
    total: u32,
    seconds: Vec<f64>,
}

impl Row {
    fn f1(&self) -> (f64, f64, f64) {
        let p = f64::from(self.tp) / f64::from((self.tp + self.fp).max(1));
        let r = f64::from(self.tp) / f64::from((self.tp + self.fn_).max(1));
        let f1 = if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        };
        (f1, p, r)
    }
}

pub async fn decisions(settings: &Settings, args: BenchAgentArgs) -> anyhow::Result<()> {
    let mut briefs = labelled_briefs(&args.suite)?;
    if args.limit > 0 {
        briefs.truncate(args.limit);
    }
    anyhow::ensure!(
        !briefs.is_empty(),
        "suite `{}` has no case with a brand and an `asks` label",
        args.suite
    );

    // Declared first, dropped last: the store flushes into it when the ingestor goes.
    let store_dir = tempfile::tempdir()?;
    let embedder = super::embedder(settings).await?;
    let ingestor = example_brands(embedder, store_dir.path()).await?;
    let generator = Arc::new(super::tiny_generator(settings, "atelier-tiny", None).await?);
    let images = tempfile::tempdir()?;
    // Each brief's session as the agent would have it before deciding: brand and guidelines.
    let mut sessions = Vec::new();
    for b in &briefs {
        let mut s = Session::new("bench", "bench", &b.text, Some(b.brand.clone()));
        let r = retrieve_brand_guidelines(
            &ingestor,
            "bench",
            RetrieveArgs {
                brand: b.brand.clone(),
                query: b.text.clone(),
                top_k: settings.agent.top_k,
                kind: None,
            },
        )
        .await?;
        s.kit = Some(r.kit);
        s.passages = r.passages;
        sessions.push(s);
    }

    let mut rows = Vec::new();
    for name in &args.models {
        let llm = Arc::new(super::load_llama(settings, name, 1, Some(args.threads)).await?);
        let model_name = atelier_inference::llm::ChatModel::name(llm.as_ref()).to_string();
        let agent = Agent::new(
            llm,
            Toolbox {
                generator: generator.clone(),
                brands: Some(ingestor.clone()),
                images: Arc::new(DirImageStore::new(images.path())?),
                // The benchmark times the chat models' decisions; pixel safety is the same
                // fixed cost for every model.
                critics: Default::default(),
                upscale: None,
            },
            Arc::new(MemorySessionStore::new()),
            settings.agent.clone(),
        )?;
        let mut row = Row {
            model: model_name,
            tp: 0,
            fp: 0,
            fn_: 0,
            correct: 0,
            plans_valid: 0,
            total: 0,
            seconds: Vec::new(),
        };
        let cancel = CancellationToken::new();
        for (b, s) in briefs.iter().zip(&sessions) {
            let started = Instant::now();
            let asked = match agent.should_ask(s, &cancel).await {
                Ok(ask) => {
                    if let Some(why) = &ask {
                        eprintln!("  asks: {why:?}");
                    }
                    ask.is_some()
                }
                Err(e) => {
                    eprintln!("{}: understand failed: {e}", row.model);
                    false
                }
            };
            row.seconds.push(started.elapsed().as_secs_f64());
            match (asked, b.ask) {
                (true, true) => row.tp += 1,
                (true, false) => row.fp += 1,
                (false, true) => row.fn_ += 1,
                (false, false) => {}
            }
            if asked == b.ask {
                row.correct += 1;
            }
            let started = Instant::now();
            let valid = match agent.decide_plan(s, &cancel).await {
                Ok((plan, _)) => {
                    !plan.colours.is_empty() && plan.prompt.split_whitespace().count() >= 3
                }
                Err(e) => {
                    eprintln!("{}: plan failed: {e}", row.model);
                    false
                }
            };
            row.seconds.push(started.elapsed().as_secs_f64());
            row.plans_valid += u32::from(valid);
            row.total += 1;
            eprintln!(
                "{} [{}/{}] ask: expected {} got {asked}; plan valid {valid}",
                row.model,
                row.total,
                briefs.len(),
                b.ask
            );
        }
        rows.push(row);
    }

    let mut table = format!(
        "\n### Agent decisions per model ({}, {} briefs of suite `{}`, {} llama.cpp threads)\n\n\
         | model | ask F1 | precision | recall | accuracy | valid plans | s per decision (p50) |\n\
         |---|---|---|---|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        briefs.len(),
        args.suite,
        args.threads
    );
    for row in &rows {
        let (f1, p, r) = row.f1();
        table.push_str(&format!(
            "| {} | {f1:.2} | {p:.2} | {r:.2} | {:.0}% | {:.0}% | {:.2} |\n",
            row.model,
            100.0 * f64::from(row.correct) / f64::from(row.total.max(1)),
            100.0 * f64::from(row.plans_valid) / f64::from(row.total.max(1)),
            median(row.seconds.clone()),
        ));
    }
    publish(&table, args.markdown.as_deref())
}

/// Hands back one fixed image instantly: sessions then cost only the service's own work.
struct Replay(image::RgbImage);

#[async_trait::async_trait]
impl ImageGenerator for Replay {
    fn name(&self) -> &str {
        "replay"
    }
    fn limits(&self) -> Limits {
        Limits {
            min_side: 64,
            max_side: 64,
            multiple_of: 64,
            square_only: true,
            max_steps: 64,
            max_count: 8,
        }
    }
    async fn generate(
        &self,
        request: ImageRequest,
        _progress: Option<ProgressFn>,
    ) -> atelier_inference::Result<Generation> {
        Ok(Generation {
            images: (0..request.count)
                .map(|i| GeneratedImage {
                    image: self.0.clone(),
                    seed: request.seed + u64::from(i),
                })
                .collect(),
            model: "replay".into(),
            steps: request.steps,
            total_ms: 0,
        })
    }
}

pub async fn overhead(_settings: &Settings, args: BenchAgentOverheadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.sessions),
        "--sessions must be 1..=100000"
    );
    let llm = ScriptedModel::new(|decision, _| {
        Ok(match decision {
            "understand" => r#"{"subject":"a sunrise","contradiction":"","question":"","choices":[],"assumptions":["a square post"]}"#,
            "plan" => r#"{"subject":"a sun","prompt":"a beige background with an orange circle","negative_prompt":"","colours":["beige","orange"],"headline":"","variants":2,"rationale":"simple"}"#,
            "refine" => r#"{"prompt":"an orange circle on a beige background","negative_prompt":"","change":"colours first"}"#,
            _ => r#"{"message":"Here are your images.","alt_text":"An orange circle on beige."}"#,
        }
        .to_string())
    });
    // A two-colour image that passes its checks, so sessions run understand → plan → generate
    // → critique → present.
    let image = image::RgbImage::from_fn(64, 64, |x, y| {
        let (dx, dy) = (x as f32 - 32.0, y as f32 - 32.0);
        if dx * dx + dy * dy < 300.0 {
            image::Rgb([245, 140, 30])
        } else {
            image::Rgb([230, 215, 180])
        }
    });
    let out = tempfile::tempdir()?;
    let agent = Agent::new(
        Arc::new(llm),
        Toolbox {
            generator: Arc::new(Replay(image)),
            brands: None,
            images: Arc::new(DirImageStore::new(out.path())?),
            critics: Default::default(),
            upscale: None,
        },
        Arc::new(MemorySessionStore::new()),
        AgentConfig {
            width: 64,
            height: 64,
            ..AgentConfig::default()
        },
    )?;
    let mut decision_turns = Vec::new();
    let mut all_turns = Vec::new();
    for i in 0..args.sessions {
        let mut s = agent
            .start("bench", &format!("a sunrise, take {i}"), None)
            .await?;
        let (mut io, mut events, _inputs) = SessionIo::channel(4096);
        let timer = tokio::spawn(async move {
            let mut marks: Vec<(Phase, Instant)> = Vec::new();
            while let Some(e) = events.recv().await {
                match e {
                    AgentEvent::Status { phase, .. } => marks.push((phase, Instant::now())),
                    AgentEvent::Final { .. } => marks.push((Phase::Done, Instant::now())),
                    _ => {}
                }
            }
            marks
        });
        agent.run(&mut s, &mut io).await?;
        anyhow::ensure!(s.phase == Phase::Done, "session {i} ended {:?}", s.failure);
        drop(io);
        let marks = timer.await?;
        for pair in marks.windows(2) {
            let us = pair[1].1.duration_since(pair[0].1).as_secs_f64() * 1e6;
            all_turns.push(us);
            if matches!(
                pair[0].0,
                Phase::Understand | Phase::Plan | Phase::Refine | Phase::Present
            ) {
                decision_turns.push(us);
            }
        }
    }
    let table = format!(
        "\n### Agent service overhead per turn ({}, scripted model, {} sessions)\n\n\
         | turns | count | p50 µs | p99 µs | goal |\n|---|---|---|---|---|\n\
         | decisions (render, schema, parse, validate, save, events) | {} | {:.0} | {:.0} | p99 < 2000 µs |\n\
         | all turns (with PNG encoding, hashing and critique of a 64² image) | {} | {:.0} | {:.0} | — |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        args.sessions,
        decision_turns.len(),
        percentile(decision_turns.clone(), 0.5),
        percentile(decision_turns.clone(), 0.99),
        all_turns.len(),
        percentile(all_turns.clone(), 0.5),
        percentile(all_turns, 0.99),
    );
    publish(&table, args.markdown.as_deref())
}
