//! Running a suite: each case through a [`Target`] (the agent in process, or a server over
//! WebSocket), its events timed and recorded, its images kept, its scores computed. A case
//! that fails is recorded as failed and the run goes on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use atelier_agent::{
    Agent, AgentConfig, AgentEvent, DirImageStore, MemorySessionStore, Phase, SessionIo, Toolbox,
    UserInput,
};
use atelier_inference::diffusion::ImageGenerator;
use atelier_inference::llm::ChatModel;
use atelier_tools::brand::Ingestor;
use atelier_tools::critique::Critics;
use atelier_tools::upscale::Upscalers;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::record::{
    CaseRecord, ImageRecord, QuestionRecord, RESULTS_VERSION, RunResults, Setup, StepTiming,
    TimedEvent, UsageRecord, write_atomic,
};
use crate::score::{CaseScores, ScoreContext, score_case, summarise};
use crate::suite::{Case, Suite};

/// Where a case's images go, relative to the run directory.
pub const IMAGES_DIR: &str = "images";

/// What a target reports about one case.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub events: Vec<TimedEvent>,
    pub questions: Vec<QuestionRecord>,
    /// `done`, `failed` or `cancelled`.
    pub status: String,
    pub error: Option<String>,
    /// The plan's headline, when the target can see the plan.
    pub headline: Option<String>,
    /// Hosted cost and compute the target measured (`cost_estimate_usd` is filled in later).
    pub usage: UsageRecord,
    pub duration_ms: u64,
}

/// Something that runs one case: the agent in this process, or a server.
#[async_trait]
pub trait Target: Send + Sync {
    /// What runs the cases, for the record.
    fn setup(&self) -> Setup;
    /// Run `case`; images go to `<run_dir>/images/<sha256>.png`. `timeout` bounds the whole
    /// case (the session is cancelled when it passes).
    async fn run(&self, case: &Case, run_dir: &Path, timeout: Duration) -> Result<Transcript>;
}

/// Scripted answers: each question takes the next; `-` or none left skips.
#[derive(Debug, Clone)]
pub struct Answers {
    left: std::vec::IntoIter<String>,
}

impl Answers {
    pub fn new(case: &Case) -> Self {
        Answers {
            left: case.answers.clone().into_iter(),
        }
    }

    /// The reply to the next question.
    pub fn next_input(&mut self) -> UserInput {
        match self.left.next() {
            Some(a) if a.trim() == "-" => UserInput::JustGo,
            Some(a) => UserInput::Answer { text: a },
            None => UserInput::JustGo,
        }
    }
}

/// The agent in this process, with its backends.
pub struct InProcess {
    pub llm: Arc<dyn ChatModel>,
    pub generator: Arc<dyn ImageGenerator>,
    /// The suite's brands, ingested; `None` runs without brands.
    pub brands: Option<Ingestor>,
    pub config: AgentConfig,
    pub tenant: String,
    /// The pixel models the agent's critique uses (open_nsfw, CLIP), each optional.
    pub critics: Critics,
    /// ESRGAN-slim for images smaller than their channel; `None` resizes by interpolation.
    pub upscale: Option<Arc<Upscalers>>,
}

#[async_trait]
impl Target for InProcess {
    fn setup(&self) -> Setup {
        Setup {
            mode: "in-process".into(),
            server_url: None,
            chat_model: self.llm.name().to_string(),
            image_model: self.generator.name().to_string(),
            agent: serde_json::to_value(&self.config).unwrap_or_default(),
            compute_usd_per_hour: 0.0,
        }
    }

