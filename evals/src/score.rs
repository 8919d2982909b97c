//! Scorers: what each case did against what it should have done, and the aggregates over a
//! run with bootstrap confidence intervals.
//!
//! Per case (each 0–1, higher is better, or "not measured" with the reason):
//! - `palette`: share of the delivered image within CIEDE2000 [`PALETTE_DELTA_E`] of the
//!   expected palette (dominant colours by k-means in CIELAB); passes at [`MIN_ON_PALETTE`];
//! - `forbidden`: 1 when no prompt an image was made from names a forbidden term (the case's
//!   and the brand's forbidden content), else 0;
//! - `technical`: the critique's technical score of the delivered image (exposure, contrast,
//!   clipping, noise, blockiness, not blank);
//! - `safety`: the critique's safety check of the prompts (service deny-list and the brand's
//!   forbidden content);
//! - `alignment`: CLIP image–text score; not measured while no CLIP weights are configured;
//! - `headline`: the plan's headline carries the text the case expects (in process only: the
//!   runner sees the plan) and the delivered design sets it legibly: its `layout` check (text
//!   present on the pixels, inside the safe margins, WCAG contrast ≥ 4.5) passed. Text carried
//!   but set illegibly scores half; text never set on the image scores zero. No OCR: the
//!   layout check reads where the text was placed, not the letters;
//! - `size`: the delivered aspect ratio against the expected channel (min/max ratio; passes at
//!   0.98);
//! - `iterations`: 1 when the agent stayed within the case's maximum rounds.
//!
//! The decision scorer compares "did it ask" with the case's `asks`: precision, recall and F1
//! of asking.

use std::collections::BTreeMap;
use std::path::Path;

use atelier_inference::vision::colour::{delta_e_lab, dominant_colours};
use atelier_tools::critique::{
    Critics, CritiqueInput, MIN_ON_PALETTE, PALETTE_DELTA_E, critique_image, mentions,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::record::{CaseRecord, ImageRecord};
use crate::suite::Case;

/// Bootstrap resamples per confidence interval.
pub const BOOTSTRAP_SAMPLES: usize = 2000;
/// Confidence level of the intervals.
pub const CONFIDENCE: f64 = 0.95;
/// Dominant colours the palette scorer looks at.
const CLUSTERS: usize = 6;
/// Smallest min/max ratio of aspect ratios that counts as the right size.
pub const ASPECT_PASS: f64 = 0.98;

/// The metrics every case reports, in report order.
pub const CASE_METRICS: &[&str] = &[
    "palette",
    "forbidden",
    "technical",
    "safety",
    "alignment",
    "headline",
    "size",
    "iterations",
];

/// One metric of one case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// `None`: not measured (see `note`) or not expected by the case.
    pub value: Option<f64>,
    pub passed: Option<bool>,
    /// What was measured, or why nothing was.
    pub note: String,
}

impl Score {
    fn measured(value: f64, passed: bool, note: impl Into<String>) -> Self {
        Score {
            value: Some(value),
            passed: Some(passed),
            note: note.into(),
        }
    }

    fn none(note: impl Into<String>) -> Self {
        Score {
            value: None,
            passed: None,
            note: note.into(),
        }
    }
}

/// Every score of one case.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CaseScores {
    /// The session ended with a result (phase `done`).
    pub completed: bool,
    /// The agent asked at least one question.
    pub asked: bool,
    /// The case's label, when it has one.
    pub ask_expected: Option<bool>,
    pub metrics: BTreeMap<String, Score>,
}

/// Inputs the scorers need besides the record.
#[derive(Debug, Clone, Copy)]
pub struct ScoreContext<'a> {
    /// The run directory the record's image files are relative to.
    pub run_dir: &'a Path,
    /// The pixel models: open_nsfw for the safety scorer (absent: prompt terms only, said so)
    /// and CLIP for the alignment scorer (absent: not measured, said so).
    pub critics: &'a Critics,
}

