//! The session state machine: understand → (clarify ↔ user) → retrieve → plan → generate →
//! critique → refine … → present → done | failed | cancelled.
//!
//! Each transition is one method that reads the session, does one thing (one decision or one
//! tool call), and returns the next phase. The session is saved after every transition, so a
//! restarted process picks it up where it stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atelier_inference::diffusion::tiny::data::COLOURS;
use atelier_inference::diffusion::{ImageGenerator, ImageRequest, Progress};
use atelier_inference::llm::ChatModel;
use atelier_inference::vision::colour::delta_e;
use atelier_tools::brand::{Ingestor, KitSummary};
use atelier_tools::critique::{Critics, CritiqueInput, RequestedColour, critique_image};
use atelier_tools::generate::GenerateArgs;
use atelier_tools::layout::{self, Assets, ComposeArgs};
use atelier_tools::resize::{self, ResizeArgs};
use atelier_tools::retrieve::{RetrieveArgs, retrieve_brand_guidelines};
use atelier_tools::upscale::{UpscaleArgs, Upscalers, scale_for};
use base64::Engine;
use image::RgbImage;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::decide::{
    Decider, DecisionConfig, DecisionUsage, FieldWatcher, PROMPT_CHARS, PlanDecision, Presentation,
    Refinement, Understanding, plan_schema, presentation_schema, refinement_schema,
    understanding_schema,
};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, ImageRef, UserInput};
use crate::images::{ImageStore, encode_png};
use crate::present;
use crate::session::{Candidate, Exchange, Outcome, Phase, Plan, Session, SessionStore};

/// The tools a session can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    RetrieveBrandGuidelines,
    GenerateImage,
    CritiqueImage,
    Resize,
    ComposeLayout,
    Upscale,
}

impl Tool {
    /// The tool's name in events.
    pub fn name(self) -> &'static str {
        match self {
            Tool::RetrieveBrandGuidelines => "retrieve_brand_guidelines",
            Tool::GenerateImage => "generate_image",
            Tool::CritiqueImage => "critique_image",
            Tool::Resize => "resize",
            Tool::ComposeLayout => "compose_layout",
            Tool::Upscale => "upscale",
        }
    }
}

/// The only tools each phase may call. Decisions cannot name tools at all (their schemas have
/// no such field), and this table is checked again before every call, so no text in a brief or
/// a document can make a step run a tool it does not own.
pub fn allowed_tools(phase: Phase) -> &'static [Tool] {
    match phase {
        Phase::Retrieve => &[Tool::RetrieveBrandGuidelines],
        Phase::Generate => &[Tool::GenerateImage],
        Phase::Critique => &[Tool::CritiqueImage],
        Phase::Present => &[
            Tool::Upscale,
            Tool::Resize,
            Tool::ComposeLayout,
            Tool::CritiqueImage,
        ],
        _ => &[],
    }
}

/// A layout to set on the delivered images: the user's headline in the brand's style.
struct Design {
    headline: String,
    kit: KitSummary,
    assets: Assets,
}

/// What the agent works with.
#[derive(Clone)]
pub struct Toolbox {
    pub generator: Arc<dyn ImageGenerator>,
    /// Brand guidelines; `None` runs without brands.
    pub brands: Option<Ingestor>,
    pub images: Arc<dyn ImageStore>,
    /// The models behind the critique's pixel checks: open_nsfw for safety (absent: pixels
    /// unclassified, prompt checked only) and CLIP for alignment (absent: not measured).
    pub critics: Critics,
    /// ESRGAN-slim for images smaller than their channel; `None` resizes them by
    /// interpolation only.
    pub upscale: Option<Arc<Upscalers>>,
}

/// The channels between a running session and its transport.
#[derive(Debug)]
pub struct SessionIo {
    pub events: mpsc::Sender<AgentEvent>,
    pub inputs: mpsc::Receiver<UserInput>,
    /// The user stops the session: it ends as cancelled.
    pub cancel: CancellationToken,
    /// The process is stopping: the run ends at once with [`Error::Interrupted`] and the
    /// stored session stays as it was saved at its last transition, to be resumed
    /// ([`Agent::resume`]) by the next process.
    pub interrupt: CancellationToken,
}

impl SessionIo {
    /// Connected channels: the session's side, the events to read and the inputs to send.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<AgentEvent>, mpsc::Sender<UserInput>) {
        let (events, events_rx) = mpsc::channel(capacity.max(1));
        let (inputs_tx, inputs) = mpsc::channel(16);
        let interrupt = CancellationToken::new();
        (
            SessionIo {
                events,
                inputs,
                // Steps watch `cancel`; an interrupt cancels it too (a child token).
                cancel: interrupt.child_token(),
                interrupt,
            },
            events_rx,
            inputs_tx,
        )
    }
}

