//! The scorers, the report and the baseline gate on hand-made runs with known answers.

use std::path::Path;

use atelier_agent::{AgentEvent, ImageRef, Phase};
use atelier_evals::compare::{Thresholds, compare};
use atelier_evals::record::{RunResults, TimedEvent};
use atelier_evals::report::{self, CHARTS};
use atelier_evals::runner::{RunOptions, Transcript, build_record};
use atelier_evals::score::{ScoreContext, rescore, summarise};
use atelier_evals::suite::Suite;
use atelier_inference::vision::clip::ClipScorer;
use atelier_tools::critique::{ClipCritic, Critics, NO_CLIP};
use image::{Rgb, RgbImage};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAVY: [u8; 3] = [0x1E, 0x3A, 0x5F];
const CREAM: [u8; 3] = [0xF5, 0xE6, 0xCC];
const RED: [u8; 3] = [0xE1, 0x06, 0x00];

/// Three cases with known answers: a clear brief (should not ask), a vague one (should ask)
/// and another clear one.
fn suite() -> Result<Suite, atelier_evals::Error> {
    Suite::parse(
        r##"
name = "fixture"
description = "hand-made"

[[case]]
id = "clear-square"
brief = "A square post for the summer sale: an iced coffee."
answers = []
[case.expect]
asks = false
palette = ["#1E3A5F", "#F5E6CC"]
forbidden = ["neon"]
text = ["Summer sale"]
channel = "square"
max_iterations = 2

[[case]]
id = "vague"
brief = "Make something nice."
answers = ["a latte"]
[case.expect]
asks = true
palette = ["#1E3A5F", "#F5E6CC"]
max_iterations = 2

[[case]]
id = "clear-landscape"
brief = "A web banner: a scooter at night."
[case.expect]
asks = false
palette = ["#1E3A5F", "#F5E6CC"]
channel = "landscape"
"##,
        Path::new("fixture.toml"),
    )
}

/// A two-colour image: `top` over the first `share` of the rows, `bottom` below.
fn image(w: u32, h: u32, top: [u8; 3], bottom: [u8; 3], share: f32) -> RgbImage {
    let split = (h as f32 * share) as u32;
    RgbImage::from_fn(w, h, |x, y| {
        let base = if y < split { top } else { bottom };
        // A little texture so the technical check sees a real image, not a flat fill.
        let t = ((x * 7 + y * 13) % 9) as u8;
        Rgb([
            base[0].saturating_add(t),
            base[1].saturating_add(t),
            base[2].saturating_add(t),
        ])
    })
}

/// Store `img` in the run's images, by content address, and return its reference.
fn store(run: &Path, img: &RgbImage) -> Result<ImageRef, Box<dyn std::error::Error>> {
    use sha2::Digest;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    let id = hex::encode(sha2::Sha256::digest(&png));
    std::fs::create_dir_all(run.join("images"))?;
    std::fs::write(run.join("images").join(format!("{id}.png")), &png)?;
    Ok(ImageRef {
        id: id.clone(),
        uri: format!("images/{id}.png"),
        width: img.width(),
        height: img.height(),
    })
}

fn at(ms: f64, event: AgentEvent) -> TimedEvent {
    TimedEvent { at_ms: ms, event }
}

fn status(ms: f64, phase: Phase) -> TimedEvent {
    at(
        ms,
        AgentEvent::Status {
            phase,
            detail: String::new(),
        },
    )
}