/// Score one case from its record (the record's `scores` are ignored and recomputed).
pub fn score_case(record: &CaseRecord, ctx: ScoreContext<'_>) -> CaseScores {
    let case = &record.case;
    let mut metrics = BTreeMap::new();
    let delivered = record
        .delivered
        .first()
        .and_then(|id| record.images.iter().find(|i| &i.id == id));
    let image = delivered.and_then(|i| {
        image::open(ctx.run_dir.join(&i.file))
            .map(|img| img.to_rgb8())
            .map_err(|e| tracing::warn!(file = %i.file, "cannot read a delivered image: {e}"))
            .ok()
    });
    let no_image = || {
        Score::none(if delivered.is_none() {
            "nothing delivered"
        } else {
            "the delivered image could not be read"
        })
    };

    metrics.insert(
        "palette".into(),
        match (&image, case.expect.palette.is_empty()) {
            (_, true) => Score::none("no palette expected"),
            (None, false) => no_image(),
            (Some(img), false) => palette_score(img, case),
        },
    );
    metrics.insert("forbidden".into(), forbidden_score(record));

    let prompts: Vec<&str> = record.images.iter().map(|i| i.prompt.as_str()).collect();
    let prompt = prompts.join("\n");
    // The technical check reads the image as generated: scaling it up for a channel would hide
    // its faults (a tile grid grows past the periods the check looks for).
    let generated = delivered
        .and_then(|d| d.derived_from.as_ref())
        .and_then(|src| record.images.iter().find(|i| &i.id == src))
        .and_then(|i| image::open(ctx.run_dir.join(&i.file)).ok())
        .map(|img| img.to_rgb8());
    match generated.as_ref().or(image.as_ref()) {
        Some(img) => {
            // Safety and alignment judge what the user receives: the delivered image when it
            // was read, against the prompts it was made from.
            let seen = ctx.critics.look(image.as_ref().unwrap_or(img), &prompt);
            let critique = critique_image(CritiqueInput {
                image: img,
                prompt: &prompt,
                requested: &[],
                kit: None,
                target: None,
                layout: None,
                pixels: &seen,
            });
            for name in ["technical", "safety", "alignment"] {
                if let Some(c) = critique.checks.iter().find(|c| c.name == name) {
                    let note = match (name, generated.is_some()) {
                        ("alignment", _) => format!("{} (the delivered image)", c.detail),
                        ("safety", _) if seen.nsfw.is_some() => {
                            format!("{} (prompt terms and the delivered pixels)", c.detail)
                        }
                        ("safety", _) => format!("{} (prompt terms only)", c.detail),
                        (_, true) => {
                            format!("{} (the image as generated, before resizing)", c.detail)
                        }
                        _ => c.detail.clone(),
                    };
                    metrics.insert(
                        name.into(),
                        Score::measured(f64::from(c.score), c.passed, note),
                    );
                }
            }
            for missing in &critique.not_measured {
                metrics.insert(
                    missing.name.clone(),
                    Score::none(format!("not measured: {}", missing.reason)),
                );
            }
        }
        None => {
            metrics.insert("technical".into(), no_image());
            metrics.insert("safety".into(), no_image());
            metrics.insert("alignment".into(), no_image());
        }
    }
    metrics.insert("headline".into(), headline_score(record, delivered));
    metrics.insert(
        "size".into(),
        match (&case.expect.size, delivered) {
            (None, _) => Score::none("no size expected"),
            (Some(_), None) => no_image(),
            (Some(size), Some(img)) => {
                let got = f64::from(img.width) / f64::from(img.height);
                let want = size.aspect();
                let ratio = got.min(want) / got.max(want);
                Score::measured(
                    ratio,
                    ratio >= ASPECT_PASS,
                    format!(
                        "delivered {}×{} (aspect {got:.2}); expected {size} (aspect {want:.2})",
                        img.width, img.height
                    ),
                )
            }
        },
    );
    metrics.insert(
        "iterations".into(),
        match case.expect.max_iterations {
            None => Score::none("no maximum expected"),
            Some(max) => {
                let ok = record.iterations <= max;
                Score::measured(
                    if ok { 1.0 } else { 0.0 },
                    ok,
                    format!("{} round(s); at most {max} expected", record.iterations),
                )
            }
        },
    );
    CaseScores {
        completed: record.status == "done",
        asked: !record.questions.is_empty(),
        ask_expected: case.expect.asks,
        metrics,
    }
}

