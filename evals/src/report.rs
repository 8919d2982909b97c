//! The report: one self-contained HTML file (charts as inline SVG, images as data URIs, no
//! external resource) that a person reads to see how the agent did, case by case.

use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use image::ImageFormat;
use minijinja::{Environment, context};
use plotters::prelude::*;
use serde::Serialize;

use crate::compare::{Comparison, Kind};
use crate::error::{Error, Result};
use crate::record::{CaseRecord, REPORT_FILE, RunResults, write_atomic};
use crate::score::{CASE_METRICS, Estimate};

const TEMPLATE: &str = include_str!("../templates/report.html");
/// Longest side of an image in the report's grids.
pub const THUMBNAIL_PX: u32 = 256;
/// The charts every report has, by element id.
pub const CHARTS: &[&str] = &["chart-scores", "chart-latency", "chart-cases"];

const PASS: RGBColor = RGBColor(46, 125, 50);
const FAIL: RGBColor = RGBColor(198, 40, 40);
const BAR: RGBColor = RGBColor(30, 58, 95);
const BAR_LIGHT: RGBColor = RGBColor(120, 150, 190);

#[derive(Debug, Serialize)]
struct Chart {
    id: &'static str,
    title: String,
    svg: String,
}

#[derive(Debug, Serialize)]
struct Thumb {
    id: String,
    data_uri: String,
    caption: String,
    passed: bool,
    delivered: bool,
    checks: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ScoreRow {
    name: String,
    value: String,
    passed: Option<bool>,
    note: String,
}

#[derive(Debug, Serialize)]
struct CaseView<'a> {
    record: &'a CaseRecord,
    duration_s: String,
    scores: Vec<ScoreRow>,
    images: Vec<Thumb>,
    missing_images: usize,
}

#[derive(Debug, Serialize)]
struct CompareRow {
    metric: String,
    baseline: String,
    candidate: String,
    delta: String,
    allowed: String,
    regressed: bool,
    reason: String,
}

