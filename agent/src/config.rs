//! The agent's limits and defaults, every one explicit.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Budgets and defaults of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Clarifying questions per session (0 never asks).
    pub max_questions: u32,
    /// How long to wait for an answer before going on with assumptions.
    #[serde(with = "secs")]
    pub answer_timeout: Duration,
    /// Generation rounds (the first and each refinement).
    pub max_iterations: u32,
    /// Images per session, all rounds together.
    pub max_images: u32,
    /// Wall time per session, not counting time waiting for answers.
    #[serde(with = "secs")]
    pub time_budget: Duration,
    /// Money per session; with `cost_per_image_usd` 0 (local models) it never binds.
    pub max_cost_usd: f64,
    /// What one image costs (hosted APIs).
    pub cost_per_image_usd: f64,
    /// Most variants per round.
    pub max_variants: u32,
    /// Guideline passages retrieved for planning.
    pub top_k: usize,
    /// Extra attempts when the model's answer does not parse.
    pub decision_retries: u32,
    /// Extra attempts when a tool fails.
    pub tool_retries: u32,
    /// A refinement must raise the best score by at least this much to try another.
    pub min_improvement: f32,
    pub temperature: f32,
    pub seed: u64,
    /// Token budget of one decision.
    pub decision_max_tokens: u32,
    /// Image size and sampling steps when the plan does not say.
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            max_questions: 2,
            answer_timeout: Duration::from_secs(300),
            max_iterations: 3,
            max_images: 12,
            time_budget: Duration::from_secs(600),
            max_cost_usd: 1.0,
            cost_per_image_usd: 0.0,
            max_variants: 4,
            top_k: 4,
            decision_retries: 2,
            tool_retries: 2,
            min_improvement: 0.01,
            temperature: 0.0,
            seed: 0,
            decision_max_tokens: 640,
            width: 256,
            height: 256,
            steps: 12,
            guidance: 3.0,
        }
    }
}

impl AgentConfig {
    /// Check every limit; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: String| Err(Error::InvalidRequest { field, reason });
        if self.max_questions > 5 {
            return bad(
                "max_questions",
                format!("{} is outside 0..=5", self.max_questions),
            );
        }
        if !(1..=10).contains(&self.max_iterations) {
            return bad(
                "max_iterations",
                format!("{} is outside 1..=10", self.max_iterations),
            );
        }
        if !(1..=64).contains(&self.max_images) {
            return bad(
                "max_images",
                format!("{} is outside 1..=64", self.max_images),
            );
        }
        if !(1..=8).contains(&self.max_variants) {
            return bad(
                "max_variants",
                format!("{} is outside 1..=8", self.max_variants),
            );
        }
        if !(1..=10).contains(&self.top_k) {
            return bad("top_k", format!("{} is outside 1..=10", self.top_k));
        }
        if self.time_budget.is_zero() || self.time_budget > Duration::from_secs(3600) {
            return bad("time_budget", "must be 1..=3600 seconds".into());
        }
        if self.decision_retries > 5 || self.tool_retries > 5 {
            return bad("decision_retries", "retries are 0..=5".into());
        }
        if !(self.max_cost_usd >= 0.0 && self.cost_per_image_usd >= 0.0) {
            return bad("max_cost_usd", "costs must be 0 or more".into());
        }
        if !(16..=2048).contains(&self.decision_max_tokens) {
            return bad(
                "decision_max_tokens",
                format!("{} is outside 16..=2048", self.decision_max_tokens),
            );
        }
        Ok(())
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
