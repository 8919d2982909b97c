//! `atelier eval`: run a suite through the agent in process, write `results.json` and
//! `report.html`, and compare with a baseline (the CI gate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use atelier_evals::compare::{Comparison, Thresholds, compare};
use atelier_evals::record::RunResults;
use atelier_evals::runner::{InProcess, RunOptions, Target, run_suite};
use atelier_evals::server::Server;
use atelier_evals::{Suite, report};
use atelier_tools::brand::{BrandStore, EdgeStore, Ingestor};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{EvalCommand, EvalRunArgs};
use crate::settings::Settings;

/// The tenant the suite's brands are stored under, in the run's own store.
const TENANT: &str = "eval";

pub async fn run(settings: &Settings, command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Run(args) => run_eval(settings, args).await,
        EvalCommand::Report {
            dir,
            baseline,
            thresholds,
        } => {
            let results = RunResults::load(&dir)?;
            let comparison = baseline_comparison(&results, baseline.as_deref(), &thresholds)?;
            let run_dir = run_dir_of(&dir);
            let path = report::write(&results, &run_dir, comparison.as_ref())?;
            println!("report: {}", path.display());
            gate(comparison.as_ref())
        }
        EvalCommand::Compare {
            run,
            baseline,
            thresholds,
            json,
        } => {
            let results = RunResults::load(&run)?;
            let comparison = baseline_comparison(&results, Some(&baseline), &thresholds)?
                .context("no comparison")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&comparison)?);
            } else {
                print_comparison(&comparison);
            }
            gate(Some(&comparison))
        }
    }
}

/// The run directory of a path that names it or its results file.
fn run_dir_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    }
}

fn baseline_comparison(
    results: &RunResults,
    baseline: Option<&Path>,
    thresholds: &[String],
) -> anyhow::Result<Option<Comparison>> {
    let thresholds = Thresholds::parse(thresholds)?;
    let Some(path) = baseline else {
        return Ok(None);
    };
    let base = RunResults::load(path).context("reading the baseline")?;
    let known: Vec<String> = atelier_evals::compare::headline_metrics(&base)
        .into_keys()
        .chain(atelier_evals::compare::headline_metrics(results).into_keys())
        .collect();
    for name in thresholds.unknown(&known) {
        eprintln!("warning: threshold for `{name}`, a metric neither run has");
    }
    Ok(Some(compare(&base, results, &thresholds)))
}

fn gate(comparison: Option<&Comparison>) -> anyhow::Result<()> {
    let Some(c) = comparison else {
        return Ok(());
    };
    let lines = c.describe_regressions();
    if lines.is_empty() {
        println!("no regression against the baseline");
        Ok(())
    } else {
        anyhow::bail!(
            "{} regression(s) against the baseline:\n  {}",
            lines.len(),
            lines.join("\n  ")
        )
    }
}

fn print_comparison(c: &Comparison) {
    println!(
        "{:<40} {:>10} {:>10} {:>10}  verdict",
        "metric", "baseline", "this run", "change"
    );
    let num = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
    for r in &c.rows {
        println!(
            "{:<40} {:>10} {:>10} {:>10}  {}",
            r.metric,
            num(r.baseline),
            num(r.candidate),
            r.delta.map_or(String::new(), |d| format!("{d:+.3}")),
            if r.regressed { "REGRESSED" } else { "ok" }
        );
    }
}