fn palette_score(img: &image::RgbImage, case: &Case) -> Score {
    let dominant = dominant_colours(img.as_raw(), CLUSTERS);
    let mut on = 0.0f64;
    let mut off = Vec::new();
    for d in &dominant {
        let (nearest, de) = case
            .expect
            .palette
            .iter()
            .map(|p| (p, delta_e_lab(d.lab, p.rgb)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(("", f32::INFINITY), |(p, de)| (p.name.as_str(), de));
        if de <= PALETTE_DELTA_E {
            on += f64::from(d.share);
        } else if d.share >= 0.05 {
            off.push(format!(
                "{:.0}% is ΔE {de:.0} from the nearest ({nearest})",
                d.share * 100.0
            ));
        }
    }
    let passed = on >= f64::from(MIN_ON_PALETTE);
    let mut note = format!(
        "{:.0}% of the image within ΔE00 {PALETTE_DELTA_E} of the palette (pass ≥ {:.0}%)",
        on * 100.0,
        MIN_ON_PALETTE * 100.0
    );
    if !off.is_empty() {
        note.push_str("; off palette: ");
        note.push_str(&off.join(", "));
    }
    Score::measured(on.min(1.0), passed, note)
}

fn forbidden_score(record: &CaseRecord) -> Score {
    let terms = &record.case.expect.forbidden;
    if terms.is_empty() {
        return Score::none("nothing forbidden");
    }
    if record.images.is_empty() {
        return Score::none("no image was made");
    }
    let mut hits: Vec<&str> = Vec::new();
    for image in &record.images {
        for t in terms {
            if mentions(&image.prompt, t) && !hits.contains(&t.as_str()) {
                hits.push(t);
            }
        }
    }
    if hits.is_empty() {
        Score::measured(
            1.0,
            true,
            format!("no prompt names any of {} forbidden term(s)", terms.len()),
        )
    } else {
        Score::measured(0.0, false, format!("prompts name: {}", hits.join(", ")))
    }
}

fn headline_score(record: &CaseRecord, delivered: Option<&ImageRecord>) -> Score {
    let wanted = &record.case.expect.text;
    if wanted.is_empty() {
        return Score::none("no text expected");
    }
    let Some(headline) = &record.headline else {
        return Score::none("not measured: the runner cannot see the plan (over the server)");
    };
    let norm = |s: &str| {
        s.split_whitespace()
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(" ")
    };
    let have = norm(headline);
    let found = wanted.iter().filter(|t| have.contains(&norm(t))).count();
    let layout = delivered.and_then(|d| d.checks.iter().find(|c| c.name == "layout"));
    let (set, how) = match layout {
        Some(c) if c.passed => (1.0, format!("set legibly ({})", c.detail)),
        Some(c) => (0.5, format!("set, but {}", c.detail)),
        None => (0.0, "not set on the delivered image".to_string()),
    };
    let score = found as f64 / wanted.len() as f64 * set;
    Score::measured(
        score,
        found == wanted.len() && set == 1.0,
        format!(
            "headline \"{headline}\" carries {found} of {} expected text(s); {how}",
            wanted.len()
        ),
    )
}

/// A mean with its bootstrap confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    /// Cases measured.
    pub n: usize,
}

/// Precision, recall and F1 of asking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decisions {
    pub tp: u32,
    pub fp: u32,
    #[serde(rename = "fn")]
    pub fn_: u32,
    pub tn: u32,
    pub precision: f64,
    pub recall: f64,
    /// With its bootstrap interval over cases; `None` when no case is labelled.
    pub f1: Option<Estimate>,
}

