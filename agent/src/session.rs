//! A session's whole state, serialisable so a session survives a restart, and where it is kept.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use atelier_tools::brand::KitSummary;
use atelier_tools::critique::Critique;
use atelier_tools::retrieve::Passage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::ImageRef;

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Decide whether to ask or to go on.
    Understand,
    /// A question is open; waiting for the user.
    Clarify,
    /// Look up the brand's kit and guidelines.
    Retrieve,
    /// Turn the brief into a generation plan.
    Plan,
    /// Generate this iteration's variants.
    Generate,
    /// Check this iteration's images; pass, stop or refine.
    Critique,
    /// Change the prompt and parameters from the failed checks.
    Refine,
    /// Write the final message.
    Present,
    /// Finished with a result.
    Done,
    /// Stopped by an error.
    Failed,
    /// Stopped by the user.
    Cancelled,
}

impl Phase {
    /// No further transitions.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed | Phase::Cancelled)
    }
}

/// One clarifying question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub question: String,
    pub choices: Vec<String>,
    /// What the question was about (`brand`, `subject`, …), for the record.
    pub about: String,
    /// `None` while open; the user's words once answered.
    pub answer: Option<String>,
}

/// What to generate, from the plan decision, validated and clamped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// What the image shows, in a few words.
    pub subject: String,
    /// The prompt of the current iteration (refinement rewrites it).
    pub prompt: String,
    pub negative_prompt: String,
    /// Palette colour names the image must show.
    pub colours: Vec<String>,
    pub variants: u32,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    /// Headline text for the layout, when the brief has one.
    pub headline: Option<String>,
    /// The channel preset the delivered images are sized for (`square`, `landscape`, `story`,
    /// `widescreen`), when the brief or the answers name one.
    #[serde(default)]
    pub channel: Option<String>,
    /// Every channel the user's words name, `channel` first: the chosen design is delivered at
    /// each of these sizes.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Citations (`document § section`) of the passages the plan applies.
    pub guidelines_applied: Vec<String>,
    pub rationale: String,
}

/// One generated image and what the critics said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub image: ImageRef,
    pub iteration: u32,
    pub seed: u64,
    pub prompt: String,
    /// `None` until the critique phase has run on it.
    pub critique: Option<Critique>,
}

/// What a session has spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub images: u32,
    pub llm_calls: u32,
    pub llm_tokens: u32,
    pub tool_failures: u32,
    /// Model compute time, in milliseconds.
    pub compute_ms: u64,
    pub cost_usd: f64,
}

/// The final answer, once written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub message: String,
    pub alt_text: String,
    pub images: Vec<ImageRef>,
    pub passed: bool,
}

/// Everything about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub tenant: String,
    pub brief: String,
    /// The brand id, given or chosen in a clarifying question.
    pub brand: Option<String>,
    pub phase: Phase,
    pub exchanges: Vec<Exchange>,
    /// The user said "just go": no more questions.
    pub just_go: bool,
    /// What the agent assumed instead of asking.
    pub assumptions: Vec<String>,
    pub kit: Option<KitSummary>,
    pub passages: Vec<Passage>,
    pub plan: Option<Plan>,
    /// Generation rounds started (1-based once generating).
    pub iteration: u32,
    pub candidates: Vec<Candidate>,
    /// The last tool error, given to the model as data in the next decision.
    pub tool_error: Option<String>,
    /// Retries of the current failing tool call.
    pub retries: u32,
    pub usage: Usage,
    /// Wall time spent in earlier runs of this session (before a restart), milliseconds.
    pub elapsed_ms: u64,
    pub outcome: Option<Outcome>,
    /// Why the session failed, when it did.
    pub failure: Option<String>,
    /// Why refining stopped before an image passed every check (a budget spent, refining no
    /// longer helping, generation failing), when it did. Absent in sessions stored before it
    /// existed, which kept the reason among the assumptions.
    #[serde(default)]
    pub stopped: Option<String>,
    /// Counter for event ids (questions, tool calls).
    pub next_id: u32,
}

impl Session {
    /// A new session for a brief.
    pub fn new(
        id: impl Into<String>,
        tenant: impl Into<String>,
        brief: impl Into<String>,
        brand: Option<String>,
    ) -> Self {
        Session {
            id: id.into(),
            tenant: tenant.into(),
            brief: brief.into(),
            brand,
            phase: Phase::Understand,
            exchanges: Vec::new(),
            just_go: false,
            assumptions: Vec::new(),
            kit: None,
            passages: Vec::new(),
            plan: None,
            iteration: 0,
            candidates: Vec::new(),
            tool_error: None,
            retries: 0,
            usage: Usage::default(),
            elapsed_ms: 0,
            outcome: None,
            failure: None,
            stopped: None,
            next_id: 1,
        }
    }

    /// A fresh id for a question or tool call.
    pub fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Questions asked so far (answered or not).
    pub fn questions_asked(&self) -> u32 {
        self.exchanges.len() as u32
    }

    /// The open question, if one is waiting for an answer.
    pub fn open_question(&self) -> Option<&Exchange> {
        self.exchanges.last().filter(|e| e.answer.is_none())
    }

    /// The best critiqued candidate so far: passing first, then by score.
    pub fn best(&self) -> Option<&Candidate> {
        self.candidates
            .iter()
            .filter(|c| c.critique.is_some())
            .max_by(|a, b| {
                let key = |c: &Candidate| {
                    c.critique
                        .as_ref()
                        .map_or((false, 0.0), |k| (k.passed, k.score))
                };
                let (pa, sa) = key(a);
                let (pb, sb) = key(b);
                pa.cmp(&pb).then(sa.total_cmp(&sb))
            })
    }

    /// Best score among the candidates of one iteration.
    pub fn best_score_of(&self, iteration: u32) -> Option<f32> {
        self.candidates
            .iter()
            .filter(|c| c.iteration == iteration)
            .filter_map(|c| c.critique.as_ref().map(|k| k.score))
            .max_by(f32::total_cmp)
    }
}

/// Where sessions are kept between transitions. `platform` implements it on the metadata
/// database; [`MemorySessionStore`] keeps them in process.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn save(&self, session: &Session) -> Result<()>;
    async fn load(&self, id: &str) -> Result<Option<Session>>;
    async fn delete(&self, id: &str) -> Result<()>;
}

/// Sessions in memory, serialised to JSON as a database would store them.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<String, String>>,
}

impl MemorySessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions stored.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |m| m.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of the stored sessions.
    pub fn ids(&self) -> Vec<String> {
        self.sessions
            .lock()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn save(&self, session: &Session) -> Result<()> {
        let json = serde_json::to_string(session).map_err(|e| Error::Store(e.to_string()))?;
        self.sessions
            .lock()
            .map_err(|e| Error::Store(e.to_string()))?
            .insert(session.id.clone(), json);
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<Session>> {
        let json = self
            .sessions
            .lock()
            .map_err(|e| Error::Store(e.to_string()))?
            .get(id)
            .cloned();
        json.map(|j| serde_json::from_str(&j).map_err(|e| Error::Store(e.to_string())))
            .transpose()
    }

    async fn delete(&self, id: &str) -> Result<()> {
        self.sessions
            .lock()
            .map_err(|e| Error::Store(e.to_string()))?
            .remove(id);
        Ok(())
    }
}