async fn run_eval(settings: &Settings, args: EvalRunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.compute_usd_per_hour.is_finite() && args.compute_usd_per_hour >= 0.0,
        "--compute-usd-per-hour must be a number ≥ 0, not {}",
        args.compute_usd_per_hour
    );
    let mut suite = Suite::load(&args.suite)?;
    suite.truncate(args.limit);
    // Fail on a bad baseline or threshold before spending minutes on the run.
    let thresholds = Thresholds::parse(&args.thresholds)?;
    let baseline = args
        .baseline
        .as_deref()
        .map(|p| RunResults::load(p).context("reading the baseline"))
        .transpose()?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs/eval").join(format!(
            "{}-{}",
            suite.name,
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    eprintln!(
        "suite `{}`: {} case(s), {} brand kit(s); run directory {}",
        suite.name,
        suite.cases.len(),
        suite.brands.len(),
        out.display()
    );
    // Declared before the target: the run's brand store flushes into it when dropped.
    let store_dir = tempfile::tempdir().context("creating the run's brand store")?;
    let critics = super::critics(settings).await?;
    let target: Box<dyn Target> = match &args.server {
        Some(url) => Box::new(Server::connect(url).await?),
        None => {
            Box::new(in_process(settings, &args, &suite, store_dir.path(), critics.clone()).await?)
        }
    };
    let options = RunOptions {
        out: out.clone(),
        compute_usd_per_hour: args.compute_usd_per_hour,
        case_timeout: Duration::from_secs(args.case_timeout),
        critics,
    };
    let bar = ProgressBar::new(suite.cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cases · {elapsed} · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let results = run_suite(&suite, target.as_ref(), &options, |_, record| {
        bar.inc(1);
        let line = format!(
            "{:<40} {:<9} {:>6.1} s  {} image(s){}",
            record.case.id,
            record.status,
            record.duration_ms as f64 / 1000.0,
            record.images.len(),
            record
                .error
                .as_deref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        );
        // A hidden bar (not a terminal, as in CI) prints nothing: log the line plainly.
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
        bar.set_message(record.case.id.clone());
    })
    .await?;
    bar.finish_and_clear();

    let comparison = baseline.map(|b| compare(&b, &results, &thresholds));
    let path = report::write(&results, &out, comparison.as_ref())?;
    print_summary(&results);
    if let Some(c) = &comparison {
        print_comparison(c);
    }
    println!("results: {}", out.join("results.json").display());
    println!("report:  {}", path.display());
    gate(comparison.as_ref())
}

fn print_summary(r: &RunResults) {
    let s = &r.summary;
    let est = |e: &Option<atelier_evals::score::Estimate>| {
        e.as_ref().map_or("—".to_string(), |e| {
            format!("{:.3} [{:.3}, {:.3}] n={}", e.mean, e.low, e.high, e.n)
        })
    };
    println!("completed      {}", est(&s.completed));
    println!("accepted       {}", est(&s.accepted));
    if let Some(d) = &s.decisions {
        println!(
            "decision F1    {}  (precision {:.2}, recall {:.2})",
            est(&d.f1),
            d.precision,
            d.recall
        );
    }
    for m in &s.metrics {
        match &m.estimate {
            Some(_) => println!("{:<14} {}", m.name, est(&m.estimate)),
            None => println!("{:<14} — ({})", m.name, m.note),
        }
    }
    println!(
        "case time p50 {:.1} s, p95 {:.1} s; {} image(s), {} accepted; cost ${:.4}",
        s.case_p50_ms / 1000.0,
        s.case_p95_ms / 1000.0,
        s.images,
        s.accepted_images,
        s.cost_usd
    );
}

/// The agent in this process with the configured models, the suite's brands ingested into a
/// store of the run's own (in `store_dir`) so runs do not depend on what the user ingested.
async fn in_process(
    settings: &Settings,
    args: &EvalRunArgs,
    suite: &Suite,
    store_dir: &Path,
    critics: atelier_tools::critique::Critics,
) -> anyhow::Result<InProcess> {
    let llm = super::chat_model(settings, args.model.as_deref(), 1).await?;
    let generator = super::image_generator(settings, &args.image_model, None).await?;
    let brands = if suite.brands.is_empty() {
        None
    } else {
        let embedder = super::embedder(settings).await?;
        let store: Arc<dyn BrandStore> =
            Arc::new(EdgeStore::open(store_dir, embedder.dimensions()).await?);
        let ingestor = Ingestor::new(store, embedder);
        for kit in &suite.brands {
            ingestor
                .ingest(TENANT, kit)
                .await
                .with_context(|| format!("ingesting brand `{}`", kit.id))?;
        }
        Some(ingestor)
    };
    Ok(InProcess {
        llm,
        generator,
        brands,
        config: settings.agent.clone(),
        tenant: TENANT.into(),
        critics,
        upscale: super::optional_upscalers(settings).await?,
    })
}