/// A finished session: optional question, one image with its prompt, the final answer.
fn transcript(
    asked: bool,
    image: ImageRef,
    prompt: &str,
    headline: Option<&str>,
    passed: bool,
) -> Transcript {
    let mut events = vec![status(0.0, Phase::Understand)];
    let mut questions = Vec::new();
    let mut t = 1000.0;
    if asked {
        events.push(status(t, Phase::Clarify));
        events.push(at(
            t + 1.0,
            AgentEvent::Question {
                id: 1,
                text: "What should it show?".into(),
                choices: vec![],
            },
        ));
        questions.push(atelier_evals::record::QuestionRecord {
            text: "What should it show?".into(),
            choices: vec![],
            answer: Some("a latte".into()),
        });
        t += 3000.0;
    }
    events.push(status(t, Phase::Plan));
    events.push(status(t + 2000.0, Phase::Generate));
    events.push(at(
        t + 2001.0,
        AgentEvent::ToolCall {
            id: 2,
            tool: "generate_image".into(),
            args: serde_json::Value::Null,
        },
    ));
    events.push(at(
        t + 6001.0,
        AgentEvent::ToolResult {
            id: 2,
            tool: "generate_image".into(),
            ok: true,
            summary: String::new(),
            image: None,
        },
    ));
    events.push(at(
        t + 6002.0,
        AgentEvent::Image {
            image: image.clone(),
            iteration: 1,
            seed: 7,
            prompt: prompt.into(),
            score: if passed { 0.9 } else { 0.4 },
            passed,
        },
    ));
    if headline.is_some() {
        // The design with the headline set, critiqued on its pixels (as `present` reports it).
        events.push(at(
            t + 6002.5,
            AgentEvent::Critique {
                image_id: image.id.clone(),
                passed,
                score: if passed { 1.0 } else { 0.5 },
                checks: vec![atelier_tools::critique::Check {
                    name: "layout".into(),
                    passed,
                    score: if passed { 1.0 } else { 0.5 },
                    detail: "bottom-left template: headline 7.2:1".into(),
                    fix: None,
                }],
                not_measured: vec![],
            },
        ));
    }
    events.push(status(t + 6003.0, Phase::Present));
    events.push(at(
        t + 7000.0,
        AgentEvent::Final {
            message: "Here it is.".into(),
            alt_text: "an image".into(),
            images: vec![image],
            passed,
            assumptions: vec![],
            citations: vec![],
            iterations: 1,
            stopped: None,
        },
    ));
    Transcript {
        events,
        questions,
        status: "done".into(),
        error: None,
        headline: headline.map(str::to_string),
        usage: atelier_evals::record::UsageRecord {
            llm_calls: 3,
            tokens: Some(900),
            images: 1,
            compute_ms: 3_600_000 / 100,
            hosted_cost_usd: 0.0,
            cost_estimate_usd: 0.0,
        },
        duration_ms: (t + 7000.0) as u64,
    }
}

fn options(run: &Path) -> RunOptions {
    RunOptions {
        out: run.to_path_buf(),
        compute_usd_per_hour: 1.0,
        case_timeout: std::time::Duration::from_secs(60),
        critics: Critics::default(),
    }
}

/// The perfect run: asks exactly when it should, on palette, right text and size.
fn perfect_run(run: &Path) -> Result<RunResults, Box<dyn std::error::Error>> {
    let suite = suite()?;
    let on_palette = store(run, &image(64, 64, NAVY, CREAM, 0.4))?;
    let wide = store(run, &image(120, 63, NAVY, CREAM, 0.5))?;
    let transcripts = [
        transcript(
            false,
            on_palette.clone(),
            "iced coffee, navy and cream",
            Some("Summer sale!"),
            true,
        ),
        transcript(true, on_palette, "a latte, navy and cream", None, true),
        transcript(false, wide, "a scooter at night", None, true),
    ];
    run_of(&suite, transcripts.into(), run)
}

fn run_of(
    suite: &Suite,
    transcripts: Vec<Transcript>,
    run: &Path,
) -> Result<RunResults, Box<dyn std::error::Error>> {
    let opts = options(run);
    let cases = suite
        .cases
        .iter()
        .zip(transcripts)
        .map(|(c, t)| build_record(c, t, run, &opts))
        .collect::<Result<Vec<_>, _>>()?;
    let results = RunResults {
        version: atelier_evals::record::RESULTS_VERSION,
        suite: suite.name.clone(),
        description: suite.description.clone(),
        started_at: "2026-11-29T12:00:00Z".into(),
        duration_ms: 60_000,
        setup: atelier_evals::record::Setup {
            mode: "in-process".into(),
            server_url: None,
            chat_model: "fixture".into(),
            image_model: "fixture".into(),
            agent: serde_json::json!({}),
            compute_usd_per_hour: 1.0,
        },
        summary: summarise(&cases),
        cases,
    };
    results.save(run)?;
    Ok(results)
}

fn metric<'a>(r: &'a RunResults, case: usize, name: &str) -> &'a atelier_evals::score::Score {
    &r.cases[case].scores.metrics[name]
}