fn compare_rows(c: &Comparison) -> Vec<CompareRow> {
    let num = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    c.rows
        .iter()
        .map(|r| CompareRow {
            metric: r.metric.clone(),
            baseline: num(r.baseline),
            candidate: num(r.candidate),
            delta: r.delta.map_or(String::new(), |d| format!("{d:+.3}")),
            allowed: match r.kind {
                Kind::Rate => format!("−{:.3}", r.threshold),
                Kind::Time | Kind::Cost => format!("+{:.0}%", r.threshold * 100.0),
            },
            regressed: r.regressed,
            reason: r.reason.clone(),
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct SummaryRow {
    name: String,
    value: String,
    interval: String,
    pass_rate: String,
    n: String,
    note: String,
}

fn fmt_estimate(e: &Option<Estimate>) -> (String, String, String) {
    match e {
        Some(e) => (
            format!("{:.3}", e.mean),
            format!("{:.3} – {:.3}", e.low, e.high),
            e.n.to_string(),
        ),
        None => ("—".into(), String::new(), "0".into()),
    }
}

fn summary_rows(r: &RunResults) -> Vec<SummaryRow> {
    let s = &r.summary;
    let mut rows = Vec::new();
    let mut push = |name: &str, e: &Option<Estimate>, pass_rate: Option<f64>, note: String| {
        let (value, interval, n) = fmt_estimate(e);
        rows.push(SummaryRow {
            name: name.into(),
            value,
            interval,
            pass_rate: pass_rate.map_or(String::new(), |p| format!("{:.0}%", p * 100.0)),
            n,
            note,
        });
    };
    push(
        "completed",
        &s.completed,
        None,
        "sessions that ended with a result".into(),
    );
    push(
        "accepted",
        &s.accepted,
        None,
        "delivered work passed the agent's own critique".into(),
    );
    if let Some(d) = &s.decisions {
        push(
            "decision F1 (asking)",
            &d.f1,
            None,
            format!(
                "precision {:.2}, recall {:.2}; tp {} fp {} fn {} tn {}",
                d.precision, d.recall, d.tp, d.fp, d.fn_, d.tn
            ),
        );
    }
    for m in &s.metrics {
        push(&m.name, &m.estimate, m.pass_rate, m.note.clone());
    }
    rows
}

/// Render the report of `results` (images read from `run_dir`) as HTML.
pub fn render(
    results: &RunResults,
    run_dir: &Path,
    comparison: Option<&Comparison>,
) -> Result<String> {
    plot_font();
    let charts = vec![
        Chart {
            id: "chart-scores",
            title: "Scores with 95% bootstrap intervals".into(),
            svg: scores_chart(results)?,
        },
        Chart {
            id: "chart-latency",
            title: "Latency per step (p50 and p95)".into(),
            svg: latency_chart(results)?,
        },
        Chart {
            id: "chart-cases",
            title: "Wall time per case".into(),
            svg: cases_chart(results)?,
        },
    ];
    let cases: Vec<CaseView> = results
        .cases
        .iter()
        .map(|r| case_view(r, run_dir))
        .collect();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| Error::Run(format!("the report template is invalid: {e}")))?;
    let template = env
        .get_template("report.html")
        .map_err(|e| Error::Run(e.to_string()))?;
    let s = &results.summary;
    template
        .render(context! {
            r => results,
            summary_rows => summary_rows(results),
            charts => charts,
            cases => cases,
            comparison => comparison,
            comparison_rows => comparison.map(compare_rows).unwrap_or_default(),
            regressions => comparison.map_or(0, |c| c.regressions().count()),
            duration => format!("{:.1} min", results.duration_ms as f64 / 60_000.0),
            case_p50 => format!("{:.1} s", s.case_p50_ms / 1000.0),
            case_p95 => format!("{:.1} s", s.case_p95_ms / 1000.0),
            cost => format!("${:.4}", s.cost_usd),
            cost_per_accepted => s.cost_per_accepted_image_usd.map(|c| format!("${c:.4}")),
            tokens => s.tokens,
            iterations_mean => format!("{:.2}", s.iterations_mean),
            generated_at => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
        .map_err(|e| Error::Run(format!("rendering the report: {e}")))
}

/// Render and write `report.html` into `run_dir`; returns its path.
pub fn write(
    results: &RunResults,
    run_dir: &Path,
    comparison: Option<&Comparison>,
) -> Result<std::path::PathBuf> {
    let html = render(results, run_dir, comparison)?;
    let path = run_dir.join(REPORT_FILE);
    write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

fn case_view<'a>(r: &'a CaseRecord, run_dir: &Path) -> CaseView<'a> {
    let scores = CASE_METRICS
        .iter()
        .filter_map(|name| {
            r.scores.metrics.get(*name).map(|s| ScoreRow {
                name: (*name).into(),
                value: s.value.map_or("—".into(), |v| format!("{v:.2}")),
                passed: s.passed,
                note: s.note.clone(),
            })
        })
        .collect();
    let mut images = Vec::new();
    let mut missing = 0;
    for img in &r.images {
        match thumbnail(&run_dir.join(&img.file)) {
            Some(data_uri) => images.push(Thumb {
                id: img.id.clone(),
                data_uri,
                caption: if img.post_processed {
                    format!("resized to {}×{} for the channel", img.width, img.height)
                } else {
                    format!(
                        "round {} · seed {} · score {:.2}",
                        img.iteration, img.seed, img.score
                    )
                },
                passed: img.passed,
                delivered: r.delivered.contains(&img.id),
                checks: img
                    .checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect(),
            }),
            None => missing += 1,
        }
    }
    CaseView {
        record: r,
        duration_s: format!("{:.1}", r.duration_ms as f64 / 1000.0),
        scores,
        images,
        missing_images: missing,
    }
}

/// The image as a PNG data URI, scaled to fit [`THUMBNAIL_PX`]; `None` when unreadable.
fn thumbnail(path: &Path) -> Option<String> {
    let img = image::open(path).ok()?;
    let img = if img.width().max(img.height()) > THUMBNAIL_PX {
        img.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX)
    } else {
        img
    };
    let mut png = Vec::new();
    img.to_rgb8()
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .ok()?;
    Some(format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    ))
}

fn plot_font() {
    atelier_inference::plot::register_font();
}

fn chart_error(e: impl std::fmt::Display) -> Error {
    Error::Run(format!("drawing a chart: {e}"))
}

/// Horizontal bars of every 0–1 score with its interval.
fn scores_chart(r: &RunResults) -> Result<String> {
    let s = &r.summary;
    let mut bars: Vec<(String, Estimate)> = Vec::new();
    if let Some(e) = &s.completed {
        bars.push(("completed".into(), e.clone()));
    }
    if let Some(e) = &s.accepted {
        bars.push(("accepted".into(), e.clone()));
    }
    if let Some(f1) = s.decisions.as_ref().and_then(|d| d.f1.clone()) {
        bars.push(("decision F1".into(), f1));
    }
    for m in &s.metrics {
        if let Some(e) = &m.estimate {
            bars.push((m.name.clone(), e.clone()));
        }
    }
    let rows = bars.len().max(1);
    let height = 60 + 34 * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..1f64, (0..rows - 1).into_segmented())
            .map_err(chart_error)?;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("mean (0–1)")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, e))| {
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (e.mean, SegmentValue::Exact(i + 1)),
                    ],
                    BAR.filled(),
                );
                bar.set_margin(6, 6, 0, 0);
                bar
            }))
            .map_err(chart_error)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, e))| {
                PathElement::new(
                    vec![
                        (e.low, SegmentValue::CenterOf(i)),
                        (e.high, SegmentValue::CenterOf(i)),
                    ],
                    BLACK.stroke_width(2),
                )
            }))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// p50 and p95 of each step, in seconds.
