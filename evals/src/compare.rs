//! Comparing a run with a baseline run: every headline metric side by side, and the ones that
//! got worse by more than their threshold flagged as regressions (the CI gate).
//!
//! Metrics come in three kinds with their own default thresholds:
//! - rates and scores (0–1, higher is better): a regression is a drop of more than
//!   [`DEFAULT_RATE_DROP`] (absolute);
//! - times (lower is better): a rise of more than [`DEFAULT_TIME_RISE`] (relative);
//! - costs (lower is better): a rise of more than [`DEFAULT_COST_RISE`] (relative).
//!
//! `--threshold NAME=VALUE` overrides one metric (`decision.f1=0.1`) or a whole kind
//! (`rate=0.02`, `time=0.25`, `cost=0.1`); the metric's own threshold wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::RunResults;

/// Largest drop of a rate or score that is not a regression (absolute).
pub const DEFAULT_RATE_DROP: f64 = 0.05;
/// Largest relative rise of a time that is not a regression.
pub const DEFAULT_TIME_RISE: f64 = 0.5;
/// Largest relative rise of a cost that is not a regression.
pub const DEFAULT_COST_RISE: f64 = 0.25;

/// What a metric measures, which decides its direction and threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// 0–1, higher is better.
    Rate,
    /// Milliseconds, lower is better.
    Time,
    /// Dollars, lower is better.
    Cost,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rate => "rate",
            Kind::Time => "time",
            Kind::Cost => "cost",
        }
    }
}

/// Regression thresholds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    by_metric: BTreeMap<String, f64>,
    by_kind: BTreeMap<&'static str, f64>,
}

impl Thresholds {
    /// Parse `NAME=VALUE` overrides; VALUE is a non-negative number.
    pub fn parse(overrides: &[String]) -> Result<Self> {
        let mut t = Thresholds::default();
        for given in overrides {
            let bad = |reason: String| Error::Threshold {
                given: given.clone(),
                reason,
            };
            let (name, value) = given
                .split_once('=')
                .ok_or_else(|| bad("write NAME=VALUE, e.g. decision.f1=0.1 or time=0.25".into()))?;
            let value: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad(format!("`{value}` is not a number ≥ 0")))?;
            let name = name.trim();
            match [Kind::Rate, Kind::Time, Kind::Cost]
                .into_iter()
                .find(|k| k.name() == name)
            {
                Some(kind) => {
                    t.by_kind.insert(kind.name(), value);
                }
                None if name.is_empty() => return Err(bad("the metric name is empty".into())),
                None => {
                    t.by_metric.insert(name.to_string(), value);
                }
            }
        }
        Ok(t)
    }

    fn of(&self, metric: &str, kind: Kind) -> f64 {
        self.by_metric
            .get(metric)
            .or_else(|| self.by_kind.get(kind.name()))
            .copied()
            .unwrap_or(match kind {
                Kind::Rate => DEFAULT_RATE_DROP,
                Kind::Time => DEFAULT_TIME_RISE,
                Kind::Cost => DEFAULT_COST_RISE,
            })
    }

    /// Metric names given that no run has (likely typos), to warn about.
    pub fn unknown<'a>(&'a self, known: &[String]) -> Vec<&'a str> {
        self.by_metric
            .keys()
            .filter(|k| !known.contains(k))
            .map(String::as_str)
            .collect()
    }
}

/// The headline metrics of a run, by name, with their kind. Metrics a run did not measure
/// are absent.
pub fn headline_metrics(r: &RunResults) -> BTreeMap<String, (f64, Kind)> {
    let s = &r.summary;
    let mut m = BTreeMap::new();
    if let Some(e) = &s.completed {
        m.insert("completed".into(), (e.mean, Kind::Rate));
    }
    if let Some(e) = &s.accepted {
        m.insert("accepted".into(), (e.mean, Kind::Rate));
    }
    if let Some(d) = &s.decisions {
        if let Some(f1) = &d.f1 {
            m.insert("decision.f1".into(), (f1.mean, Kind::Rate));
        }
        m.insert("decision.precision".into(), (d.precision, Kind::Rate));
        m.insert("decision.recall".into(), (d.recall, Kind::Rate));
    }
    for metric in &s.metrics {
        if let Some(e) = &metric.estimate {
            m.insert(format!("score.{}", metric.name), (e.mean, Kind::Rate));
        }
    }
    if s.cases > 0 {
        m.insert("latency.case.p50_ms".into(), (s.case_p50_ms, Kind::Time));
        m.insert("latency.case.p95_ms".into(), (s.case_p95_ms, Kind::Time));
    }
    for step in &s.latency {
        m.insert(
            format!("latency.{}.p95_ms", step.step),
            (step.p95_ms, Kind::Time),
        );
    }
    if let Some(c) = s.cost_per_accepted_image_usd {
        m.insert("cost.per_accepted_image_usd".into(), (c, Kind::Cost));
    }
    m
}