    async fn run(&self, case: &Case, run_dir: &Path, timeout: Duration) -> Result<Transcript> {
        let images = DirImageStore::new(run_dir.join(IMAGES_DIR))?;
        let agent = Agent::new(
            self.llm.clone(),
            Toolbox {
                generator: self.generator.clone(),
                brands: self.brands.clone(),
                images: Arc::new(images),
                critics: self.critics.clone(),
                upscale: self.upscale.clone(),
            },
            Arc::new(MemorySessionStore::new()),
            self.config.clone(),
        )?;
        let started = Instant::now();
        let mut session = agent
            .start(&self.tenant, &case.brief, case.brand.clone())
            .await?;
        let (mut io, mut events, inputs) = SessionIo::channel(256);
        let cancel = io.cancel.clone();
        let mut answers = Answers::new(case);
        let collector = tokio::spawn(async move {
            let mut log = Vec::new();
            let mut questions = Vec::new();
            while let Some(event) = events.recv().await {
                let at_ms = started.elapsed().as_secs_f64() * 1000.0;
                if let AgentEvent::Question { text, choices, .. } = &event {
                    let input = answers.next_input();
                    questions.push(QuestionRecord {
                        text: text.clone(),
                        choices: choices.clone(),
                        answer: match &input {
                            UserInput::Answer { text } => Some(text.clone()),
                            _ => None,
                        },
                    });
                    let _ = inputs.send(input).await;
                }
                log.push(TimedEvent { at_ms, event });
            }
            (log, questions)
        });
        let watchdog = cancel_after(cancel.clone(), timeout);
        let ran = agent.run(&mut session, &mut io).await;
        watchdog.cancel();
        drop(io);
        let (events, questions) = collector
            .await
            .map_err(|e| Error::Run(format!("the event collector failed: {e}")))?;
        let timed_out = cancel.is_cancelled() && session.phase == Phase::Cancelled;
        let (status, error) = match (&ran, session.phase) {
            (Err(e), _) => ("failed", Some(e.to_string())),
            (Ok(()), Phase::Done) => ("done", None),
            (Ok(()), Phase::Cancelled) if timed_out => (
                "failed",
                Some(format!(
                    "the case ran past its {} s limit",
                    timeout.as_secs()
                )),
            ),
            (Ok(()), Phase::Cancelled) => ("cancelled", None),
            (Ok(()), _) => (
                "failed",
                Some(
                    session
                        .failure
                        .clone()
                        .unwrap_or_else(|| "the session failed".into()),
                ),
            ),
        };
        Ok(Transcript {
            events,
            questions,
            status: status.into(),
            error,
            headline: session.plan.as_ref().and_then(|p| p.headline.clone()),
            usage: UsageRecord {
                llm_calls: session.usage.llm_calls,
                tokens: Some(session.usage.llm_tokens),
                images: session.usage.images,
                compute_ms: session.usage.compute_ms,
                hosted_cost_usd: session.usage.cost_usd,
                cost_estimate_usd: 0.0,
            },
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Cancel `token` after `timeout` unless the returned guard is cancelled first.
fn cancel_after(token: CancellationToken, timeout: Duration) -> CancellationToken {
    let guard = CancellationToken::new();
    let done = guard.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = done.cancelled() => {}
            _ = tokio::time::sleep(timeout) => token.cancel(),
        }
    });
    guard
}

/// The tools that make an image from another one.
const POST_TOOLS: &[&str] = &["upscale", "resize", "compose_layout"];

/// How to run a suite.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run directory (created; an existing `results.json` is replaced).
    pub out: PathBuf,
    /// Price of an hour of model compute, for the cost estimate.
    pub compute_usd_per_hour: f64,
    /// Wall-time limit of one case.
    pub case_timeout: Duration,
    /// The pixel models the safety and alignment scorers run on each delivered image; a
    /// missing one is reported (prompts only for safety, not measured for alignment).
    pub critics: Critics,
}

