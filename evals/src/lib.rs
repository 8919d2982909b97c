//! The evaluation harness: run suites of briefs through the agent, score what it did, and
//! write a report people want to read.
//!
//! - [`suite`]: suites in TOML (`evals/suites/`): briefs, brands, scripted answers,
//!   expectations;
//! - [`runner`]: [`runner::run_suite`] drives each case through a [`runner::Target`] (the
//!   agent in process) and records it; a failing case is recorded and the run goes on;
//! - [`server`]: the same cases against a running server over the WebSocket chat protocol;
//! - [`score`]: per-case scorers and the aggregates with bootstrap confidence intervals;
//! - [`record`]: `results.json` and the per-case event logs;
//! - [`report`]: one self-contained HTML file with charts and image grids;
//! - [`compare`]: a run against a baseline, regressions flagged (the CI gate).
//!
//! The `atelier eval` command of the binary wires the backends and calls these.

pub mod compare;
pub mod error;
pub mod record;
pub mod report;
pub mod runner;
pub mod score;
pub mod server;
pub mod suite;

pub use error::{Error, Result};
pub use record::RunResults;
pub use suite::Suite;
