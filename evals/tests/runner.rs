//! The runner on the real agent (scripted decisions, real atelier-tiny, real MiniLM, embedded
//! Qdrant with an example brand): every case recorded, a failing case recorded as such while
//! the run goes on, and the recorded run reported.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../agent/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use atelier_agent::AgentConfig;
use atelier_agent::testing::ScriptedModel;
use atelier_evals::record::{RunResults, TimedEvent};
use atelier_evals::runner::{InProcess, RunOptions, run_suite};
use atelier_evals::{Suite, report};
use atelier_inference::llm::ChatRequest;
use atelier_tools::brand::{BrandKit, BrandStore, EdgeStore, Ingestor};
use atelier_tools::critique::Critics;
use serde_json::json;

fn scripted() -> ScriptedModel {
    ScriptedModel::new(|decision, req: &ChatRequest| {
        let user = req
            .messages
            .last()
            .map(|m| m.content.as_str())
            .unwrap_or("");
        Ok(match decision {
            "understand" if user.contains("something nice") && !user.contains("a latte") => json!({
                "subject": "", "contradiction": "", "question": "What should the image show?",
                "choices": ["a latte", "a sunrise"], "assumptions": []
            }),
            "understand" => json!({
                "subject": "a coffee", "contradiction": "", "question": "", "choices": [],
                "assumptions": ["a square post"]
            }),
            "plan" => json!({
                "subject": "a sun over a cup",
                "prompt": "a beige background with an orange circle in the centre",
                "negative_prompt": "",
                "colours": ["Crema", "Ember"],
                "headline": "Summer sale",
                "guidelines_applied": [],
                "variants": 2,
                "rationale": "warm ground, one accent"
            }),
            "refine" => json!({
                "prompt": "a beige background with an orange circle in the centre",
                "negative_prompt": "", "change": "named the ground first"
            }),
            "present" => json!({
                "message": "Here is a warm image.", "alt_text": "An orange circle on cream."
            }),
            other => panic!("unexpected decision {other}"),
        }
        .to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_is_recorded_and_a_failing_one_does_not_stop_the_run() {
    let suite = Suite::parse(
        r#"
name = "runner"
brands = "../../examples/brands"

[[case]]
id = "clear"
brief = "A web banner for the summer sale with the headline \"Summer sale\": an iced coffee under a sun."
brand = "solstice"
[case.expect]
asks = false
palette = "brand"
text = ["Summer sale"]
channel = "landscape"
max_iterations = 1

[[case]]
id = "not-ingested"
brief = "A scooter at night."
brand = "voltline"

[[case]]
id = "vague"
brief = "Make something nice."
brand = "solstice"
answers = ["a latte"]
[case.expect]
asks = true
palette = "brand"
"#,
        &common::repo().join("evals/suites/inline.toml"),
    )
    .unwrap();

    // Only solstice is in the store: the voltline case cannot start.
    let store_dir = tempfile::tempdir().unwrap();
    let embedder = common::embedder();
    let store: Arc<dyn BrandStore> = Arc::new(
        EdgeStore::open(store_dir.path(), embedder.dimensions())
            .await
            .unwrap(),
    );
    let ingestor = Ingestor::new(store, embedder);
    let kit = BrandKit::load(&common::repo().join("examples/brands/solstice")).unwrap();
    ingestor.ingest("eval", &kit).await.unwrap();

    let llm = scripted();
    let target = InProcess {
        llm: Arc::new(llm.clone()),
        generator: common::tiny(),
        brands: Some(ingestor),
        config: AgentConfig {
            width: 64,
            height: 64,
            steps: 3,
            max_iterations: 1,
            ..AgentConfig::default()
        },
        tenant: "eval".into(),
        critics: Critics::default(),
        upscale: None,
    };
    let out = tempfile::tempdir().unwrap();
    let options = RunOptions {
        out: out.path().to_path_buf(),
        compute_usd_per_hour: 0.1,
        case_timeout: Duration::from_secs(120),
        critics: Critics::default(),
    };
    let mut seen = Vec::new();
    let results = run_suite(&suite, &target, &options, |i, r| {
        seen.push((i, r.case.id.clone()))
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        vec![
            (0, "clear".to_string()),
            (1, "not-ingested".to_string()),
            (2, "vague".to_string())
        ]
    );

    let [clear, failed, vague] = &results.cases[..] else {
        panic!("three cases expected")
    };
    assert_eq!(clear.status, "done", "{:?}", clear.error);
    assert!(!clear.scores.asked);
    // Two variants, and the delivered one resized for the landscape channel.
    assert_eq!(clear.images.len(), 3, "{:?}", clear.images);
    assert_eq!(clear.delivered.len(), 1);
    let delivered = clear
        .images
        .iter()
        .find(|i| i.id == clear.delivered[0])
        .unwrap();
    assert!(delivered.post_processed);
    assert_eq!((delivered.width, delivered.height), (1200, 628));
    let source = delivered.derived_from.as_deref().unwrap();
    assert!(
        clear
            .images
            .iter()
            .any(|i| i.id == source && !i.post_processed)
    );
    assert!(
        clear.scores.metrics["technical"]
            .note
            .contains("as generated")
    );
    assert_eq!(clear.headline.as_deref(), Some("Summer sale"));
    assert_eq!(clear.scores.metrics["headline"].passed, Some(true));
    assert_eq!(clear.scores.metrics["size"].passed, Some(true));
    assert!(clear.scores.metrics["palette"].value.is_some());
    assert!(clear.usage.llm_calls >= 3 && clear.usage.tokens.is_some());
    for image in &clear.images {
        assert!(out.path().join(&image.file).is_file(), "{}", image.file);
        assert!(
            image.post_processed || !image.checks.is_empty(),
            "the agent's checks are kept"
        );
    }
    let steps: Vec<&str> = clear.steps.iter().map(|s| s.step.as_str()).collect();
    for step in [
        "phase:understand",
        "phase:plan",
        "phase:generate",
        "tool:generate_image",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
    let log = std::fs::read_to_string(out.path().join(&clear.events_file)).unwrap();
    let events: Vec<TimedEvent> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert_eq!(events.last().map(|e| e.event.kind()), Some("final"));

    assert_eq!(failed.status, "error");
    let why = failed.error.as_deref().unwrap_or_default();
    assert!(why.contains("voltline"), "{why}");
    assert!(failed.images.is_empty());

    assert_eq!(vague.status, "done", "{:?}", vague.error);
    assert!(vague.scores.asked);
    assert_eq!(vague.questions[0].answer.as_deref(), Some("a latte"));

    let d = results.summary.decisions.as_ref().unwrap();
    assert_eq!((d.tp, d.fp, d.fn_, d.tn), (1, 0, 0, 1));
    let completed = results.summary.completed.as_ref().unwrap();
    assert!((completed.mean - 2.0 / 3.0).abs() < 1e-9);

    // What was written is what was returned, and it reports.
    let stored = RunResults::load(out.path()).unwrap();
    assert_eq!(stored, results);
    let html = report::render(&stored, out.path(), None).unwrap();
    assert!(html.contains("case-not-ingested") && html.contains("voltline"));
}
