//! What a run records: `results.json` (every case, its transcript summary, images, timings and
//! scores, and the aggregates) and one `events.jsonl` per case.

use std::path::Path;

use atelier_agent::AgentEvent;
use atelier_tools::critique::Check;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::score::{CaseScores, Summary};
use crate::suite::Case;

/// Version of the results format.
pub const RESULTS_VERSION: u32 = 1;
/// The results file in a run directory.
pub const RESULTS_FILE: &str = "results.json";
/// The report file in a run directory.
pub const REPORT_FILE: &str = "report.html";

/// One run of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub version: u32,
    pub suite: String,
    #[serde(default)]
    pub description: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub duration_ms: u64,
    pub setup: Setup,
    pub cases: Vec<CaseRecord>,
    pub summary: Summary,
}

/// What ran the cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// `in-process` or `server`.
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    pub chat_model: String,
    pub image_model: String,
    /// The agent's budgets and defaults, as configured.
    pub agent: serde_json::Value,
    /// The price of an hour of model compute used for the cost estimate.
    pub compute_usd_per_hour: f64,
}

/// A case's run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub case: Case,
    /// `done`, `failed`, `cancelled`, or `error` (the harness could not run it).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub questions: Vec<QuestionRecord>,
    pub images: Vec<ImageRecord>,
    /// Ids of the images the final answer delivered.
    pub delivered: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_message: Option<String>,
    #[serde(default)]
    pub alt_text: String,
    /// The agent's own verdict on what it delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    pub iterations: u32,
    #[serde(default)]
    pub assumptions: Vec<String>,
    /// Why refining stopped before an image passed every check, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    #[serde(default)]
    pub citations: Vec<String>,
    /// The plan's headline, when the runner can see the plan (in process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headline: Option<String>,
    /// Time per step: each phase the session went through (`phase:plan`) and each tool call
    /// (`tool:generate_image`), one entry per occurrence.
    pub steps: Vec<StepTiming>,
    pub duration_ms: u64,
    pub usage: UsageRecord,
    /// The case's event log, relative to the run directory.
    pub events_file: String,
    pub scores: CaseScores,
}

/// A question the agent asked and what the script answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionRecord {
    pub text: String,
    pub choices: Vec<String>,
    /// `None`: the script skipped ("just go").
    pub answer: Option<String>,
}

/// An image the agent made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of the PNG.
    pub id: String,
    /// Relative to the run directory.
    pub file: String,
    pub width: u32,
    pub height: u32,
    pub iteration: u32,
    pub seed: u64,
    pub prompt: String,
    /// The agent's critique score and verdict.
    pub score: f32,
    pub passed: bool,
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Made by a post-processing tool (e.g. resized for the channel) from a generated image,
    /// so it has no prompt or checks of its own.
    #[serde(default)]
    pub post_processed: bool,
    /// For a post-processed image: the generated image it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<String>,
}

/// How long one step took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    pub step: String,
    pub ms: f64,
}

/// What a case spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub llm_calls: u32,
    /// `None` when the runner cannot see them (over the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u32>,
    pub images: u32,
    /// Model compute time the agent measured, in milliseconds.
    pub compute_ms: u64,
    /// What hosted APIs charged, as the agent counted it.
    pub hosted_cost_usd: f64,
    /// Hosted cost plus compute time at the run's hourly price.
    pub cost_estimate_usd: f64,
}

/// One line of `events.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedEvent {
    /// Milliseconds since the case started.
    pub at_ms: f64,
    pub event: AgentEvent,
}

impl RunResults {
    /// Read `results.json` from a run directory (or the file itself).
    pub fn load(path: &Path) -> Result<RunResults> {
        let file = if path.is_dir() {
            path.join(RESULTS_FILE)
        } else {
            path.to_path_buf()
        };
        let bad = |message: String| Error::Results {
            path: file.clone(),
            message,
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let results: RunResults = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not an Atelier results file: {e}")))?;
        if results.version != RESULTS_VERSION {
            return Err(bad(format!(
                "results format version {}; this build reads version {RESULTS_VERSION}",
                results.version
            )));
        }
        Ok(results)
    }

    /// Write `results.json` into `dir`, atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(RESULTS_FILE);
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &json)
    }
}

/// Write beside, then rename, so a crash never leaves half a file under its name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |e: std::io::Error| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(bad)?;
    std::fs::rename(&tmp, path).map_err(bad)
}