/// One metric in both runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub metric: String,
    pub kind: Kind,
    pub baseline: Option<f64>,
    pub candidate: Option<f64>,
    /// candidate − baseline.
    pub delta: Option<f64>,
    pub threshold: f64,
    pub regressed: bool,
    /// Why it regressed, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A run against its baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline_suite: String,
    pub baseline_started_at: String,
    pub rows: Vec<Row>,
}

impl Comparison {
    /// The rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.regressed)
    }

    /// One line per regression, for the terminal and the CI log.
    pub fn describe_regressions(&self) -> Vec<String> {
        self.regressions()
            .map(|r| format!("{}: {}", r.metric, r.reason))
            .collect()
    }
}

/// Compare `candidate` with `baseline`.
pub fn compare(baseline: &RunResults, candidate: &RunResults, t: &Thresholds) -> Comparison {
    let b = headline_metrics(baseline);
    let c = headline_metrics(candidate);
    let mut names: Vec<&String> = b.keys().chain(c.keys()).collect();
    names.sort();
    names.dedup();
    let rows = names
        .into_iter()
        .map(|name| {
            let bv = b.get(name).copied();
            let cv = c.get(name).copied();
            let kind = bv.or(cv).map_or(Kind::Rate, |v| v.1);
            let threshold = t.of(name, kind);
            let (baseline, candidate) = (bv.map(|v| v.0), cv.map(|v| v.0));
            let (regressed, reason) = match (baseline, candidate) {
                (Some(_), None) => (true, "measured in the baseline, not in this run".into()),
                (None, _) => (false, String::new()),
                (Some(b), Some(c)) => match kind {
                    Kind::Rate => {
                        let drop = b - c;
                        if drop > threshold + 1e-12 {
                            (
                                true,
                                format!(
                                    "fell from {b:.3} to {c:.3} (−{drop:.3}; allowed −{threshold:.3})"
                                ),
                            )
                        } else {
                            (false, String::new())
                        }
                    }
                    Kind::Time | Kind::Cost => {
                        let limit = b * (1.0 + threshold);
                        if c > limit + 1e-12 && b > 0.0 {
                            (
                                true,
                                format!(
                                    "rose from {b:.3} to {c:.3} (+{:.0}%; allowed +{:.0}%)",
                                    (c / b - 1.0) * 100.0,
                                    threshold * 100.0
                                ),
                            )
                        } else {
                            (false, String::new())
                        }
                    }
                },
            };
            Row {
                metric: name.clone(),
                kind,
                baseline,
                candidate,
                delta: baseline.zip(candidate).map(|(b, c)| c - b),
                threshold,
                regressed,
                reason,
            }
        })
        .collect();
    Comparison {
        baseline_suite: baseline.suite.clone(),
        baseline_started_at: baseline.started_at.clone(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_reject_garbage() -> Result<()> {
        let t = Thresholds::parse(&["decision.f1=0.1".into(), "time=0.2".into()])?;
        assert_eq!(t.of("decision.f1", Kind::Rate), 0.1);
        assert_eq!(t.of("score.palette", Kind::Rate), DEFAULT_RATE_DROP);
        assert_eq!(t.of("latency.case.p95_ms", Kind::Time), 0.2);
        assert_eq!(
            t.of("cost.per_accepted_image_usd", Kind::Cost),
            DEFAULT_COST_RISE
        );
        for bad in ["f1", "f1=-1", "f1=abc", "=0.1"] {
            let err = Thresholds::parse(&[bad.into()])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        Ok(())
    }
}