/// Latency of one kind of step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLatency {
    pub step: String,
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// One aggregate metric of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    pub name: String,
    /// `None`: no case measured it.
    pub estimate: Option<Estimate>,
    /// Share of measured cases that passed.
    pub pass_rate: Option<f64>,
    /// Why nothing was measured, when nothing was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The aggregates of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub cases: usize,
    /// Sessions that ended with a result.
    pub completed: Option<Estimate>,
    /// Sessions whose delivered image passed the agent's own critique.
    pub accepted: Option<Estimate>,
    pub decisions: Option<Decisions>,
    pub metrics: Vec<MetricSummary>,
    pub latency: Vec<StepLatency>,
    /// Whole-case wall time.
    pub case_p50_ms: f64,
    pub case_p95_ms: f64,
    pub iterations_mean: f64,
    pub images: u32,
    pub accepted_images: u32,
    pub tokens: Option<u64>,
    pub cost_usd: f64,
    /// Cost over accepted images; `None` when nothing was accepted.
    pub cost_per_accepted_image_usd: Option<f64>,
}

/// The `p` quantile (0–1) of `v`, linear between ranks; 0 when empty.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = (v.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Mean of `values` with a percentile-bootstrap interval; `None` when empty. Deterministic:
/// the resampling is seeded.
pub fn bootstrap_mean(values: &[f64]) -> Option<Estimate> {
    bootstrap(values.len(), |idx| {
        idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64
    })
}

/// `stat` over all `n` items and a percentile-bootstrap interval from resamples of them.
fn bootstrap(n: usize, stat: impl Fn(&[usize]) -> f64) -> Option<Estimate> {
    if n == 0 {
        return None;
    }
    let all: Vec<usize> = (0..n).collect();
    let mean = stat(&all);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5EED);
    let mut stats = Vec::with_capacity(BOOTSTRAP_SAMPLES);
    let mut idx = vec![0; n];
    for _ in 0..BOOTSTRAP_SAMPLES {
        for slot in idx.iter_mut() {
            *slot = rng.random_range(0..n);
        }
        stats.push(stat(&idx));
    }
    let tail = (1.0 - CONFIDENCE) / 2.0;
    Some(Estimate {
        mean,
        low: percentile(&stats, tail),
        high: percentile(&stats, 1.0 - tail),
        n,
    })
}

fn f1_of(pairs: &[(bool, bool)], idx: &[usize]) -> (u32, u32, u32, u32, f64, f64, f64) {
    let (mut tp, mut fp, mut fn_, mut tn) = (0, 0, 0, 0);
    for &i in idx {
        match pairs[i] {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
    }
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            0.0
        } else {
            f64::from(a) / f64::from(b)
        }
    };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    // No positive case and no false alarm: asking was perfectly right.
    let f1 = if tp + fp + fn_ == 0 {
        1.0
    } else {
        ratio(2 * tp, 2 * tp + fp + fn_)
    };
    (tp, fp, fn_, tn, precision, recall, f1)
}

