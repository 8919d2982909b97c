//! `atelier bench embed`: the MiniLM embedder (on llama.cpp, the default, and on candle)
//! against sentence-transformers on the same files, sentences, batch sizes and threads. `atelier bench brand-search`: filtered search
//! latency in the embedded brand store. `atelier bench tiny`: seconds per atelier-tiny image.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use atelier_inference::embed::{EmbedEngine, Embedder, MiniLmEmbedder};
use atelier_inference::models::Catalog;
use atelier_tools::brand::store::StoredChunk;
use atelier_tools::brand::{BrandStore, Chunk, ChunkKind, EdgeStore, Scope, SearchQuery};
use rand::{Rng, SeedableRng};
use serde::Deserialize;

use super::bench::{median, publish};
use crate::cli::{BenchBrandSearchArgs, BenchEmbedArgs, BenchTinyArgs};
use crate::settings::Settings;

const REFERENCE_SCRIPT: &str = include_str!("bench_embed_reference.py");

/// Sentences of the example brands' guidelines: real text of varied length.
fn sentences(n: usize) -> anyhow::Result<Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/brands");
    let mut all = Vec::new();
    for brand in ["solstice", "voltline"] {
        let dir = root.join(brand).join("guidelines");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f)?;
            for s in text
                .split(['.', '\n'])
                .map(str::trim)
                .filter(|s| s.split_whitespace().count() >= 4)
            {
                all.push(s.to_string());
            }
        }
    }
    anyhow::ensure!(!all.is_empty(), "no sentences in {}", root.display());
    Ok(all.iter().cycle().take(n).cloned().collect())
}

#[derive(Deserialize)]
struct Reference {
    rates: std::collections::HashMap<String, f64>,
    first: Vec<Vec<f32>>,
}

pub async fn embed(settings: &Settings, args: BenchEmbedArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=50).contains(&args.runs), "--runs must be in 1..=50");
    anyhow::ensure!(
        (8..=100_000).contains(&args.sentences),
        "--sentences must be in 8..=100000"
    );
    anyhow::ensure!(
        args.batch.iter().all(|b| (1..=1024).contains(b)),
        "--batch sizes must be in 1..=1024"
    );
    let threads = candle_threads();
    if threads != args.threads {
        anyhow::bail!(
            "candle uses {threads} threads here; run with RAYON_NUM_THREADS={0} (scripts/bench-embed.sh does) \
             so both runtimes use --threads {0}",
            args.threads
        );
    }
    let catalog = Catalog::builtin()?;
    let card = catalog.get("all-minilm-l6-v2")?;
    card.installed_path(&settings.models_dir)?;
    let dir = card.dir(&settings.models_dir);
    let sentences = sentences(args.sentences)?;
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let engines = [
        (EmbedEngine::Llama, "llama.cpp f32"),
        (EmbedEngine::LlamaQ8, "llama.cpp q8_0"),
        (EmbedEngine::Candle, "candle"),
    ];
    // rates[engine][batch]
    let mut rates: Vec<Vec<f64>> = Vec::new();
    let mut models = Vec::new();
    for (engine, label) in engines {
        let model = MiniLmEmbedder::load_with(&dir, engine)?;
        model.embed(&refs[..8])?; // warm-up
        let mut per_batch = Vec::new();
        for &batch in &args.batch {
            let mut runs = Vec::new();
            for _ in 0..args.runs {
                let start = Instant::now();
                for chunk in refs.chunks(batch) {
                    std::hint::black_box(model.embed(chunk)?);
                }
                runs.push(refs.len() as f64 / start.elapsed().as_secs_f64());
            }
            let rate = median(runs);
            eprintln!("{label}, batch {batch}: {rate:.1} sentences/s");
            per_batch.push(rate);
        }
        rates.push(per_batch);
        models.push(model);
    }

    let reference = match &args.reference_python {
        Some(python) => Some(run_reference(python, &dir, &sentences, &args)?),
        None => None,
    };
    let mut differences = String::new();
    if let Some(r) = &reference {
        for ((_, label), model) in engines.iter().zip(&models) {
            let mine = model.embed(&refs[..2])?;
            let diff = mine
                .iter()
                .flatten()
                .zip(r.first.iter().flatten())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            eprintln!(
                "{label}: largest difference from sentence-transformers' vectors: {diff:.2e}"
            );
            differences.push_str(&format!(
                "Largest difference from sentence-transformers' vectors, {label}: {diff:.1e}.\n"
            ));
        }
    }

    let mut table = format!(
        "\n### Embeddings: MiniLM on llama.cpp and candle vs sentence-transformers ({})\n\n\
         all-MiniLM-L6-v2, {} sentences of the example guidelines, {} threads, median of {} runs. \
         Sentences per second, and in brackets the ratio against sentence-transformers measured \
         in the same run.\n\n\
         | batch | sentence-transformers |",
        today(),
        args.sentences,
        args.threads,
        args.runs
    );
    for (_, label) in &engines {
        table.push_str(&format!(" {label} |"));
    }
    table.push_str(&format!("\n|---|---|{}\n", "---|".repeat(engines.len())));
    for (b, batch) in args.batch.iter().enumerate() {
        let reference_rate = reference
            .as_ref()
            .and_then(|r| r.rates.get(&batch.to_string()).copied());
        table.push_str(&format!(
            "| {batch} | {} |",
            reference_rate.map_or("not measured".into(), |r| format!("{r:.1}"))
        ));
        for per_engine in &rates {
            let ours = per_engine[b];
            match reference_rate {
                Some(r) => table.push_str(&format!(" {ours:.1} ({:.2}×) |", ours / r)),
                None => table.push_str(&format!(" {ours:.1} |")),
            }
        }
        table.push('\n');
    }
    if !differences.is_empty() {
        table.push('\n');
        table.push_str(&differences);
    }
    publish(&table, args.markdown.as_deref())
}