/// Runs sessions.
pub struct Agent {
    decider: Decider,
    tools: Toolbox,
    sessions: Arc<dyn SessionStore>,
    config: AgentConfig,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("decider", &self.decider)
            .field("generator", &self.tools.generator.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Most characters of a brief.
pub const MAX_BRIEF_CHARS: usize = 4000;
/// Most characters of one answer.
pub const MAX_ANSWER_CHARS: usize = 1000;

impl Agent {
    pub fn new(
        llm: Arc<dyn ChatModel>,
        tools: Toolbox,
        sessions: Arc<dyn SessionStore>,
        config: AgentConfig,
    ) -> Result<Self> {
        config.validate()?;
        let decider = Decider::new(
            llm,
            DecisionConfig {
                temperature: config.temperature,
                seed: config.seed,
                max_tokens: config.decision_max_tokens,
                retries: config.decision_retries,
            },
        )?;
        Ok(Agent {
            decider,
            tools,
            sessions,
            config,
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// A new session for `brief`, checked and saved.
    pub async fn start(&self, tenant: &str, brief: &str, brand: Option<String>) -> Result<Session> {
        let brief = brief.trim();
        if brief.is_empty() {
            return Err(Error::InvalidRequest {
                field: "brief",
                reason: "must not be empty".into(),
            });
        }
        let chars = brief.chars().count();
        if chars > MAX_BRIEF_CHARS {
            return Err(Error::InvalidRequest {
                field: "brief",
                reason: format!("{chars} characters; at most {MAX_BRIEF_CHARS}"),
            });
        }
        if let Some(b) = &brand {
            self.check_brand(tenant, b).await?;
        }
        let session = Session::new(uuid::Uuid::new_v4().to_string(), tenant, brief, brand);
        self.sessions.save(&session).await?;
        Ok(session)
    }

    /// Check that `tenant` has `brand` (always true when the agent runs without brands).
    pub async fn check_brand(&self, tenant: &str, brand: &str) -> Result<()> {
        let Some(ing) = &self.tools.brands else {
            return Ok(());
        };
        let known = ing.store().brands(tenant).await?;
        if known.iter().any(|k| k == brand) {
            return Ok(());
        }
        Err(Error::InvalidRequest {
            field: "brand",
            reason: format!(
                "no brand `{brand}` for tenant `{tenant}`; known: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        })
    }

    /// A stored session, to resume after a restart.
    pub async fn resume(&self, id: &str) -> Result<Option<Session>> {
        self.sessions.load(id).await
    }

    /// Drive `session` until it ends (done, failed or cancelled). Events go to `io.events`;
    /// answers come from `io.inputs`. The session is saved after every transition.
    ///
    /// When `io.interrupt` fires, the run stops within the current step and returns
    /// [`Error::Interrupted`] without saving: the store keeps the state of the last transition.
    pub async fn run(&self, session: &mut Session, io: &mut SessionIo) -> Result<()> {
        let mut clock = Clock::new(session.elapsed_ms);
        while !session.phase.is_terminal() {
            if io.interrupt.is_cancelled() {
                return Err(Error::Interrupted);
            }
            let phase = session.phase;
            let next = if io.cancel.is_cancelled() {
                Err(Error::Cancelled)
            } else {
                self.emit(
                    io,
                    AgentEvent::Status {
                        phase,
                        detail: describe(phase),
                    },
                )
                .await;
                self.step(session, io, &mut clock).await
            };
            if io.interrupt.is_cancelled() {
                // Whatever the step did is not saved; the next process redoes it.
                return Err(Error::Interrupted);
            }
            session.elapsed_ms = clock.active_ms();
            match next {
                Ok(next) => session.phase = next,
                Err(Error::Cancelled) => {
                    session.phase = Phase::Cancelled;
                    self.emit(io, AgentEvent::Cancelled).await;
                }
                Err(e) => {
                    tracing::warn!(session = %session.id, ?phase, error = %e, "session failed");
                    session.phase = Phase::Failed;
                    session.failure = Some(e.to_string());
                    self.emit(
                        io,
                        AgentEvent::Error {
                            message: e.to_string(),
                            fatal: true,
                        },
                    )
                    .await;
                }
            }
            self.sessions.save(session).await?;
        }
        Ok(())
    }

    async fn step(&self, s: &mut Session, io: &mut SessionIo, clock: &mut Clock) -> Result<Phase> {
        match s.phase {
            Phase::Understand => self.understand(s, io).await,
            Phase::Clarify => self.clarify(s, io, clock).await,
            Phase::Retrieve => self.retrieve(s, io).await,
            Phase::Plan => self.plan(s, io).await,
            Phase::Generate => self.generate(s, io, clock).await,
            Phase::Critique => self.critique(s, io, clock).await,
            Phase::Refine => self.refine(s, io).await,
            Phase::Present => self.present(s, io).await,
            terminal => Ok(terminal),
        }
    }

    async fn emit(&self, io: &SessionIo, event: AgentEvent) {
        // A transport that went away cancels the session through its token; a closed channel
        // here only loses events nobody would read.
        let _ = io.events.send(event).await;
    }

    /// Announce a tool call (after checking the phase may make it); returns its id.
    async fn tool_call(
        &self,
        s: &mut Session,
        io: &SessionIo,
        tool: Tool,
        args: serde_json::Value,
    ) -> Result<u32> {
        self.guard(s.phase, tool)?;
        let id = s.take_id();
        let tool = tool.name().into();
        self.emit(io, AgentEvent::ToolCall { id, tool, args }).await;
        Ok(id)
    }

    /// Report how tool call `id` ended; a failure counts against the session.
    async fn tool_result(
        &self,
        s: &mut Session,
        io: &SessionIo,
        id: u32,
        tool: Tool,
        outcome: std::result::Result<String, String>,
    ) {
        self.tool_result_image(s, io, id, tool, outcome, None).await;
    }

    /// [`Agent::tool_result`] of a tool that made `image`.
    async fn tool_result_image(
        &self,
        s: &mut Session,
        io: &SessionIo,
        id: u32,
        tool: Tool,
        outcome: std::result::Result<String, String>,
        image: Option<ImageRef>,
    ) {
        let ok = outcome.is_ok();
        if !ok {
            s.usage.tool_failures += 1;
        }
        let summary = outcome.unwrap_or_else(|e| e);
        let tool = tool.name().into();
        self.emit(
            io,
            AgentEvent::ToolResult {
                id,
                tool,
                ok,
                summary,
                image,
            },
        )
        .await;
    }

    fn can_ask(&self, s: &Session) -> bool {
        !s.just_go && s.questions_asked() < self.config.max_questions
    }

    fn account(&self, s: &mut Session, usage: DecisionUsage) {
        s.usage.llm_calls += usage.calls;
        s.usage.llm_tokens += usage.tokens;
        s.usage.compute_ms += usage.compute_ms;
    }

    fn guard(&self, phase: Phase, tool: Tool) -> Result<()> {
        if allowed_tools(phase).contains(&tool) {
            Ok(())
        } else {
            Err(Error::InvalidRequest {
                field: "tool",
                reason: format!("{} is not allowed in phase {phase:?}", tool.name()),
            })
        }
    }

    // ---- decisions (public so the model comparison asks exactly what sessions ask) -----

    /// Ask the model to read the brief: its subject, any contradiction, a question.
    pub async fn decide_understanding(
        &self,
        s: &Session,
        cancel: &CancellationToken,
    ) -> Result<(Understanding, DecisionUsage)> {
        let context = json!({
            "brief": s.brief,
            "exchanges": s.exchanges,
            "brand": s.brand,
        });
        self.decider
            .decide("understand", context, understanding_schema(), cancel)
            .await
    }

    /// Whether this session's brief should be asked about, the way a session decides it.
    pub async fn should_ask(&self, s: &Session, cancel: &CancellationToken) -> Result<Option<Ask>> {
        let (u, _) = self.decide_understanding(s, cancel).await?;
        let rules = self.brand_rules(s).await;
        Ok(needs_asking(s, &u, &rules))
    }

    /// Ask the model for the plan, validated and clamped.
    pub async fn decide_plan(
        &self,
        s: &Session,
        cancel: &CancellationToken,
    ) -> Result<(Plan, DecisionUsage)> {
        let options = Self::colour_options(s.kit.as_ref());
        let names: Vec<String> = options.iter().map(|c| c.name.clone()).collect();
        // Two passages of one section share a citation; the schema's enum lists it once.
        let mut citations: Vec<String> = Vec::new();
        for p in &s.passages {
            if !citations.contains(&p.citation) {
                citations.push(p.citation.clone());
            }
        }
        let context = json!({
            "brief": s.brief,
            "exchanges": s.exchanges,
            "assumptions": s.assumptions,
            "kit": s.kit,
            "passages": s.passages,
            "max_variants": self.config.max_variants,
        });
        let schema = plan_schema(&names, &citations, self.config.max_variants);
        let (d, usage): (PlanDecision, _) =
            self.decider.decide("plan", context, schema, cancel).await?;
        let mut plan = self.validate_plan(d, &names, &citations);
        // The channel comes from the user's own words, not the model's.
        let mut words = s.brief.clone();
        for e in &s.exchanges {
            if let Some(a) = &e.answer {
                words.push(' ');
                words.push_str(a);
            }
        }
        plan.channels = channels_of(&words)
            .into_iter()
            .map(|p| p.name.to_string())
            .collect();
        plan.channel = plan.channels.first().cloned();
        // So does the text set on the image: a small model writes headlines nobody asked for.
        if let Some(h) = &plan.headline
            && headline_of(&words).as_deref() != Some(h.as_str())
        {
            tracing::debug!(proposed = %h, "headline not in the user's words; dropped");
        }
        plan.headline = headline_of(&words);
        Ok((plan, usage))
    }

    // ---- transitions ----------------------------------------------------------------

    async fn understand(&self, s: &mut Session, io: &mut SessionIo) -> Result<Phase> {
        // Which brand: decided by the code, not the model, from what is stored.
        if s.brand.is_none()
            && let Some(ing) = &self.tools.brands
        {
            let known = ing.store().brands(&s.tenant).await?;
            match known.as_slice() {
                [] => {}
                [only] => {
                    s.brand = Some(only.clone());
                    s.assumptions
                        .push(format!("brand {only} (the only one stored)"));
                }
                several if !s.exchanges.iter().any(|e| e.about == "brand") => {
                    if self.can_ask(s) {
                        return Ok(Self::ask(
                            s,
                            "Which brand is this for?".into(),
                            several.to_vec(),
                            "brand",
                        ));
                    }
                    s.assumptions
                        .push("no brand given: brand rules are not applied".into());
                }
                _ => {}
            }
        }
        let (u, usage) = self.decide_understanding(s, &io.cancel).await?;
        self.account(s, usage);
        // When nothing more may be asked, the reading only supplies assumptions.
        // One read of the stored kit: its rules decide, its words bound what the model may name.
        let kit = self.brand_summary(s).await;
        let reason = if self.can_ask(s) {
            let rules = kit.as_ref().map(|k| k.forbidden_content.as_slice());
            needs_asking(s, &u, rules.unwrap_or_default())
        } else {
            None
        };
        // What the model may name in a question, a quick reply or an assumption: the user's
        // words and the brand's (a coffee roaster's kit says "cup"; a scooter maker's does not).
        let user = said_by_user(s);
        let mut said = user.clone();
        if let Some(brand) = &s.brand {
            said.push(' ');
            said.push_str(&brand.to_lowercase());
        }
        if let Some(kit) = &kit {
            said.push(' ');
            said.push_str(
                &serde_json::to_string(kit)
                    .unwrap_or_default()
                    .to_lowercase(),
            );
        }
        if let Some(reason) = reason {
            // The model's choices answer the model's question; if that is replaced, so are they.
            let mut offered = u.choices;
            let question = match (u.question.trim(), &reason) {
                // A question about a missing subject must not put one in the user's mouth
                // ("What is the color of the coffee?" to "We need a banner").
                (q, Ask::NoSubject) if presupposes(q, &said) => {
                    tracing::debug!(proposed = %q, "question names what the user did not; replaced");
                    offered.clear();
                    "What should the image show?".to_string()
                }
                (q, _) if !q.is_empty() && !echoes_example(q, &said) => q.to_string(),
                (_, Ask::Forbidden(rule)) => {
                    format!("The brand's rules forbid {rule}. What should the image show instead?")
                }
                (_, Ask::Contradiction(c)) => {
                    format!("The brief contradicts itself ({c}); which do you mean?")
                }
                (_, Ask::NoSubject) => "What should the image show?".to_string(),
            };
            offered.retain(|c| !echoes_example(c, &said));
            let choices = quick_replies(&offered, &reason);
            return Ok(Self::ask(s, question, choices, reason.about()));
        }
        let assumptions = u
            .assumptions
            .into_iter()
            .filter(|a| !echoes_example(a, &said) && !adds_nothing(a, &user, s.brand.as_deref()))
            .collect();
        self.assume(s, assumptions);
        Ok(Phase::Retrieve)
    }

    fn assume(&self, s: &mut Session, assumptions: Vec<String>) {
        for a in assumptions {
            let a = a.trim();
            if !a.is_empty() && !s.assumptions.iter().any(|x| x == a) {
                s.assumptions.push(a.to_string());
            }
        }
    }

    /// The stored summary of the session's brand, when it has one.
    async fn brand_summary(&self, s: &Session) -> Option<KitSummary> {
        match (&s.brand, &self.tools.brands) {
            (Some(brand), Some(ing)) => ing.kit(&s.tenant, brand).await.ok().flatten(),
            _ => None,
        }
    }

    /// The forbidden-content rules of the session's brand, when it has one stored.
    async fn brand_rules(&self, s: &Session) -> Vec<String> {
        self.brand_summary(s)
            .await
            .map(|k| k.forbidden_content)
            .unwrap_or_default()
    }

    /// Record a question; `clarify` sends it (again after a restart) and waits.
    fn ask(s: &mut Session, question: String, choices: Vec<String>, about: &str) -> Phase {
        s.exchanges.push(Exchange {
            question,
            choices,
            about: about.to_string(),
            answer: None,
        });
        Phase::Clarify
    }

    async fn clarify(
        &self,
        s: &mut Session,
        io: &mut SessionIo,
        clock: &mut Clock,
    ) -> Result<Phase> {
        let Some(open) = s.open_question().cloned() else {
            return Ok(Phase::Understand);
        };
        let id = s.questions_asked();
        self.emit(
            io,
            AgentEvent::Question {
                id,
                text: open.question.clone(),
                choices: open.choices.clone(),
            },
        )
        .await;
        // Time spent waiting for the user is not the agent's.
        clock.pause();
        let input = tokio::select! {
            input = io.inputs.recv() => input,
            () = tokio::time::sleep(self.config.answer_timeout) => None,
            () = io.cancel.cancelled() => Some(UserInput::Cancel),
        };
        clock.resume();
        let answer = match input {
            Some(UserInput::Answer { text }) => {
                let text = text.trim();
                let chars = text.chars().count();
                if chars > MAX_ANSWER_CHARS {
                    // The question stays open; `clarify` asks it again.
                    self.emit(
                        io,
                        AgentEvent::Error {
                            message: format!(
                                "invalid `answer`: {chars} characters; at most {MAX_ANSWER_CHARS}"
                            ),
                            fatal: false,
                        },
                    )
                    .await;
                    return Ok(Phase::Clarify);
                }
                (!text.is_empty()).then(|| text.to_string())
            }
            Some(UserInput::Cancel) => return Err(Error::Cancelled),
            Some(UserInput::JustGo) | None => None,
        };
        let exchange = s
            .exchanges
            .last_mut()
            .ok_or(Error::Store("no open question".into()))?;
        match answer {
            Some(text) => {
                if exchange.about == "brand" {
                    let lower = text.to_lowercase();
                    let chosen = exchange
                        .choices
                        .iter()
                        .find(|b| lower.contains(&b.to_lowercase()))
                        .cloned();
                    match chosen {
                        Some(b) => s.brand = Some(b),
                        None => s.assumptions.push(format!(
                            "the answer `{text}` names no stored brand: brand rules are not applied"
                        )),
                    }
                }
                exchange.answer = Some(text);
            }
            None => {
                exchange.answer = Some("(no answer: go on with assumptions)".into());
                s.just_go = true;
                s.assumptions.push(format!(
                    "no answer to “{}”; went on with the most likely reading",
                    exchange.question
                ));
            }
        }
        Ok(Phase::Understand)
    }

    async fn retrieve(&self, s: &mut Session, io: &mut SessionIo) -> Result<Phase> {
        let (Some(brand), Some(ing)) = (s.brand.clone(), &self.tools.brands) else {
            return Ok(Phase::Plan);
        };
        let mut query = s.brief.clone();
        for e in &s.exchanges {
            if let Some(a) = &e.answer {
                query.push(' ');
                query.push_str(a);
            }
        }
        let query: String = query.chars().take(1500).collect();
        let args = RetrieveArgs {
            brand: brand.clone(),
            query,
            top_k: self.config.top_k,
            kind: None,
        };
        let tool = Tool::RetrieveBrandGuidelines;
        let id = self
            .tool_call(s, io, tool, serde_json::to_value(&args).unwrap_or_default())
            .await?;
        match retrieve_brand_guidelines(ing, &s.tenant, args).await {
            Ok(r) => {
                // A long section comes back as several passages: name it once, with a count.
                let mut sections: Vec<(&str, usize)> = Vec::new();
                for p in &r.passages {
                    match sections.iter_mut().find(|(c, _)| *c == p.citation) {
                        Some((_, n)) => *n += 1,
                        None => sections.push((&p.citation, 1)),
                    }
                }
                let summary = format!(
                    "{}: {} palette colours; passages: {}",
                    r.kit.name,
                    r.kit.palette.len(),
                    sections
                        .iter()
                        .map(|(c, n)| match n {
                            1 => (*c).to_string(),
                            n => format!("{c} (×{n})"),
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.tool_result(s, io, id, tool, Ok(summary)).await;
                s.kit = Some(r.kit);
                s.passages = r.passages;
            }
            Err(e) => {
                self.tool_result(s, io, id, tool, Err(e.to_string())).await;
                s.assumptions.push(format!(
                    "brand guidelines for {brand} could not be read ({e}); brand rules are not applied"
                ));
            }
        }
        Ok(Phase::Plan)
    }

    /// Colour names the plan may choose and what they look like.
    fn colour_options(kit: Option<&KitSummary>) -> Vec<RequestedColour> {
        match kit {
            Some(k) if !k.palette.is_empty() => k
                .palette
                .iter()
                .map(|c| RequestedColour {
                    name: c.name.clone(),
                    rgb: c.rgb(),
                })
                .collect(),
            _ => COLOURS
                .iter()
                .map(|c| RequestedColour {
                    name: c.name.to_string(),
                    rgb: c.rgb,
                })
                .collect(),
        }
    }

    async fn plan(&self, s: &mut Session, io: &mut SessionIo) -> Result<Phase> {
        let (plan, usage) = self.decide_plan(s, &io.cancel).await?;
        self.account(s, usage);
        let mut text = format!(
            "Plan: {} — {} variant{} of “{}”",
            plan.subject,
            plan.variants,
            if plan.variants == 1 { "" } else { "s" },
            plan.prompt
        );
        if !plan.colours.is_empty() {
            text.push_str(&format!("; colours {}", plan.colours.join(", ")));
        }
        if !plan.guidelines_applied.is_empty() {
            text.push_str(&format!(
                "; applying {}",
                plan.guidelines_applied.join("; ")
            ));
        }
        let sizes: Vec<String> = plan
            .channels
            .iter()
            .filter_map(|c| resize::preset(c))
            .map(|p| format!("{} {}×{}", p.name, p.width, p.height))
            .collect();
        if !sizes.is_empty() {
            let sizes = match sizes.as_slice() {
                [one] => format!("at the size {one}"),
                many => format!("in {} sizes: {}", many.len(), many.join(", ")),
            };
            text.push_str(&format!("; delivered {sizes}"));
        }
        if let Some(h) = &plan.headline {
            text.push_str(&format!("; headline “{h}” set in the brand's layout"));
        }
        self.emit(io, AgentEvent::Message { text }).await;
        s.plan = Some(plan);
        Ok(Phase::Generate)
    }

    /// Clamp and clean the model's plan: nothing out of range or unknown goes through.
    fn validate_plan(&self, d: PlanDecision, names: &[String], citations: &[String]) -> Plan {
        let mut colours: Vec<String> = Vec::new();
        for c in d.colours {
            if names.contains(&c) && !colours.contains(&c) {
                colours.push(c);
            }
        }
        let subject = clean(&d.subject, 80);
        let mut prompt = image_prompt(&d.prompt);
        if prompt.is_empty() {
            prompt = subject.clone();
        }
        let headline = clean(&d.headline, 60);
        Plan {
            subject,
            prompt,
            negative_prompt: clean(&d.negative_prompt, 120),
            colours,
            variants: d.variants.clamp(1, self.config.max_variants),
            width: self.config.width,
            height: self.config.height,
            steps: self.config.steps,
            guidance: self.config.guidance,
            headline: (!headline.is_empty()).then_some(headline),
            channel: None,
            channels: Vec::new(),
            guidelines_applied: d.guidelines_applied.into_iter().fold(
                Vec::new(),
                |mut kept: Vec<String>, g| {
                    // The schema's enum keeps out unknown citations, not repeats: a small
                    // model may cite one section three times.
                    if kept.len() < 4 && citations.contains(&g) && !kept.contains(&g) {
                        kept.push(g);
                    }
                    kept
                },
            ),
            rationale: clean(&d.rationale, 200),
        }
    }

    /// The prompt the image model gets: the plan's words plus the chosen colours in plain
    /// colour words (brand names like "Ember" mean nothing to an image model).
    fn model_prompt(plan: &Plan, kit: Option<&KitSummary>) -> (String, Option<String>) {
        let options = Self::colour_options(kit);
        let words: Vec<&str> = plan
            .colours
            .iter()
            .filter_map(|name| options.iter().find(|o| &o.name == name))
            .map(|o| plain_colour_word(o.rgb))
            .collect();
        let mut prompt = plan.prompt.clone();
        if !words.is_empty() {
            let (ground, rest) = words.split_at(1);
            prompt.push_str(&format!(", {} background", ground[0]));
            if !rest.is_empty() {
                prompt.push_str(&format!(" with {}", rest.join(" and ")));
            }
        }
        let mut negative: Vec<String> = Vec::new();
        if !plan.negative_prompt.is_empty() {
            negative.push(plan.negative_prompt.clone());
        }
        if let Some(k) = kit {
            negative.extend(k.forbidden_colours.iter().map(|c| c.name.to_lowercase()));
        }
        let negative = (!negative.is_empty()).then(|| negative.join(", "));
        (prompt, negative)
    }

    fn requested_colours(plan: &Plan, kit: Option<&KitSummary>) -> Vec<RequestedColour> {
        let options = Self::colour_options(kit);
        plan.colours
            .iter()
            .filter_map(|name| options.iter().find(|o| &o.name == name).cloned())
            .collect()
    }

    async fn generate(&self, s: &mut Session, io: &mut SessionIo, clock: &Clock) -> Result<Phase> {
        let plan = s
            .plan
            .clone()
            .ok_or_else(|| Error::Store("generate without a plan".into()))?;
        if let Some(reason) = self.spent(s, clock) {
            return self.stop(s, io, reason).await;
        }
        let left = self.config.max_images.saturating_sub(s.usage.images);
        let variants = plan.variants.min(left).max(1);
        let (prompt, negative_prompt) = Self::model_prompt(&plan, s.kit.as_ref());
        s.iteration += 1;
        let seed = self
            .config
            .seed
            .wrapping_add(u64::from(s.iteration - 1) * 1000)
            .wrapping_add(u64::from(s.retries) * 100);
        let args = GenerateArgs {
            prompt,
            negative_prompt,
            variants,
            width: Some(plan.width),
            height: Some(plan.height),
            steps: Some(plan.steps),
            guidance: Some(plan.guidance),
            seed: Some(seed),
        };
        let tool = Tool::GenerateImage;
        let id = self
            .tool_call(s, io, tool, serde_json::to_value(&args).unwrap_or_default())
            .await?;
        let generator = &self.tools.generator;
        let mut defaults = ImageRequest::new(args.prompt.clone());
        defaults.cancel = io.cancel.child_token();
        let result = match args.prepare(&generator.limits(), &defaults) {
            Ok(prepared) => {
                let events = io.events.clone();
                let progress = Box::new(move |p: Progress| {
                    let preview = p.preview.as_ref().and_then(|img| {
                        encode_png(img)
                            .ok()
                            .map(|png| base64::engine::general_purpose::STANDARD.encode(png))
                    });
                    // Progress is advisory: a full channel drops it rather than stall the model.
                    let _ = events.try_send(AgentEvent::Progress {
                        step: p.step,
                        steps: p.steps,
                        image: p.image,
                        preview_png_base64: preview,
                    });
                });
                let request = prepared.request;
                generator
                    .generate(request, Some(progress))
                    .await
                    .map_err(Error::from)
            }
            Err(e) => Err(e.into()),
        };
        let generation = match result {
            Ok(g) => g,
            Err(Error::Inference(atelier_inference::Error::Cancelled)) => {
                return Err(Error::Cancelled);
            }
            Err(_) if io.cancel.is_cancelled() => return Err(Error::Cancelled),
            Err(e) => {
                self.tool_result(s, io, id, tool, Err(e.to_string())).await;
                s.iteration -= 1;
                if s.retries < self.config.tool_retries {
                    s.retries += 1;
                    s.tool_error = Some(e.to_string());
                    return Ok(Phase::Refine);
                }
                if s.candidates.is_empty() {
                    return Err(e);
                }
                s.stopped = Some(format!("image generation stopped working: {e}"));
                return Ok(Phase::Present);
            }
        };
        s.retries = 0;
        s.tool_error = None;
        s.usage.compute_ms += generation.total_ms;
        let n = generation.images.len() as u32;
        s.usage.images += n;
        s.usage.cost_usd += f64::from(n) * self.config.cost_per_image_usd;
        let mut ids = Vec::new();
        for g in generation.images {
            let image = self.tools.images.put(&g.image).await?;
            ids.push(image.id.clone());
            s.candidates.push(Candidate {
                image,
                iteration: s.iteration,
                seed: g.seed,
                prompt: args.prompt.clone(),
                critique: None,
            });
        }
        let summary = format!(
            "{n} image{} from {} in {:.1} s",
            if n == 1 { "" } else { "s" },
            generation.model,
            generation.total_ms as f64 / 1000.0
        );
        self.tool_result(s, io, id, tool, Ok(summary)).await;
        Ok(Phase::Critique)
    }

    /// Why the session may not start another round, if it may not.
    fn spent(&self, s: &Session, clock: &Clock) -> Option<String> {
        if s.iteration >= self.config.max_iterations {
            return Some(format!(
                "the iteration budget ({}) is spent",
                self.config.max_iterations
            ));
        }
        if s.usage.images >= self.config.max_images {
            return Some(format!(
                "the image budget ({}) is spent",
                self.config.max_images
            ));
        }
        if clock.active() >= self.config.time_budget {
            return Some(format!(
                "the time budget ({} s) is spent",
                self.config.time_budget.as_secs()
            ));
        }
        if self.config.cost_per_image_usd > 0.0
            && s.usage.cost_usd + self.config.cost_per_image_usd > self.config.max_cost_usd
        {
            return Some(format!(
                "the cost budget (${:.2}) is spent",
                self.config.max_cost_usd
            ));
        }
        None
    }

    async fn stop(&self, s: &mut Session, io: &SessionIo, reason: String) -> Result<Phase> {
        if s.candidates.is_empty() {
            return Err(Error::InvalidRequest {
                field: "budget",
                reason: format!("{reason} before any image was made"),
            });
        }
        self.emit(
            io,
            AgentEvent::Message {
                text: format!("Stopping: {reason}."),
            },
        )
        .await;
        s.stopped = Some(reason);
        Ok(Phase::Present)
    }

    async fn critique(&self, s: &mut Session, io: &mut SessionIo, clock: &Clock) -> Result<Phase> {
        let plan = s
            .plan
            .clone()
            .ok_or_else(|| Error::Store("critique without a plan".into()))?;
        let requested = Self::requested_colours(&plan, s.kit.as_ref());
        let kit = s.kit.clone();
        for i in 0..s.candidates.len() {
            if s.candidates[i].critique.is_some() {
                continue;
            }
            let c = s.candidates[i].clone();
            let tool = Tool::CritiqueImage;
            let args = json!({"image": c.image.id, "colours": plan.colours});
            let id = self.tool_call(s, io, tool, args).await?;
            let pixels = self.tools.images.get(&c.image).await?;
            let prompt = c.prompt.clone();
            let requested = requested.clone();
            let kit = kit.clone();
            let critics = self.tools.critics.clone();
            let critique = tokio::task::spawn_blocking(move || {
                let seen = critics.look(&pixels, &prompt);
                critique_image(CritiqueInput {
                    image: &pixels,
                    prompt: &prompt,
                    requested: &requested,
                    kit: kit.as_ref(),
                    target: None,
                    layout: None,
                    pixels: &seen,
                })
            })
            .await
            .map_err(|e| Error::Images(format!("critique thread: {e}")))?;
            let summary = format!(
                "score {:.2}, {}",
                critique.score,
                if critique.passed { "passed" } else { "failed" }
            );
            self.tool_result(s, io, id, tool, Ok(summary)).await;
            self.emit(
                io,
                AgentEvent::Critique {
                    image_id: c.image.id.clone(),
                    passed: critique.passed,
                    score: critique.score,
                    checks: critique.checks.clone(),
                    not_measured: critique.not_measured.clone(),
                },
            )
            .await;
            self.emit(
                io,
                AgentEvent::Image {
                    image: c.image.clone(),
                    iteration: c.iteration,
                    seed: c.seed,
                    prompt: c.prompt.clone(),
                    score: critique.score,
                    passed: critique.passed,
                },
            )
            .await;
            s.candidates[i].critique = Some(critique);
        }
        if s.best()
            .and_then(|b| b.critique.as_ref())
            .is_some_and(|c| c.passed)
        {
            return Ok(Phase::Present);
        }
        if s.iteration >= 2 {
            let now = s.best_score_of(s.iteration).unwrap_or(0.0);
            let before = (1..s.iteration)
                .filter_map(|i| s.best_score_of(i))
                .fold(0f32, f32::max);
            if now < before + self.config.min_improvement {
                return self
                    .stop(
                        s,
                        io,
                        format!(
                            "the last round did not beat the best score so far ({before:.2}; last round {now:.2})"
                        ),
                    )
                    .await;
            }
        }
        if let Some(reason) = self.spent(s, clock) {
            return self.stop(s, io, reason).await;
        }
        Ok(Phase::Refine)
    }

    async fn refine(&self, s: &mut Session, io: &mut SessionIo) -> Result<Phase> {
        let mut plan = s
            .plan
            .clone()
            .ok_or_else(|| Error::Store("refine without a plan".into()))?;
        let best = s.best().cloned();
        let failures: Vec<_> = best
            .as_ref()
            .and_then(|b| b.critique.as_ref())
            .map(|c| c.failures().cloned().collect())
            .unwrap_or_default();
        let score = best
            .as_ref()
            .and_then(|b| b.critique.as_ref())
            .map_or(0.0, |c| c.score);
        let context = json!({
            "brief": s.brief,
            "prompt": plan.prompt,
            "colours": plan.colours,
            "failures": failures,
            "score": score,
            "tool_error": s.tool_error,
        });
        let (r, usage): (Refinement, _) = self
            .decider
            .decide("refine", context, refinement_schema(), &io.cancel)
            .await?;
        self.account(s, usage);
        let before = plan.prompt.clone();
        let prompt = image_prompt(&without_instruction_echo(&clean(&r.prompt, usize::MAX)));
        if !prompt.is_empty() {
            plan.prompt = prompt;
        }
        plan.negative_prompt = clean(&r.negative_prompt, 120);
        // Parameter changes the checks call for, independent of the model's wording.
        let mut adjustments = Vec::new();
        if failures
            .iter()
            .any(|f| f.name == "technical" && f.detail.contains("speckle"))
        {
            let steps = (plan.steps + plan.steps / 2).min(self.tools.generator.limits().max_steps);
            if steps != plan.steps {
                adjustments.push(format!("more steps ({} → {steps})", plan.steps));
                plan.steps = steps;
            }
        }
        if failures.iter().any(|f| f.name == "requested_colours") {
            let guidance = (plan.guidance + 1.0).min(12.0);
            if guidance != plan.guidance {
                adjustments.push(format!(
                    "stronger colour guidance ({} → {guidance})",
                    plan.guidance
                ));
                plan.guidance = guidance;
            }
        }
        self.emit(
            io,
            AgentEvent::Message {
                text: present::refine_note(
                    &r.change,
                    &failures,
                    &before,
                    &plan.prompt,
                    &adjustments,
                ),
            },
        )
        .await;
        s.plan = Some(plan);
        Ok(Phase::Generate)
    }

    async fn present(&self, s: &mut Session, io: &mut SessionIo) -> Result<Phase> {
        let best = s
            .best()
            .cloned()
            .ok_or_else(|| Error::Store("present without an image".into()))?;
        let critique = best.critique.clone();
        let passed = critique.as_ref().is_some_and(|c| c.passed);
        let applied = s
            .plan
            .as_ref()
            .map(|p| p.guidelines_applied.clone())
            .unwrap_or_default();
        // The model describes; whether the image passed is stated by `present::compose`.
        let context = json!({
            "brief": s.brief,
            "prompt": present::subject(&best.prompt),
            "kit": s.kit,
        });
        let events = io.events.clone();
        let mut sink = move |text: &str| {
            // Advisory like progress: `final` carries the whole message.
            let _ = events.try_send(AgentEvent::MessageDelta {
                text: text.to_string(),
            });
        };
        let mut watcher = FieldWatcher::new("message", &mut sink);
        let (p, usage): (Presentation, _) = self
            .decider
            .decide_watching(
                "present",
                context,
                presentation_schema(),
                &io.cancel,
                Some(&mut watcher),
            )
            .await?;
        self.account(s, usage);
        // The chosen image first, then the other passing ones of its round.
        let mut images = vec![best.image.clone()];
        for c in &s.candidates {
            if c.image.id != best.image.id
                && c.critique.as_ref().is_some_and(|k| k.passed)
                && images.len() < 4
                && !images.iter().any(|i| i.id == c.image.id)
            {
                images.push(c.image.clone());
            }
        }
        // At the first channel the user named; the chosen image also at every other one.
        let channels: Vec<&'static resize::Preset> = s
            .plan
            .as_ref()
            .map(|p| {
                let mut names = p.channels.clone();
                if names.is_empty() {
                    names.extend(p.channel.clone());
                }
                names.iter().filter_map(|c| resize::preset(c)).collect()
            })
            .unwrap_or_default();
        // The layout's inputs, read once for every channel.
        let design = match s.plan.as_ref().and_then(|p| p.headline.clone()) {
            Some(headline) => self.design_inputs(s, headline).await,
            None => None,
        };
        // Enlarged once, for the largest channel, when the generated pixels fall short.
        let images = self.upscale_for(s, io, images, &channels).await;
        let chosen = images
            .first()
            .cloned()
            .unwrap_or_else(|| best.image.clone());
        let mut delivered = self
            .finish(s, io, images, channels.first().copied(), design.as_ref())
            .await;
        for preset in channels.iter().skip(1) {
            let more = self
                .finish(s, io, vec![chosen.clone()], Some(preset), design.as_ref())
                .await;
            delivered.extend(more);
        }
        let images = delivered;
        let text = present::compose(
            &p.message,
            &p.alt_text,
            critique.as_ref(),
            s.stopped.as_deref(),
            &s.brief,
            &best.prompt,
        );
        let outcome = Outcome {
            message: text.message,
            alt_text: text.alt_text,
            images: images.clone(),
            passed,
        };
        self.emit(
            io,
            AgentEvent::Final {
                message: outcome.message.clone(),
                alt_text: outcome.alt_text.clone(),
                images,
                passed,
                assumptions: s.assumptions.clone(),
                citations: applied,
                iterations: s.iteration,
                stopped: s.stopped.clone(),
            },
        )
        .await;
        s.outcome = Some(outcome);
        Ok(Phase::Done)
    }

    /// What a layout of `headline` needs: the brand's kit and its stored logo files. Without a
    /// brand kit there is no layout to follow, and the final message says the headline was not
    /// set; an unreadable logo store gives designs without a logo, and says so.
    async fn design_inputs(&self, s: &mut Session, headline: String) -> Option<Design> {
        let (Some(ing), Some(brand), Some(kit)) =
            (&self.tools.brands, s.brand.clone(), s.kit.clone())
        else {
            s.assumptions.push(format!(
                "the headline “{headline}” was not set on the image: layouts follow a brand kit, and this brief has none"
            ));
            return None;
        };
        let logos = match ing.assets(&s.tenant, &brand).await {
            Ok(logos) => logos,
            Err(e) => {
                s.assumptions.push(format!(
                    "the brand's logo could not be read ({e}); no logo placed"
                ));
                Vec::new()
            }
        };
        Some(Design {
            headline,
            kit,
            assets: Assets::stored(logos),
        })
    }

    /// `images` finished for one channel (or at their size when `preset` is `None`): set in the
    /// brand's layout when there is a `design`, else just resized.
    async fn finish(
        &self,
        s: &mut Session,
        io: &SessionIo,
        images: Vec<ImageRef>,
        preset: Option<&'static resize::Preset>,
        design: Option<&Design>,
    ) -> Vec<ImageRef> {
        match design {
            Some(d) => self.compose_headline(s, io, images, d, preset).await,
            None => self.size_for_channel(s, io, images, preset).await,
        }
    }

    /// The design's headline set on each image in the brand's layout (`compose_layout`,
    /// cropped to `preset` first when there is one), then the finished design
    /// critiqued on its pixels (layout, size, palette). A failed composition delivers the sized
    /// image and says why.
    async fn compose_headline(
        &self,
        s: &mut Session,
        io: &SessionIo,
        images: Vec<ImageRef>,
        design: &Design,
        preset: Option<&'static resize::Preset>,
    ) -> Vec<ImageRef> {
        let Design {
            headline,
            kit,
            assets,
        } = design;
        let prompt = s.best().map(|b| b.prompt.clone()).unwrap_or_default();
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let args = ComposeArgs {
                headline: headline.to_string(),
                preset: preset.map(|p| p.name.to_string()),
                ..ComposeArgs::default()
            };
            let call = json!({
                "image": image.id,
                "headline": args.headline,
                "template": args.template,
                "preset": args.preset,
            });
            let Ok(id) = self.tool_call(s, io, Tool::ComposeLayout, call).await else {
                out.push(image);
                continue;
            };
            let (style, marks) = (kit.clone(), assets.clone());
            let composed = self
                .derive(
                    &image,
                    "layout",
                    move |pixels| layout::compose(pixels, &style, &marks, &args),
                    |c| &c.image,
                )
                .await;
            match composed {
                Ok((stored, c)) => {
                    self.tool_result_image(
                        s,
                        io,
                        id,
                        Tool::ComposeLayout,
                        Ok(c.summary.clone()),
                        Some(stored.clone()),
                    )
                    .await;
                    self.critique_design(s, io, &stored, c, kit, &prompt, preset)
                        .await;
                    out.push(stored);
                }
                Err(e) => {
                    self.tool_result(s, io, id, Tool::ComposeLayout, Err(e.to_string()))
                        .await;
                    s.assumptions.push(format!(
                        "the headline “{headline}” could not be set ({e}); delivered without it"
                    ));
                    let sized = self.size_for_channel(s, io, vec![image], preset).await;
                    out.extend(sized);
                }
            }
        }
        out
    }

    /// The finished design's checks (its layout, its size for the channel, its colours), as a
    /// `critique` event for the delivered image.
    #[allow(clippy::too_many_arguments)]
    async fn critique_design(
        &self,
        s: &mut Session,
        io: &SessionIo,
        image: &ImageRef,
        composed: layout::Composed,
        kit: &KitSummary,
        prompt: &str,
        preset: Option<&'static resize::Preset>,
    ) {
        let Ok(id) = self
            .tool_call(
                s,
                io,
                Tool::CritiqueImage,
                json!({"image": image.id, "layout": true}),
            )
            .await
        else {
            return;
        };
        let (kit, prompt) = (kit.clone(), prompt.to_string());
        let critics = self.tools.critics.clone();
        let critique = tokio::task::spawn_blocking(move || {
            let seen = critics.look(&composed.image, &prompt);
            critique_image(CritiqueInput {
                image: &composed.image,
                prompt: &prompt,
                requested: &[],
                kit: Some(&kit),
                target: preset.map(|p| (p.width, p.height)),
                layout: Some(&composed.report),
                pixels: &seen,
            })
        })
        .await;
        match critique {
            Ok(c) => {
                let summary = format!(
                    "design score {:.2}, {}",
                    c.score,
                    if c.passed { "passed" } else { "failed" }
                );
                self.tool_result(s, io, id, Tool::CritiqueImage, Ok(summary))
                    .await;
                self.emit(
                    io,
                    AgentEvent::Critique {
                        image_id: image.id.clone(),
                        passed: c.passed,
                        score: c.score,
                        checks: c.checks,
                        not_measured: c.not_measured,
                    },
                )
                .await;
            }
            Err(e) => {
                self.tool_result(
                    s,
                    io,
                    id,
                    Tool::CritiqueImage,
                    Err(format!("critique thread: {e}")),
                )
                .await;
            }
        }
    }

    /// The images at `preset`'s size: each one whose aspect ratio differs is cropped around its
    /// subject and scaled (the `resize` tool). A failed resize delivers the image as generated
    /// and says so.
    /// Runs a post-processing tool on `image`'s pixels off the async threads and stores the
    /// image it made (`made` picks it from the tool's output); returns both.
    async fn derive<T: Send + 'static>(
        &self,
        image: &ImageRef,
        what: &'static str,
        tool: impl FnOnce(&RgbImage) -> atelier_tools::Result<T> + Send + 'static,
        made: fn(&T) -> &RgbImage,
    ) -> Result<(ImageRef, T)> {
        let pixels = self.tools.images.get(image).await?;
        let output = tokio::task::spawn_blocking(move || tool(&pixels))
            .await
            .map_err(|e| Error::Store(format!("the {what} thread failed: {e}")))?
            .map_err(|e| Error::Store(e.to_string()))?;
        let stored = self.tools.images.put(made(&output)).await?;
        Ok((stored, output))
    }

    /// Each image enlarged with ESRGAN-slim (`upscale`) by the smallest factor that covers the
    /// largest of `channels`; images already large enough, and every image when the upscaler is
    /// not loaded, pass unchanged. A failed upscale keeps the image (resizing interpolates it)
    /// and says so.
    async fn upscale_for(
        &self,
        s: &mut Session,
        io: &SessionIo,
        images: Vec<ImageRef>,
        channels: &[&'static resize::Preset],
    ) -> Vec<ImageRef> {
        let Some(upscalers) = self.tools.upscale.clone() else {
            return images;
        };
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let scale = channels
                .iter()
                .filter_map(|p| scale_for((image.width, image.height), (p.width, p.height)))
                .max();
            let Some(scale) = scale else {
                out.push(image);
                continue;
            };
            let call = json!({"image": image.id, "scale": scale});
            let Ok(id) = self.tool_call(s, io, Tool::Upscale, call).await else {
                out.push(image);
                continue;
            };
            let models = upscalers.clone();
            let upscaled = self
                .derive(
                    &image,
                    "upscaling",
                    move |pixels| models.upscale(pixels, &UpscaleArgs { scale }),
                    |r| &r.image,
                )
                .await;
            match upscaled {
                Ok((stored, r)) => {
                    self.tool_result_image(
                        s,
                        io,
                        id,
                        Tool::Upscale,
                        Ok(r.summary),
                        Some(stored.clone()),
                    )
                    .await;
                    out.push(stored);
                }
                Err(e) => {
                    self.tool_result(s, io, id, Tool::Upscale, Err(e.to_string()))
                        .await;
                    s.assumptions.push(format!(
                        "enlarged by interpolation: upscaling {}×{} failed ({e})",
                        image.width, image.height
                    ));
                    out.push(image);
                }
            }
        }
        out
    }

    async fn size_for_channel(
        &self,
        s: &mut Session,
        io: &SessionIo,
        images: Vec<ImageRef>,
        preset: Option<&'static resize::Preset>,
    ) -> Vec<ImageRef> {
        let Some(preset) = preset else {
            return images;
        };
        let wanted = f64::from(preset.width) / f64::from(preset.height);
        let mut out = Vec::with_capacity(images.len());
        for image in images {
            let aspect = f64::from(image.width) / f64::from(image.height);
            let big_enough = image.width >= preset.width && image.height >= preset.height;
            if (aspect / wanted - 1.0).abs() < 0.01 && big_enough {
                out.push(image);
                continue;
            }
            let args = ResizeArgs {
                preset: Some(preset.name.to_string()),
                ..ResizeArgs::default()
            };
            let id = match self
                .tool_call(
                    s,
                    io,
                    Tool::Resize,
                    json!({"image": image.id, "preset": preset.name, "mode": "crop"}),
                )
                .await
            {
                Ok(id) => id,
                Err(_) => {
                    out.push(image);
                    continue;
                }
            };
            let resized = self
                .derive(
                    &image,
                    "resize",
                    move |pixels| resize::resize(pixels, &args),
                    |r| &r.image,
                )
                .await;
            match resized {
                Ok((stored, r)) => {
                    self.tool_result_image(
                        s,
                        io,
                        id,
                        Tool::Resize,
                        Ok(r.summary),
                        Some(stored.clone()),
                    )
                    .await;
                    out.push(stored);
                }
                Err(e) => {
                    self.tool_result(s, io, id, Tool::Resize, Err(e.to_string()))
                        .await;
                    s.assumptions.push(format!(
                        "delivered at the generated size {}×{}: resizing to {} failed ({e})",
                        image.width, image.height, preset.name
                    ));
                    out.push(image);
                }
            }
        }
        out
    }
}

/// The channel preset a text names, by its words: stories and reels are tall, billboards and
/// thumbnails wide, banners and headers landscape, posts square. With several, the first
/// named.
pub fn channel_of(text: &str) -> Option<&'static resize::Preset> {
    channels_of(text).into_iter().next()
}

/// Words that announce the text to set on an image.
const TEXT_CUES: &[&str] = &[
    "headline", "text", "tagline", "title", "slogan", "caption", "saying", "says", "reads", "copy",
    "words", "message",
];

/// The text the user asks to set on the image, from their own words: a quoted phrase (straight
/// or curly quotes) with a cue word ("headline", "text", "saying" …) in the 40 characters before
/// it, or the words after "headline:" / "text:" up to the end of the sentence. At most
/// [`layout::MAX_HEADLINE_CHARS`] characters; `None` when the user asked for no text.
pub fn headline_of(text: &str) -> Option<String> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let cue_before = |byte: usize| {
        let start = text[..byte]
            .char_indices()
            .rev()
            .nth(39)
            .map_or(0, |(i, _)| i);
        let window = &text[start..byte];
        TEXT_CUES
            .iter()
            .any(|c| atelier_tools::critique::mentions(window, c))
    };
    let fits = |s: &str| {
        let n = s.chars().count();
        (1..=layout::MAX_HEADLINE_CHARS).contains(&n)
    };
    for (k, &(at, open)) in chars.iter().enumerate() {
        let close = match open {
            '"' => '"',
            '“' => '”',
            '‘' => '’',
            // An apostrophe inside a word ("Solstice's") opens nothing.
            '\'' if k == 0 || !chars[k - 1].1.is_alphanumeric() => '\'',
            _ => continue,
        };
        let Some(&(end, _)) = chars[k + 1..].iter().find(|&&(i, c)| {
            c == close
                && (close != '\'' || {
                    let next = text[i + c.len_utf8()..].chars().next();
                    next.is_none_or(|n| !n.is_alphanumeric())
                })
        }) else {
            continue;
        };
        let quoted = text[at + open.len_utf8()..end].trim();
        if fits(quoted) && cue_before(at) {
            return Some(quoted.to_string());
        }
    }
    let lower = text.to_lowercase();
    for cue in ["headline:", "text:", "tagline:", "slogan:"] {
        if let Some(i) = lower.find(cue) {
            let rest = &text[i + cue.len()..];
            let end = rest.find(['.', '\n', ';', '!', '?']).unwrap_or(rest.len());
            let phrase = rest[..end]
                .trim()
                .trim_matches(|c| matches!(c, '"' | '“' | '”' | '‘' | '’' | '\''));
            if fits(phrase.trim()) {
                return Some(phrase.trim().to_string());
            }
        }
    }
    None
}

/// Every channel preset a text names, in the order it names them (each once).
pub fn channels_of(text: &str) -> Vec<&'static resize::Preset> {
    const RULES: &[(&str, &[&str])] = &[
        (
            "story",
            &[
                "story",
                "stories",
                "reel",
                "reels",
                "tiktok",
                "vertical",
                "portrait format",
            ],
        ),
        (
            "widescreen",
            &[
                "billboard",
                "billboards",
                "youtube",
                "thumbnail",
                "thumbnails",
                "presentation",
                "slide",
                "widescreen",
                "16:9",
            ],
        ),
        (
            "landscape",
            &[
                "banner",
                "banners",
                "header",
                "headers",
                "linkedin",
                "link preview",
                "landscape",
                "cover image",
                "hero image",
            ],
        ),
        ("square", &["square", "social post", "post", "posts", "1:1"]),
    ];
    let lower = text.to_lowercase();
    let mut found: Vec<(usize, &'static resize::Preset)> = RULES
        .iter()
        .filter_map(|(name, words)| {
            let first = words
                .iter()
                .filter(|w| atelier_tools::critique::mentions(text, w))
                .filter_map(|w| lower.find(&w.to_lowercase()))
                .min()?;
            Some((first, resize::preset(name)?))
        })
        .collect();
    // "Instagram" alone means a post; with a story or reel named it is only the platform.
    if found.is_empty() && atelier_tools::critique::mentions(text, "instagram") {
        found.extend(resize::preset("square").map(|p| (0, p)));
    }
    found.sort_by_key(|(at, _)| *at);
    found.into_iter().map(|(_, p)| p).collect()
}

/// Why a brief needs a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ask {
    /// The brief names nothing to draw (or the model's subject is not in its words).
    NoSubject,
    /// The brief contradicts itself.
    Contradiction(String),
    /// The brief asks for what the brand forbids.
    Forbidden(String),
}

impl Ask {
    /// What the question is about, for the record.
    pub fn about(&self) -> &'static str {
        match self {
            Ask::NoSubject => "subject",
            Ask::Contradiction(_) => "contradiction",
            Ask::Forbidden(_) => "brand rules",
        }
    }
}

/// Words that name a format or nothing at all, not a thing to draw.
const VAGUE: &[&str] = &[
    "something",
    "anything",
    "thing",
    "things",
    "stuff",
    "image",
    "images",
    "picture",
    "pictures",
    "graphic",
    "graphics",
    "visual",
    "visuals",
    "design",
    "designs",
    "artwork",
    "art",
    "banner",
    "banners",
    "post",
    "posts",
    "poster",
    "posters",
    "flyer",
    "flyers",
    "hero",
    "creative",
    "content",
    "campaign",
    "launch",
    "event",
    "usual",
    "nice",
    "cool",
    "good",
    "great",
    "new",
    "social",
    "media",
    "instagram",
    "story",
    "stories",
    "web",
    "email",
    "print",
    "the",
    "for",
    "our",
    "and",
    "with",
    "make",
    "create",
    "need",
    "needs",
    "please",
    "asap",
    "pop",
    "different",
    "same",
    "next",
    "week",
    "discussed",
    "what",
    "you",
    "know",
    "can",
    "us",
    "square",
    "wide",
];

/// The lower-cased words of `text` that could name a thing to draw: three letters or more
/// and not in [`VAGUE`].
fn content_words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .map(str::to_lowercase)
        .filter(|w| w.chars().count() >= 3 && !VAGUE.contains(&w.as_str()))
}

/// The model's suggested answers to a question, as quick replies: trimmed, each once, at most
/// four; for "what should the image show?" only those that name something to show (a small
/// model offers the formats of the prompt's own wording, "A banner", "A post", "something").
fn quick_replies(choices: &[String], reason: &Ask) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in choices {
        let c = clean(c, 120);
        if c.is_empty()
            || out.iter().any(|o| o.eq_ignore_ascii_case(&c))
            || (matches!(reason, Ask::NoSubject) && content_words(&c).next().is_none())
        {
            continue;
        }
        out.push(c);
        if out.len() == 4 {
            break;
        }
    }
    out
}

/// The code's decision, from what the model read: ask when the subject is missing or not in
/// the brief's own words (a model must not invent one), when the brief contradicts itself, or
/// when it asks for what the brand forbids.
pub fn needs_asking(s: &Session, u: &Understanding, forbidden: &[String]) -> Option<Ask> {
    let said = said_by_user(s);
    if let Some(rule) = atelier_tools::critique::forbidden_matches(&said, forbidden).first() {
        return Some(Ask::Forbidden((*rule).to_string()));
    }
    let contradiction = u.contradiction.trim();
    if !contradiction.is_empty() {
        return Some(Ask::Contradiction(contradiction.to_string()));
    }
    let grounded = content_words(&u.subject).any(|w| said_words(&said).any(|s| s == w));
    (!grounded).then_some(Ask::NoSubject)
}

/// What the user said, lower-cased: the brief and every answer.
fn said_by_user(s: &Session) -> String {
    let mut said = s.brief.to_lowercase();
    for e in &s.exchanges {
        if let Some(a) = &e.answer {
            said.push(' ');
            said.push_str(&a.to_lowercase());
        }
    }
    said
}

/// The example subject the understanding prompt (`prompts/agent/understand.j2`) shows the
/// model. A small model copies it into questions, quick replies and assumptions for briefs
/// that have nothing to do with it (a coffee question for a scooter brand); what it writes is
/// checked against these words.
pub const UNDERSTAND_EXAMPLE: &str = "a cup of coffee on a wooden table";

/// Words a question may use to ask what to show without naming a thing to show.
const ASKING: &[&str] = &[
    "show",
    "shows",
    "feature",
    "features",
    "featured",
    "depict",
    "display",
    "include",
    "subject",
    "main",
    "focus",
    "focal",
    "product",
    "products",
    "should",
    "would",
    "like",
    "want",
    "which",
    "about",
    "theme",
    "topic",
    "message",
    "promote",
    "promoting",
    "see",
    "appear",
    "put",
    "kind",
    "type",
    "scene",
    "there",
    "this",
    "that",
    "your",
];

/// The content words of `text` the user never said (a plural counts as its singular: the kit's
/// "cups" says "cup").
fn unsaid<'a>(text: &'a str, said: &'a str) -> impl Iterator<Item = String> + 'a {
    content_words(text).filter(move |w| !said_words(said).any(|s| singular(s) == singular(w)))
}

/// A word without a plural `s` (a crude stem, enough to match "cups" with "cup").
fn singular(word: &str) -> &str {
    match word.strip_suffix('s') {
        Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem,
        _ => word,
    }
}

fn said_words(said: &str) -> impl Iterator<Item = &str> {
    said.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Words of the understanding prompt's frame: the line that names the brand ("The brand is
/// Voltline; its palette, voice and rules will be applied") and the kinds of assumption it
/// asks for ("size, style, mood"), with the little words around them.
const FRAME: &[&str] = &[
    "the",
    "and",
    "for",
    "with",
    "will",
    "its",
    "are",
    "our",
    "brand",
    "brands",
    "palette",
    "voice",
    "rules",
    "applied",
    "apply",
    "size",
    "style",
    "mood",
    "assume",
    "assumed",
    "assumption",
    "else",
    "default",
    "standard",
    "any",
    "all",
];

/// Whether an assumption adds nothing the plan could use: every word of three letters or more
/// is the prompt's frame ("The brand is Voltline", "size", "style", "mood"), the brand's name,
/// or what the user already said ("The cup is a ceramic cup" for "a ceramic cup of coffee on a
/// wooden table"; the plan reads the brief itself, and such echoes ended up pasted into the
/// image prompt).
fn adds_nothing(assumption: &str, user_said: &str, brand: Option<&str>) -> bool {
    let brand = brand.map(str::to_lowercase).unwrap_or_default();
    // Every word of three letters or more counts ("square" says something here, though it
    // names no subject).
    let lower = assumption.to_lowercase();
    said_words(&lower)
        .filter(|w| w.chars().count() >= 3)
        .all(|w| {
            FRAME.contains(&w)
                || said_words(&brand).any(|b| b == w)
                || said_words(user_said).any(|u| singular(u) == singular(w))
        })
}

/// Whether a question about a missing subject names something the user did not say (other
/// than the words of asking): it then presupposes a subject the model invented.
fn presupposes(question: &str, said: &str) -> bool {
    unsaid(question, said).any(|w| !ASKING.contains(&w.as_str()))
}

/// Whether `text` repeats a word of the prompt's own example that the user never said.
fn echoes_example(text: &str, said: &str) -> bool {
    let example: Vec<String> = content_words(UNDERSTAND_EXAMPLE).collect();
    unsaid(text, said).any(|w| example.contains(&w))
}

/// Model text made safe to use: whitespace runs collapsed, at most `n` characters (the schema
/// already bounds lengths; this holds when a backend does not).
fn clean(text: &str, n: usize) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(n)
        .collect()
}

/// The model's image prompt made fit for the image model: whitespace collapsed, at most
/// [`PROMPT_CHARS`], each comma-separated clause once (a small model can loop: "…, a glass of
/// warm coffee, a warm cup of coffee, a glass of warm coffee, …" was seen in the main job), and
/// without a last clause that the length limit cut off mid-phrase ("…, a glass of warm,").
fn image_prompt(text: &str) -> String {
    let whole = clean(text, usize::MAX);
    let cut = whole.chars().count() > PROMPT_CHARS;
    let text: String = whole.chars().take(PROMPT_CHARS).collect();
    let ends_open = cut || text.trim_end().ends_with(',');
    let mut clauses: Vec<&str> = text
        .trim_end()
        .trim_end_matches(',')
        .split(',')
        .map(str::trim)
        .collect();
    if ends_open && clauses.len() > 1 {
        clauses.pop();
    }
    let key = |c: &str| c.trim_end_matches(['.', ';', '!']).trim().to_lowercase();
    let mut kept: Vec<&str> = Vec::new();
    for c in clauses {
        if !key(c).is_empty() && !kept.iter().any(|k| key(k) == key(c)) {
            kept.push(c);
        }
    }
    kept.join(", ")
}

/// Openings of the refine prompt's own lines (`refine.j2`). A small model sometimes carries
/// them into the new image prompt ("…, for InstagramColours the image must show: Ember. The
/// next images should pass the best image so far (score 0.6): requested_colours: missing…",
/// smoke evaluation of 2026-11-30), where the image model would read them as things to draw.
const INSTRUCTION_ECHOES: &[&str] = &[
    "colours the image must show",
    "colors the image must show",
    "the next images should",
    "failed checks of",
    "the best image so far",
    "current prompt:",
    "rewrite the prompt",
    "the last images did not pass",
    "<brief>",
    "the image tool failed",
];

/// An image prompt cut where it starts to repeat the refine instructions.
fn without_instruction_echo(prompt: &str) -> String {
    // ASCII lower-casing keeps every byte offset, so an offset found in `lower` cuts `prompt`.
    let lower = prompt.to_ascii_lowercase();
    match INSTRUCTION_ECHOES
        .iter()
        .filter_map(|echo| lower.find(echo))
        .min()
    {
        Some(i) => prompt[..i]
            .trim_end_matches(|c: char| !c.is_alphanumeric())
            .to_string(),
        None => prompt.to_string(),
    }
}

/// A sentence for the status event of each phase.
fn describe(phase: Phase) -> String {
    match phase {
        Phase::Understand => "reading the brief",
        Phase::Clarify => "waiting for an answer",
        Phase::Retrieve => "looking up the brand's guidelines",
        Phase::Plan => "planning the images",
        Phase::Generate => "generating",
        Phase::Critique => "checking the images",
        Phase::Refine => "refining the prompt",
        Phase::Present => "writing the result",
        Phase::Done => "done",
        Phase::Failed => "failed",
        Phase::Cancelled => "cancelled",
    }
    .to_string()
}

/// The nearest plain colour word (the vocabulary image models know) to an sRGB colour.
pub fn plain_colour_word(rgb: [u8; 3]) -> &'static str {
    COLOURS
        .iter()
        .map(|c| (delta_e(c.rgb, rgb), c.name))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or("grey", |(_, n)| n)
}

/// Active time of a session: wall time minus time spent waiting for the user.
#[derive(Debug)]
struct Clock {
    before_ms: u64,
    started: Instant,
    waiting: Duration,
    paused_at: Option<Instant>,
}

impl Clock {
    fn new(before_ms: u64) -> Self {
        Clock {
            before_ms,
            started: Instant::now(),
            waiting: Duration::ZERO,
            paused_at: None,
        }
    }
    fn pause(&mut self) {
        self.paused_at = Some(Instant::now());
    }
    fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            self.waiting += at.elapsed();
        }
    }
    fn active(&self) -> Duration {
        Duration::from_millis(self.before_ms) + self.started.elapsed().saturating_sub(self.waiting)
    }
    fn active_ms(&self) -> u64 {
        self.active().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn quick_replies_for_a_missing_subject_name_something_to_show() {
        use super::{Ask, quick_replies};
        let offered: Vec<String> = [
            "A banner",
            " a banner ",
            "something",
            "A scooter on a wet street at night",
            "",
            "A vibrant, colorful poster",
            "A VIBRANT, COLORFUL POSTER",
            "a rider at sunrise",
            "neon city lights",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            quick_replies(&offered, &Ask::NoSubject),
            [
                "A scooter on a wet street at night",
                "A vibrant, colorful poster",
                "a rider at sunrise",
                "neon city lights",
            ]
        );
        // Other questions keep every distinct answer (a format can answer a contradiction).
        assert_eq!(
            quick_replies(&offered[..3], &Ask::Contradiction("post and banner".into())),
            ["A banner", "something"]
        );
    }

    #[test]
    fn assumptions_that_add_nothing_are_dropped() {
        use super::adds_nothing;
        let brand = Some("Voltline");
        // Seen after a skipped question: the prompt's own lines, copied back.
        assert!(adds_nothing("The brand is Voltline", "", brand));
        assert!(adds_nothing("size", "", brand));
        assert!(adds_nothing("Style", "", brand));
        assert!(adds_nothing("mood.", "", brand));
        assert!(adds_nothing(
            "Voltline's palette, voice and rules will be applied",
            "",
            brand
        ));
        assert!(adds_nothing("", "", brand));
        // Seen in the main job: the brief's own subject, restated.
        let brief = "a ceramic cup of coffee on a wooden table in morning light";
        assert!(adds_nothing("The cup is a ceramic cup", brief, None));
        assert!(adds_nothing(
            "The cup is a ceramic cup and the table is a wooden table",
            brief,
            None
        ));
        assert!(adds_nothing("the cups are ceramic", brief, None));
        // Assumptions with a value of their own stay.
        assert!(!adds_nothing("size: square 1080 x 1080", "", brand));
        assert!(!adds_nothing("mood: energetic", "", brand));
        assert!(!adds_nothing("style: flat vector", "", brand));
        assert!(!adds_nothing("size: square", "", brand));
        assert!(!adds_nothing("the cup is white", brief, None));
        assert!(!adds_nothing("mood: calm", brief, None));
        assert!(!adds_nothing("The brand is Voltline", "", None));
        assert!(!adds_nothing("The brand is Voltline", "", Some("Solstice")));
    }

    #[test]
    fn an_image_prompt_keeps_each_clause_once_and_drops_one_cut_off() {
        use super::{PROMPT_CHARS, image_prompt};
        // Seen in the main job: a loop, cut by the length limit in the middle of a phrase.
        let looped = "A ceramic cup of coffee on a wooden table in morning light, a glass of \
            warm coffee, a warm cup of coffee, a glass of warm coffee, a warm cup of coffee, a \
            glass of warm coffee, a glass of warm coffee, a glass of warm coffee, a glass of warm,";
        assert_eq!(
            image_prompt(looped),
            "A ceramic cup of coffee on a wooden table in morning light, a glass of warm coffee, \
             a warm cup of coffee"
        );
        // Longer than the limit: cut, and the clause the cut split is dropped.
        let long = format!("navy ground, {}", "gold confetti ".repeat(40));
        assert_eq!(image_prompt(&long), "navy ground");
        assert!(image_prompt(&"x".repeat(400)).chars().count() <= PROMPT_CHARS);
        // A prompt that fits is left as it is, full stop included.
        assert_eq!(
            image_prompt("a red  scooter, teal ground, Teal ground."),
            "a red scooter, teal ground"
        );
        assert_eq!(image_prompt("a red scooter."), "a red scooter.");
        assert_eq!(image_prompt(" , ,"), "");
    }

    #[test]
    fn the_prompt_example_stays_in_the_prompt() {
        use super::{UNDERSTAND_EXAMPLE, echoes_example, presupposes};
        assert!(
            include_str!("../../prompts/agent/understand.j2").contains(UNDERSTAND_EXAMPLE),
            "the guard must name the example the template shows"
        );
        let said = "we need a banner. voltline";
        // The question seen in the smoke eval, and questions that only ask.
        assert!(presupposes("What is the color of the coffee?", said));
        assert!(presupposes("What colour should the scooter be?", said));
        assert!(!presupposes("", said));
        assert!(!presupposes("What should the banner show?", said));
        assert!(!presupposes(
            "Which product would you like to feature?",
            said
        ));
        assert!(!presupposes("What should the Voltline banner show?", said));
        // The example's words leak only where the user did not say them.
        assert!(echoes_example("A cup of coffee", said));
        assert!(echoes_example("The coffee is a red coffee", said));
        assert!(!echoes_example("A scooter on a wet street", said));
        assert!(!echoes_example(
            "A coffee cup on a table",
            "a banner for our coffee cup, on a table"
        ));
        assert!(!echoes_example(
            "A coffee cup",
            "solstice coffee: bright cups"
        ));
        assert!(echoes_example("A coffee cup", "solstice: bright glass"));
    }

    #[test]
    fn a_refined_prompt_loses_the_instructions_it_copied() {
        use super::without_instruction_echo as cut;
        assert_eq!(
            cut(
                "A green coffee with a leaf art on a warm cream background, for InstagramColours the image must show: Ember, Espresso, Crema. The next images should pass the best image so far (score 0.6)"
            ),
            "A green coffee with a leaf art on a warm cream background, for Instagram"
        );
        assert_eq!(
            cut("A cup in Ember red. Current prompt: a cup"),
            "A cup in Ember red"
        );
        // A prompt of its own passes through; one that is only an echo becomes empty (the
        // caller then keeps the previous prompt).
        assert_eq!(
            cut("an ember-red cup on cream, steam rising"),
            "an ember-red cup on cream, steam rising"
        );
        assert_eq!(cut("Colours the image must show: Ember."), "");
        assert_eq!(
            cut("Café crème — COLOURS THE IMAGE MUST SHOW"),
            "Café crème"
        );
    }

    use super::*;

    #[test]
    fn channels_come_from_the_users_words() {
        let name = |t: &str| channel_of(t).map(|p| p.name);
        assert_eq!(name("A web banner for the summer sale"), Some("landscape"));
        assert_eq!(name("An Instagram story of a latte"), Some("story"));
        assert_eq!(name("Billboard: a scooter on a road"), Some("widescreen"));
        assert_eq!(name("A square social post"), Some("square"));
        assert_eq!(name("A poster of a scooter"), None, "poster is not post");
        assert_eq!(name("Make something nice"), None);
        assert_eq!(name("For Instagram"), Some("square"));
        let all = |t: &str| channels_of(t).iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(
            all("Summer sale: an Instagram post, a story and a web banner, same design"),
            ["square", "story", "landscape"]
        );
        assert_eq!(
            all("a banner, and the banner again as a banner"),
            ["landscape"]
        );
        assert!(all("a poster").is_empty());
    }

    #[test]
    fn the_headline_comes_from_the_users_words() {
        let h = |t: &str| headline_of(t);
        assert_eq!(
            h("A square post with the headline \"Summer sale\": an iced coffee").as_deref(),
            Some("Summer sale")
        );
        assert_eq!(
            h("A banner saying “Charge further” over a city at night").as_deref(),
            Some("Charge further")
        );
        assert_eq!(
            h("Story with the text 'Slow mornings, bright cups' on a latte").as_deref(),
            Some("Slow mornings, bright cups")
        );
        assert_eq!(
            h("Web banner. Headline: Ride the night. Scooter on a wet street").as_deref(),
            Some("Ride the night")
        );
        // No text asked for: quotes without a cue, apostrophes, plain briefs.
        assert_eq!(h("A latte with a \"cozy\" feel"), None);
        assert_eq!(h("Solstice's autumn blend on a wooden table"), None);
        assert_eq!(
            h("A web banner of a Voltline scooter parked at night"),
            None
        );
        assert_eq!(h(&format!("headline \"{}\"", "x".repeat(91))), None);
    }

    fn read(subject: &str, contradiction: &str) -> Understanding {
        Understanding {
            subject: subject.into(),
            contradiction: contradiction.into(),
            question: String::new(),
            choices: Vec::new(),
            assumptions: Vec::new(),
        }
    }

    #[test]
    fn the_code_asks_when_the_subject_is_vague_invented_contradictory_or_forbidden() {
        let s = |brief: &str| Session::new("x", "t", brief, None);
        let rules = vec!["riding without a helmet".to_string()];
        let clear = s("A cup of coffee on a wooden table");
        assert_eq!(
            needs_asking(&clear, &read("a cup of coffee", ""), &rules),
            None
        );
        let vague = s("Make something nice for our banner");
        assert_eq!(
            needs_asking(&vague, &read("something nice banner", ""), &rules),
            Some(Ask::NoSubject)
        );
        // A subject the brief never mentioned is the model's invention.
        assert_eq!(
            needs_asking(&vague, &read("a coffee cup", ""), &rules),
            Some(Ask::NoSubject)
        );
        assert!(matches!(
            needs_asking(&clear, &read("a cup", "no cup"), &rules),
            Some(Ask::Contradiction(_))
        ));
        let unsafe_brief = s("A rider without a helmet doing tricks");
        assert_eq!(
            needs_asking(&unsafe_brief, &read("a rider", ""), &rules),
            Some(Ask::Forbidden("riding without a helmet".into()))
        );
        // An answer can supply the subject.
        let mut answered = s("Make something");
        answered.exchanges.push(Exchange {
            question: "What?".into(),
            choices: vec![],
            about: "subject".into(),
            answer: Some("falling leaves".into()),
        });
        assert_eq!(
            needs_asking(&answered, &read("falling leaves", ""), &rules),
            None
        );
    }

    #[test]
    fn plain_colour_words_are_the_nearest_ones() {
        assert_eq!(plain_colour_word([20, 30, 90]), "navy");
        assert_eq!(plain_colour_word([245, 230, 204]), "beige");
    }
}