/// Per-step timings from a case's events: each phase from its status event to the next
/// event that ends it (waiting for the user's answer is not counted), and each tool call from
/// its start to its result.
pub fn step_timings(events: &[TimedEvent]) -> Vec<StepTiming> {
    let mut steps = Vec::new();
    let mut open: Option<(Phase, f64)> = None;
    let mut tools: HashMap<u32, (String, f64)> = HashMap::new();
    let end = events.last().map_or(0.0, |e| e.at_ms);
    for e in events {
        match &e.event {
            AgentEvent::Status { phase, .. } => {
                if let Some((p, at)) = open.take()
                    && p != Phase::Clarify
                {
                    steps.push(StepTiming {
                        step: format!("phase:{}", phase_name(p)),
                        ms: e.at_ms - at,
                    });
                }
                open = Some((*phase, e.at_ms));
            }
            AgentEvent::ToolCall { id, tool, .. } => {
                tools.insert(*id, (tool.clone(), e.at_ms));
            }
            AgentEvent::ToolResult { id, .. } => {
                if let Some((tool, at)) = tools.remove(id) {
                    steps.push(StepTiming {
                        step: format!("tool:{tool}"),
                        ms: e.at_ms - at,
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((p, at)) = open
        && p != Phase::Clarify
    {
        steps.push(StepTiming {
            step: format!("phase:{}", phase_name(p)),
            ms: end - at,
        });
    }
    steps
}

fn phase_name(p: Phase) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{p:?}").to_lowercase())
}

/// Turn a transcript into the case's record (scores included).
pub fn build_record(
    case: &Case,
    transcript: Transcript,
    run_dir: &Path,
    options: &RunOptions,
) -> Result<CaseRecord> {
    let mut images: Vec<ImageRecord> = Vec::new();
    let mut delivered = Vec::new();
    let mut final_message = None;
    let mut alt_text = String::new();
    let mut passed = None;
    let mut iterations = 0;
    let mut assumptions = Vec::new();
    let mut stopped = None;
    let mut citations = Vec::new();
    let mut critiques = HashMap::new();
    let mut delivered_refs = Vec::new();
    // What each post-processing call made from which image: made → source. Results that do
    // not name their image (older transcripts) are paired with delivered images in order.
    let mut calls: HashMap<u32, String> = HashMap::new();
    let mut made_from: HashMap<String, String> = HashMap::new();
    let mut sources: Vec<String> = Vec::new();
    for e in &transcript.events {
        match &e.event {
            AgentEvent::ToolCall { id, tool, args } if POST_TOOLS.contains(&tool.as_str()) => {
                if let Some(src) = args["image"].as_str() {
                    calls.insert(*id, src.to_string());
                }
            }
            AgentEvent::ToolResult {
                id,
                ok: true,
                image,
                ..
            } => {
                if let Some(src) = calls.remove(id) {
                    match image {
                        Some(made) => {
                            made_from.insert(made.id.clone(), src);
                        }
                        None => sources.push(src),
                    }
                }
            }
            AgentEvent::Image {
                image,
                iteration,
                seed,
                prompt,
                score,
                passed,
            } => images.push(ImageRecord {
                id: image.id.clone(),
                file: format!("{IMAGES_DIR}/{}.png", image.id),
                width: image.width,
                height: image.height,
                iteration: *iteration,
                seed: *seed,
                prompt: prompt.clone(),
                score: *score,
                passed: *passed,
                checks: Vec::new(),
                post_processed: false,
                derived_from: None,
            }),
            // The agent reports an image's checks before or after the image itself.
            AgentEvent::Critique {
                image_id, checks, ..
            } => {
                critiques.insert(image_id.clone(), checks.clone());
            }
            AgentEvent::Final {
                message,
                alt_text: alt,
                images: finals,
                passed: p,
                assumptions: a,
                citations: c,
                iterations: n,
                stopped: why,
            } => {
                final_message = Some(message.clone());
                alt_text = alt.clone();
                delivered = finals.iter().map(|i| i.id.clone()).collect();
                delivered_refs.clone_from(finals);
                passed = Some(*p);
                iterations = *n;
                assumptions = a.clone();
                stopped.clone_from(why);
                citations = c.clone();
            }
            _ => {}
        }
    }
    // Delivered images a post-processing tool made (upscaled, resized for the channel or
    // composed with the headline), traced back through every step to the generated image.
    let mut sources = sources.into_iter();
    let origin = |id: &str| -> Option<String> {
        let mut at = made_from.get(id)?;
        for _ in 0..made_from.len() {
            match made_from.get(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        Some(at.clone())
    };
    for r in &delivered_refs {
        if !images.iter().any(|i| i.id == r.id) {
            images.push(ImageRecord {
                id: r.id.clone(),
                file: format!("{IMAGES_DIR}/{}.png", r.id),
                width: r.width,
                height: r.height,
                iteration: iterations,
                seed: 0,
                prompt: String::new(),
                score: 0.0,
                passed: passed.unwrap_or(false),
                checks: Vec::new(),
                post_processed: true,
                derived_from: origin(&r.id).or_else(|| sources.next()),
            });
        }
    }
    for img in &mut images {
        if let Some(checks) = critiques.get(&img.id) {
            img.checks.clone_from(checks);
        }
    }
    if final_message.is_none() {
        iterations = images.iter().map(|i| i.iteration).max().unwrap_or(0);
    }

    let case_dir = Path::new("cases").join(&case.id);
    std::fs::create_dir_all(run_dir.join(&case_dir)).map_err(|e| Error::Write {
        path: run_dir.join(&case_dir),
        message: e.to_string(),
    })?;
    let events_file = case_dir.join("events.jsonl");
    let mut lines = Vec::new();
    for e in &transcript.events {
        let mut e = e.clone();
        // Previews are for live clients; the finished images are kept instead.
        if let AgentEvent::Progress {
            preview_png_base64, ..
        } = &mut e.event
        {
            *preview_png_base64 = None;
        }
        serde_json::to_writer(&mut lines, &e).map_err(|err| Error::Run(err.to_string()))?;
        lines.push(b'\n');
    }
    write_atomic(&run_dir.join(&events_file), &lines)?;

    let mut usage = transcript.usage;
    usage.cost_estimate_usd =
        usage.hosted_cost_usd + usage.compute_ms as f64 / 3.6e6 * options.compute_usd_per_hour;
    let mut record = CaseRecord {
        case: case.clone(),
        status: transcript.status,
        error: transcript.error,
        questions: transcript.questions,
        images,
        delivered,
        final_message,
        alt_text,
        passed,
        iterations,
        assumptions,
        stopped,
        citations,
        headline: transcript.headline,
        steps: step_timings(&transcript.events),
        duration_ms: transcript.duration_ms,
        usage,
        events_file: events_file.to_string_lossy().replace('\\', "/"),
        scores: CaseScores::default(),
    };
    record.scores = score_case(
        &record,
        ScoreContext {
            run_dir,
            critics: &options.critics,
        },
    );
    Ok(record)
}

/// A case the harness could not run at all.
fn error_record(case: &Case, error: String, run_dir: &Path, options: &RunOptions) -> CaseRecord {
    let transcript = Transcript {
        status: "error".into(),
        error: Some(error.clone()),
        ..Transcript::default()
    };
    build_record(case, transcript, run_dir, options).unwrap_or_else(|_| CaseRecord {
        case: case.clone(),
        status: "error".into(),
        error: Some(error),
        questions: Vec::new(),
        images: Vec::new(),
        delivered: Vec::new(),
        final_message: None,
        alt_text: String::new(),
        passed: None,
        iterations: 0,
        assumptions: Vec::new(),
        stopped: None,
        citations: Vec::new(),
        headline: None,
        steps: Vec::new(),
        duration_ms: 0,
        usage: UsageRecord::default(),
        events_file: String::new(),
        scores: CaseScores::default(),
    })
}

/// Run every case of `suite` through `target`, one after another. `on_case` hears about each
/// finished case (for a progress bar). `results.json` is rewritten after every case, so an
/// interrupted run keeps what it did.
pub async fn run_suite(
    suite: &Suite,
    target: &dyn Target,
    options: &RunOptions,
    mut on_case: impl FnMut(usize, &CaseRecord),
) -> Result<RunResults> {
    let out = &options.out;
    std::fs::create_dir_all(out.join(IMAGES_DIR)).map_err(|e| Error::Write {
        path: out.clone(),
        message: e.to_string(),
    })?;
    let started = Instant::now();
    let mut setup = target.setup();
    setup.compute_usd_per_hour = options.compute_usd_per_hour;
    let mut results = RunResults {
        version: RESULTS_VERSION,
        suite: suite.name.clone(),
        description: suite.description.clone(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        duration_ms: 0,
        setup,
        cases: Vec::new(),
        summary: Default::default(),
    };
    for (i, case) in suite.cases.iter().enumerate() {
        let record = match target.run(case, out, options.case_timeout).await {
            Ok(t) => build_record(case, t, out, options)
                .unwrap_or_else(|e| error_record(case, e.to_string(), out, options)),
            Err(e) => {
                tracing::warn!(case = %case.id, "case could not run: {e}");
                error_record(case, e.to_string(), out, options)
            }
        };
        on_case(i, &record);
        results.cases.push(record);
        results.summary = summarise(&results.cases);
        results.duration_ms = started.elapsed().as_millis() as u64;
        results.save(out)?;
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: f64, event: AgentEvent) -> TimedEvent {
        TimedEvent { at_ms: ms, event }
    }

    fn status(phase: Phase) -> AgentEvent {
        AgentEvent::Status {
            phase,
            detail: String::new(),
        }
    }

    #[test]
    fn steps_are_timed_without_the_users_thinking_time() {
        let events = vec![
            at(0.0, status(Phase::Understand)),
            at(100.0, status(Phase::Clarify)),
            at(5100.0, status(Phase::Retrieve)),
            at(
                5110.0,
                AgentEvent::ToolCall {
                    id: 1,
                    tool: "retrieve_brand_guidelines".into(),
                    args: serde_json::Value::Null,
                },
            ),
            at(
                5130.0,
                AgentEvent::ToolResult {
                    id: 1,
                    tool: "retrieve_brand_guidelines".into(),
                    ok: true,
                    summary: String::new(),
                    image: None,
                },
            ),
            at(5150.0, status(Phase::Plan)),
            at(5400.0, AgentEvent::Cancelled),
        ];
        let steps: Vec<(String, f64)> = step_timings(&events)
            .into_iter()
            .map(|s| (s.step, s.ms))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("phase:understand".into(), 100.0),
                ("tool:retrieve_brand_guidelines".into(), 20.0),
                ("phase:retrieve".into(), 50.0),
                ("phase:plan".into(), 250.0),
            ]
        );
    }

    #[test]
    fn scripted_answers_skip_on_dash_and_when_exhausted() {
        let case = Case {
            id: "a".into(),
            brief: "b".into(),
            brand: None,
            answers: vec!["red".into(), "-".into()],
            expect: Default::default(),
        };
        let mut a = Answers::new(&case);
        assert_eq!(a.next_input(), UserInput::Answer { text: "red".into() });
        assert_eq!(a.next_input(), UserInput::JustGo);
        assert_eq!(a.next_input(), UserInput::JustGo);
    }
}