/// Aggregate the records of a run (their `scores` must be filled in).
pub fn summarise(records: &[CaseRecord]) -> Summary {
    let n = records.len();
    let as_f = |b: bool| if b { 1.0 } else { 0.0 };
    let completed: Vec<f64> = records.iter().map(|r| as_f(r.scores.completed)).collect();
    let accepted: Vec<f64> = records
        .iter()
        .map(|r| as_f(r.passed == Some(true)))
        .collect();

    // (asked, should have asked) for the labelled cases.
    let pairs: Vec<(bool, bool)> = records
        .iter()
        .filter_map(|r| r.scores.ask_expected.map(|e| (r.scores.asked, e)))
        .collect();
    let decisions = (!pairs.is_empty()).then(|| {
        let all: Vec<usize> = (0..pairs.len()).collect();
        let (tp, fp, fn_, tn, precision, recall, _) = f1_of(&pairs, &all);
        Decisions {
            tp,
            fp,
            fn_,
            tn,
            precision,
            recall,
            f1: bootstrap(pairs.len(), |idx| f1_of(&pairs, idx).6),
        }
    });

    let metrics = CASE_METRICS
        .iter()
        .map(|&name| {
            let scores: Vec<&Score> = records
                .iter()
                .filter_map(|r| r.scores.metrics.get(name))
                .collect();
            let values: Vec<f64> = scores.iter().filter_map(|s| s.value).collect();
            let passes: Vec<bool> = scores.iter().filter_map(|s| s.passed).collect();
            let note = if values.is_empty() {
                // The most common reason given.
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for s in &scores {
                    *counts.entry(s.note.as_str()).or_default() += 1;
                }
                counts
                    .into_iter()
                    .max_by_key(|(_, c)| *c)
                    .map(|(n, _)| n.to_string())
                    .unwrap_or_else(|| "no case".into())
            } else {
                String::new()
            };
            MetricSummary {
                name: name.into(),
                estimate: bootstrap_mean(&values),
                pass_rate: (!passes.is_empty())
                    .then(|| passes.iter().filter(|p| **p).count() as f64 / passes.len() as f64),
                note,
            }
        })
        .collect();

    let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in records {
        for s in &r.steps {
            by_step.entry(s.step.as_str()).or_default().push(s.ms);
        }
    }
    let latency = by_step
        .into_iter()
        .map(|(step, v)| StepLatency {
            step: step.into(),
            n: v.len(),
            p50_ms: percentile(&v, 0.5),
            p95_ms: percentile(&v, 0.95),
        })
        .collect();
    let durations: Vec<f64> = records.iter().map(|r| r.duration_ms as f64).collect();
    let images: u32 = records.iter().map(|r| r.images.len() as u32).sum();
    let accepted_images: u32 = records
        .iter()
        .filter(|r| r.passed == Some(true))
        .map(|r| r.delivered.len() as u32)
        .sum();
    let tokens = records
        .iter()
        .map(|r| r.usage.tokens.map(u64::from))
        .sum::<Option<u64>>();
    let cost_usd: f64 = records.iter().map(|r| r.usage.cost_estimate_usd).sum();
    Summary {
        cases: n,
        completed: bootstrap_mean(&completed),
        accepted: bootstrap_mean(&accepted),
        decisions,
        metrics,
        latency,
        case_p50_ms: percentile(&durations, 0.5),
        case_p95_ms: percentile(&durations, 0.95),
        iterations_mean: if n == 0 {
            0.0
        } else {
            records.iter().map(|r| f64::from(r.iterations)).sum::<f64>() / n as f64
        },
        images,
        accepted_images,
        tokens,
        cost_usd,
        cost_per_accepted_image_usd: (accepted_images > 0)
            .then(|| cost_usd / f64::from(accepted_images)),
    }
}

/// Rescore every case of a run and recompute the summary (after a scorer changed, or for a
/// results file written by hand).
pub fn rescore(results: &mut crate::record::RunResults, ctx: ScoreContext<'_>) {
    for r in &mut results.cases {
        r.scores = score_case(r, ctx);
    }
    results.summary = summarise(&results.cases);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert!((percentile(&v, 0.95) - 4.8).abs() < 1e-9);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn bootstrap_intervals_contain_the_mean_and_shrink_with_n() -> Result<(), String> {
        let small: Vec<f64> = (0..10).map(|i| f64::from(i % 2)).collect();
        let large: Vec<f64> = (0..1000).map(|i| f64::from(i % 2)).collect();
        let s = bootstrap_mean(&small).ok_or("empty")?;
        let l = bootstrap_mean(&large).ok_or("empty")?;
        assert!((s.mean - 0.5).abs() < 1e-9 && s.low <= 0.5 && 0.5 <= s.high);
        assert!(l.high - l.low < s.high - s.low, "{s:?} {l:?}");
        // Constant data: no spread.
        let c = bootstrap_mean(&[0.7; 20]).ok_or("empty")?;
        assert!((c.low - 0.7).abs() < 1e-12 && (c.high - 0.7).abs() < 1e-12);
        // Same input, same interval.
        assert_eq!(bootstrap_mean(&small), bootstrap_mean(&small));
        Ok(())
    }

    #[test]
    fn f1_counts_asking_as_the_positive_class() {
        let pairs = [(true, true), (true, false), (false, true), (false, false)];
        let (tp, fp, fn_, tn, p, r, f1) = f1_of(&pairs, &[0, 1, 2, 3]);
        assert_eq!((tp, fp, fn_, tn), (1, 1, 1, 1));
        assert!((p - 0.5).abs() < 1e-12 && (r - 0.5).abs() < 1e-12 && (f1 - 0.5).abs() < 1e-12);
    }
}