fn latency_chart(r: &RunResults) -> Result<String> {
    let steps = &r.summary.latency;
    let rows = steps.len().max(1);
    let max = steps
        .iter()
        .map(|s| s.p95_ms / 1000.0)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let height = 60 + 30 * rows as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(200)
            .build_cartesian_2d(0f64..max, (0..rows - 1).into_segmented())
            .map_err(chart_error)?;
        let labels: Vec<String> = steps.iter().map(|s| s.step.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .x_desc("seconds")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        for (which, colour, top, bottom) in [("p95", BAR_LIGHT, 4, 14), ("p50", BAR, 14, 4)] {
            chart
                .draw_series(steps.iter().enumerate().map(|(i, s)| {
                    let v = if which == "p95" { s.p95_ms } else { s.p50_ms } / 1000.0;
                    let mut bar = Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (v, SegmentValue::Exact(i + 1)),
                        ],
                        colour.filled(),
                    );
                    bar.set_margin(top, bottom, 0, 0);
                    bar
                }))
                .map_err(chart_error)?
                .label(which)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

/// Each case's wall time, green when its delivered work was accepted.
fn cases_chart(r: &RunResults) -> Result<String> {
    let cases = &r.cases;
    let n = cases.len().max(1);
    let max = cases
        .iter()
        .map(|c| c.duration_ms as f64 / 1000.0)
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let width = (120 + 28 * n as u32).clamp(400, 1400);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..max)
            .map_err(chart_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(60))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => (i + 1).to_string(),
                _ => String::new(),
            })
            .x_desc("case (green: accepted, red: not)")
            .y_desc("seconds")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(chart_error)?;
        chart
            .draw_series(cases.iter().enumerate().map(|(i, c)| {
                let colour = if c.passed == Some(true) { PASS } else { FAIL };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), c.duration_ms as f64 / 1000.0),
                    ],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 3, 3);
                bar
            }))
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}