fn candle_threads() -> usize {
    candle_core::utils::get_num_threads()
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn run_reference(
    python: &Path,
    dir: &Path,
    sentences: &[String],
    args: &BenchEmbedArgs,
) -> anyhow::Result<Reference> {
    let job = serde_json::json!({
        "model_dir": dir,
        "sentences": sentences,
        "batches": args.batch,
        "threads": args.threads,
        "runs": args.runs,
    });
    eprintln!("measuring sentence-transformers…");
    super::bench::run_reference(python, REFERENCE_SCRIPT, &job, "sentence-transformers")
}

pub async fn brand_search(_settings: &Settings, args: BenchBrandSearchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1_000..=2_000_000).contains(&args.points),
        "--points must be in 1000..=2000000"
    );
    anyhow::ensure!(
        (1..=10_000).contains(&args.scopes),
        "--scopes must be in 1..=10000"
    );
    anyhow::ensure!(
        (10..=100_000).contains(&args.queries),
        "--queries must be in 10..=100000"
    );
    const DIMS: usize = 384;
    let dir = tempfile::tempdir()?;
    let store = EdgeStore::open(&dir.path().join("bench"), DIMS).await?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut unit = move || {
        let mut v: Vec<f32> = (0..DIMS).map(|_| rng.random::<f32>() - 0.5).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let scopes: Vec<Scope> = (0..args.scopes)
        .map(|i| Scope::new(format!("tenant-{}", i % 10), format!("brand-{i}")))
        .collect::<Result<_, _>>()?;
    eprintln!(
        "writing {} points over {} tenant/brand scopes…",
        args.points, args.scopes
    );
    let started = Instant::now();
    let per_scope = args.points.div_ceil(args.scopes);
    for (s, scope) in scopes.iter().enumerate() {
        let mut batch = Vec::with_capacity(per_scope);
        for i in 0..per_scope.min(args.points - s * per_scope) {
            let chunk = Chunk {
                document: format!("guidelines/doc-{}.md", i % 7),
                section: format!("Section {}", i % 13),
                kind: if i % 10 == 0 {
                    ChunkKind::Fact
                } else {
                    ChunkKind::Guideline
                },
                ordinal: i as u32,
                text: format!("passage {i} of {}", scope.brand()),
            };
            let content_hash = chunk.content_hash();
            batch.push(StoredChunk {
                id: scope.point_id(&content_hash),
                chunk,
                content_hash,
                vector: unit(),
            });
        }
        store.upsert(scope, batch).await?;
    }
    let write_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    store.optimize().await?;
    let optimize_s = started.elapsed().as_secs_f64();
    eprintln!("written in {write_s:.1} s, indexed in {optimize_s:.1} s; searching…");

    let mut latencies = Vec::with_capacity(args.queries);
    for q in 0..args.queries {
        let scope = &scopes[q % scopes.len()];
        let query = SearchQuery {
            vector: unit(),
            limit: 5,
            kind: None,
        };
        let start = Instant::now();
        let hits = store.search(scope, query).await?;
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(hits.len() == 5, "a search returned {} hits", hits.len());
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let table = format!(
        "\n### Brand search: embedded store ({})\n\n\
         {} points (384-d, cosine) over {} tenant/brand scopes, top-5 filtered by tenant and brand, {} queries.\n\n\
         | write | index (optimize) | p50 | p99 | max |\n|---|---|---|---|---|\n\
         | {write_s:.1} s | {optimize_s:.1} s | {:.2} ms | {:.2} ms | {:.2} ms |\n",
        today(),
        args.points,
        args.scopes,
        args.queries,
        pct(0.5),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    publish(&table, args.markdown.as_deref())
}

pub async fn tiny(settings: &Settings, args: BenchTinyArgs) -> anyhow::Result<()> {
    use atelier_inference::diffusion::ImageRequest;
    anyhow::ensure!((1..=50).contains(&args.runs), "--runs must be in 1..=50");
    let generator = super::tiny_generator(settings, "atelier-tiny", None).await?;
    let threads = candle_threads();
    let prompt = "sunset over mountains in orange and purple";
    let mut request = ImageRequest::new(prompt);
    request.width = args.size;
    request.height = args.size;
    request.steps = args.steps;
    generator.generate_blocking(&request, None)?; // warm-up
    let mut seconds = Vec::new();
    for seed in 0..args.runs as u64 {
        request.seed = seed;
        let start = Instant::now();
        generator.generate_blocking(&request, None)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    let table = format!(
        "\n### atelier-tiny sampling ({})\n\n{}×{} pixels, {} steps with guidance (conditional and unconditional in one batch), {threads} threads, \
         median of {} images.\n\n| seconds per image | goal |\n|---|---|\n| {:.2} | ≤ 3 |\n",
        today(),
        args.size,
        args.size,
        args.steps,
        args.runs,
        median(seconds)
    );
    publish(&table, args.markdown.as_deref())
}