/// With CLIP weights the alignment scorer measures every delivered image against its prompt
/// (here the small random-weight checkpoint of the inference tests: the loading and scoring
/// code is real, the numbers carry no meaning) and the summary aggregates it.
#[test]
fn with_clip_alignment_is_measured_for_every_delivered_image() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut r = perfect_run(dir.path())?;
    let clip_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inference/tests/data/clip");
    let critics = Critics {
        safety: None,
        alignment: Some(ClipCritic {
            scorer: std::sync::Arc::new(ClipScorer::load(&clip_dir)?),
            threshold: -1.0,
        }),
    };
    rescore(
        &mut r,
        ScoreContext {
            run_dir: dir.path(),
            critics: &critics,
        },
    );
    for case in 0..3 {
        let a = metric(&r, case, "alignment");
        let value = a.value.ok_or_else(|| format!("case {case}: {}", a.note))?;
        assert!((0.0..=1.0).contains(&value), "{value}");
        assert_eq!(a.passed, Some(true), "{}", a.note);
        assert!(a.note.contains("atelier-test-clip"), "{}", a.note);
    }
    Ok(())
}

#[test]
fn a_perfect_run_scores_perfectly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let r = perfect_run(dir.path())?;
    let d = r.summary.decisions.as_ref().ok_or("no decisions")?;
    assert_eq!((d.tp, d.fp, d.fn_, d.tn), (1, 0, 0, 2));
    assert_eq!(d.f1.as_ref().map(|e| e.mean), Some(1.0));
    for case in 0..3 {
        let p = metric(&r, case, "palette");
        assert_eq!(p.passed, Some(true), "case {case}: {}", p.note);
        assert!(p.value.unwrap_or(0.0) > 0.95, "{}", p.note);
        assert_eq!(
            metric(&r, case, "alignment").note,
            format!("not measured: {NO_CLIP}")
        );
        assert_eq!(metric(&r, case, "alignment").value, None);
    }
    assert_eq!(metric(&r, 0, "headline").passed, Some(true));
    assert_eq!(metric(&r, 0, "size").passed, Some(true));
    assert_eq!(
        metric(&r, 2, "size").passed,
        Some(true),
        "{}",
        metric(&r, 2, "size").note
    );
    assert_eq!(metric(&r, 0, "forbidden").value, Some(1.0));
    assert_eq!(metric(&r, 0, "iterations").value, Some(1.0));
    // Not expected: not scored, and said so.
    assert_eq!(metric(&r, 1, "headline").value, None);
    assert_eq!(r.summary.completed.as_ref().map(|e| e.mean), Some(1.0));
    assert_eq!(r.summary.accepted_images, 3);
    // 36 s of compute per case at $1/h.
    assert!(
        (r.summary.cost_usd - 0.03).abs() < 1e-9,
        "{}",
        r.summary.cost_usd
    );
    assert!((r.summary.cost_per_accepted_image_usd.unwrap_or(0.0) - 0.01).abs() < 1e-9);
    // The user's thinking time is not a step; generation is.
    let steps: Vec<&str> = r.summary.latency.iter().map(|s| s.step.as_str()).collect();
    assert!(
        steps.contains(&"tool:generate_image") && !steps.contains(&"phase:clarify"),
        "{steps:?}"
    );
    Ok(())
}

#[test]
fn a_run_that_never_asks_has_no_recall() -> TestResult {
    let dir = tempfile::tempdir()?;
    let suite = suite()?;
    let img = store(dir.path(), &image(64, 64, NAVY, CREAM, 0.4))?;
    let r = run_of(
        &suite,
        vec![
            transcript(false, img.clone(), "iced coffee", Some("Summer sale"), true),
            transcript(false, img.clone(), "something nice", None, true),
            transcript(false, img, "a scooter", None, true),
        ],
        dir.path(),
    )?;
    let d = r.summary.decisions.as_ref().ok_or("no decisions")?;
    assert_eq!((d.tp, d.fp, d.fn_, d.tn), (0, 0, 1, 2));
    assert_eq!(d.recall, 0.0);
    assert_eq!(d.f1.as_ref().map(|e| e.mean), Some(0.0));
    // And the square image for a landscape channel is the wrong size.
    let size = metric(&r, 2, "size");
    assert_eq!(size.passed, Some(false), "{}", size.note);
    assert!(size.note.contains("landscape"), "{}", size.note);
    Ok(())
}

#[test]
fn a_run_that_violates_the_palette_fails_it_with_the_reason() -> TestResult {
    let dir = tempfile::tempdir()?;
    let suite = suite()?;
    let red = store(dir.path(), &image(64, 64, RED, NAVY, 0.8))?;
    let ok = store(dir.path(), &image(64, 64, NAVY, CREAM, 0.4))?;
    let r = run_of(
        &suite,
        vec![
            transcript(
                false,
                red,
                "iced coffee with neon lights",
                Some("Winter"),
                false,
            ),
            transcript(true, ok.clone(), "a latte", None, true),
            transcript(false, ok, "a scooter", None, true),
        ],
        dir.path(),
    )?;
    let p = metric(&r, 0, "palette");
    assert_eq!(p.passed, Some(false));
    assert!(p.value.unwrap_or(1.0) < 0.3, "{}", p.note);
    assert!(p.note.contains("off palette"), "{}", p.note);
    let f = metric(&r, 0, "forbidden");
    assert_eq!((f.value, f.passed), (Some(0.0), Some(false)));
    assert!(f.note.contains("neon"), "{}", f.note);
    assert_eq!(metric(&r, 0, "headline").passed, Some(false));
    let palette = r
        .summary
        .metrics
        .iter()
        .find(|m| m.name == "palette")
        .ok_or("no palette summary")?;
    assert!((palette.pass_rate.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-9);
    let e = palette.estimate.as_ref().ok_or("no estimate")?;
    assert!(e.low < e.mean && e.mean < e.high, "{e:?}");
    assert_eq!(r.summary.accepted.as_ref().map(|e| e.n), Some(3));
    Ok(())
}

#[test]
fn the_report_of_a_stored_run_is_valid_html_with_every_chart_and_image() -> TestResult {
    let dir = tempfile::tempdir()?;
    let baseline = perfect_run(dir.path())?;
    // Read back what was stored, rescore it from the files, then render.
    let mut stored = RunResults::load(dir.path())?;
    assert_eq!(stored, baseline);
    rescore(
        &mut stored,
        ScoreContext {
            run_dir: dir.path(),
            critics: &Critics::default(),
        },
    );
    assert_eq!(stored.summary, baseline.summary);
    let comparison = compare(&baseline, &stored, &Thresholds::default());
    let path = report::write(&stored, dir.path(), Some(&comparison))?;
    let html = std::fs::read_to_string(path)?;
    let doc = scraper::Html::parse_document(&html);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    let select = |css: &str| scraper::Selector::parse(css).map_err(|e| e.to_string());
    for id in CHARTS {
        let svg = select(&format!("figure#{id} svg"))?;
        let chart = doc
            .select(&svg)
            .next()
            .ok_or(format!("chart {id} is missing"))?;
        assert!(chart.inner_html().contains("<rect"), "chart {id} is empty");
    }
    let imgs: Vec<_> = doc.select(&select("img")?).collect();
    let images: usize = stored.cases.iter().map(|c| c.images.len()).sum();
    assert_eq!(imgs.len(), images);
    for img in &imgs {
        let src = img.value().attr("src").unwrap_or_default();
        assert!(
            src.starts_with("data:image/png;base64,"),
            "external image {src:.40}"
        );
    }
    // Self-contained: nothing fetched from elsewhere.
    for css in ["link[href]", "script[src]"] {
        assert_eq!(doc.select(&select(css)?).count(), 0, "{css}");
    }
    for case in &stored.cases {
        assert!(
            doc.select(&select(&format!("section#case-{}", case.case.id))?)
                .next()
                .is_some()
        );
    }
    assert!(html.contains("No regression"));
    // The reason is in the report (up to the first character HTML escaping changes).
    let reason = NO_CLIP.split(['/', '`']).next().unwrap_or(NO_CLIP);
    assert!(html.contains(reason), "{reason}");
    Ok(())
}

#[test]
fn a_planted_regression_is_named() -> TestResult {
    let dir = tempfile::tempdir()?;
    let baseline = perfect_run(dir.path())?;
    let mut worse = baseline.clone();
    // Plant it: the agent stops asking about the vague brief.
    worse.cases[1].questions.clear();
    rescore(
        &mut worse,
        ScoreContext {
            run_dir: dir.path(),
            critics: &Critics::default(),
        },
    );
    let c = compare(&baseline, &worse, &Thresholds::default());
    let names: Vec<&str> = c.regressions().map(|r| r.metric.as_str()).collect();
    assert!(names.contains(&"decision.f1"), "{names:?}");
    assert!(names.contains(&"decision.recall"), "{names:?}");
    assert!(!names.contains(&"score.palette"), "{names:?}");
    let lines = c.describe_regressions().join("\n");
    assert!(
        lines.contains("decision.f1: fell from 1.000 to 0.000"),
        "{lines}"
    );
    // A looser threshold lets it through.
    let loose = Thresholds::parse(&["rate=1".into()])?;
    assert_eq!(compare(&baseline, &worse, &loose).regressions().count(), 0);
    // The same run against itself is clean.
    assert_eq!(
        compare(&baseline, &baseline, &Thresholds::default())
            .regressions()
            .count(),
        0
    );
    Ok(())
}
