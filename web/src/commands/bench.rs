//! `atelier bench llm`: the in-process llama.cpp runtime against llama-cpp-python on the same
//! GGUF, threads and prompts, side by side in one run, plus the memory-bandwidth bound.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use atelier_inference::llm::{ChatModel, ChatRequest, LlamaChatModel, Message};
use atelier_inference::models::Catalog;
use serde::Deserialize;

use crate::cli::BenchLlmArgs;
use crate::settings::Settings;

const REFERENCE_SCRIPT: &str = include_str!("bench_reference.py");

const BRIEF: &str = "You are a senior copywriter. Write a detailed creative direction for a summer \
sale banner for an outdoor clothing brand: the mood, the palette with hex codes, the layout, the \
headline options, the photography style and what to avoid. Be thorough and specific.";

/// One measured run: prompt tokens read and the time, tokens generated and the time.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Run {
    prompt_tokens: u32,
    prompt_s: f64,
    generated: u32,
    generate_s: f64,
}

impl Run {
    fn prompt_rate(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_s.max(1e-9)
    }
    fn generate_rate(&self) -> f64 {
        self.generated as f64 / self.generate_s.max(1e-9)
    }
}

#[derive(Debug, Deserialize)]
struct ReferenceOutput {
    runs: Vec<Run>,
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

pub async fn llm(settings: &Settings, args: BenchLlmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs >= 1 && args.runs <= 50,
        "--runs must be in 1..=50"
    );
    anyhow::ensure!(
        args.tokens >= 8 && args.tokens <= 2048,
        "--tokens must be in 8..=2048"
    );
    let catalog = Catalog::builtin()?;
    let card = catalog.get(&args.model)?;
    let path = card.installed_path(&settings.models_dir)?;
    let model_bytes = std::fs::metadata(&path)?.len();
    let model = super::load_llama(settings, &args.model, 1, Some(args.threads)).await?;

    // Each run starts with its own words so no run reuses another's cache beyond a few tokens.
    let messages: Vec<Vec<Message>> = (0..args.runs)
        .map(|i| vec![Message::user(format!("Run {i}. {BRIEF}"))])
        .collect();
    let prompts = messages
        .iter()
        .map(|m| model.render_prompt(m))
        .collect::<Result<Vec<_>, _>>()?;

    eprintln!("warming up…");
    ours(&model, &[vec![Message::user("Say hello.")]], 8, None).await?;
    eprintln!("measuring the in-process runtime ({} runs)…", args.runs);
    let ours_runs = ours(&model, &messages, args.tokens, None).await?;

    let reference = match &args.reference_python {
        Some(python) => {
            eprintln!("measuring llama-cpp-python ({} runs)…", args.runs);
            Some(reference(python, &path, &prompts, &args, settings)?)
        }
        None => None,
    };

    eprintln!("measuring memory bandwidth…");
    let bandwidth = measure_bandwidth();
    let bound = bandwidth / model_bytes as f64;

    let mut table = String::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    table.push_str(&format!(
        "\n### `atelier bench llm --model {} --threads {} --tokens {} --runs {}` (unix time {now})\n\n",
        card.name, args.threads, args.tokens, args.runs
    ));
    table.push_str(
        "| runtime | prompt tok/s | generate tok/s | tokens generated |\n|---|---:|---:|---:|\n",
    );
    let row = |name: &str, runs: &[Run]| {
        format!(
            "| {name} | {:.1} | {:.1} | {} |\n",
            median(runs.iter().map(Run::prompt_rate).collect()),
            median(runs.iter().map(Run::generate_rate).collect()),
            runs.iter()
                .map(|r| r.generated.to_string())
                .collect::<Vec<_>>()
                .join("/")
        )
    };
    table.push_str(&row("atelier (llama-cpp-2, in process)", &ours_runs));
    let ours_gen = median(ours_runs.iter().map(Run::generate_rate).collect());
    let ours_prompt = median(ours_runs.iter().map(Run::prompt_rate).collect());
    if let Some(reference) = &reference {
        table.push_str(&row("llama-cpp-python (reference)", reference));
        let ref_gen = median(reference.iter().map(Run::generate_rate).collect());
        let ref_prompt = median(reference.iter().map(Run::prompt_rate).collect());
        table.push_str(&format!(
            "\nRatio atelier / reference: generation **{:.3}×** (goal ≥ 0.97), prompt {:.3}×.\n",
            ours_gen / ref_gen.max(1e-9),
            ours_prompt / ref_prompt.max(1e-9)
        ));
    } else {
        table.push_str(
            "\n(no reference: pass --reference-python with llama-cpp-python installed)\n",
        );
    }
    table.push_str(&format!(
        "Bandwidth bound: {:.1} GB/s single-thread read ÷ {:.0} MB of weights per token = {:.1} tok/s; \
         atelier generates at {:.0}% of it.\n",
        bandwidth / 1e9,
        model_bytes as f64 / 1e6,
        bound,
        100.0 * ours_gen / bound.max(1e-9)
    ));

    if args.constrained {
        eprintln!("measuring constrained against free generation…");
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "headline": {"type": "string", "maxLength": 80},
                "subline": {"type": "string", "maxLength": 160},
                "palette": {"type": "array", "items": {"type": "string", "maxLength": 7}, "maxItems": 5},
                "mood": {"enum": ["playful", "calm", "bold", "elegant"]},
                "layout_notes": {"type": "string", "maxLength": 400}
            },
            "required": ["headline", "subline", "palette", "mood", "layout_notes"]
        });
        let ask: Vec<Vec<Message>> = (0..args.runs)
            .map(|i| {
                vec![Message::user(format!(
                    "Run {i}. Give the headline, subline, palette (hex), mood and layout notes of a \
                     summer sale banner as JSON."
                ))]
            })
            .collect();
        let free = ours(&model, &ask, args.tokens, None).await?;
        let constrained = ours(&model, &ask, args.tokens, Some(schema)).await?;
        let free_rate = median(free.iter().map(Run::generate_rate).collect());
        let constrained_rate = median(constrained.iter().map(Run::generate_rate).collect());
        table.push_str(&format!(
            "Constrained (JSON schema) {:.1} tok/s vs free {:.1} tok/s: **{:.3}×** (goal ≥ 0.9).\n",
            constrained_rate,
            free_rate,
            constrained_rate / free_rate.max(1e-9)
        ));
    }

    publish(&table, args.markdown.as_deref())
}

/// Print a result table and append it to `markdown` when given.
/// The `p` quantile (0–1) of `v`, nearest rank; 0 when empty.
pub(super) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

pub(super) fn publish(table: &str, markdown: Option<&Path>) -> anyhow::Result<()> {
    println!("{table}");
    if let Some(path) = markdown {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(table.as_bytes())?;
        eprintln!("appended to {}", path.display());
    }
    Ok(())
}

/// Greedy runs of the in-process runtime.
async fn ours(
    model: &LlamaChatModel,
    conversations: &[Vec<Message>],
    max_tokens: u32,
    schema: Option<serde_json::Value>,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for messages in conversations {
        let mut request = ChatRequest::new(messages.clone())
            .max_tokens(max_tokens)
            .temperature(0.0);
        request.schema = schema.clone();
        let response = model.complete(request).await?;
        let u = response.usage;
        runs.push(Run {
            prompt_tokens: u.prompt_tokens - u.cached_tokens,
            prompt_s: u.prompt_us as f64 / 1e6,
            generated: u.completion_tokens,
            generate_s: u.completion_us as f64 / 1e6,
        });
    }
    Ok(runs)
}

fn reference(
    python: &Path,
    model: &Path,
    prompts: &[String],
    args: &BenchLlmArgs,
    settings: &Settings,
) -> anyhow::Result<Vec<Run>> {
    let job = serde_json::json!({
        "model": model,
        "n_ctx": settings.llm.context_size,
        "threads": args.threads,
        "batch": settings.llm.batch_size,
        "prompts": prompts,
        "max_tokens": args.tokens,
    });
    let parsed: ReferenceOutput =
        run_reference(python, REFERENCE_SCRIPT, &job, "llama-cpp-python")?;
    Ok(parsed.runs)
}

/// Run a Python reference `script` with `job` as JSON on stdin; it prints one JSON result.
/// `package` names what must be installed for `python`, for the error.
pub(super) fn run_reference<T: serde::de::DeserializeOwned>(
    python: &Path,
    script: &str,
    job: &serde_json::Value,
    package: &str,
) -> anyhow::Result<T> {
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the reference runtime {}", python.display()))?;
    child
        .stdin
        .take()
        .context("no stdin for the reference runtime")?
        .write_all(job.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    anyhow::ensure!(
        output.status.success(),
        "the reference runtime failed (is {package} installed for {}?): {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    serde_json::from_slice(&output.stdout)
        .context("the reference runtime printed something other than its JSON result")
}

/// Single-thread sequential read bandwidth in bytes/s (best of several passes over 512 MiB).
fn measure_bandwidth() -> f64 {
    let words = 64 << 20; // 512 MiB of u64
    let data: Vec<u64> = (0..words as u64).collect();
    let mut best = 0.0f64;
    for _ in 0..4 {
        let start = std::time::Instant::now();
        let sum = data.chunks(8).fold(0u64, |acc, c| {
            acc.wrapping_add(c.iter().fold(0u64, |a, &x| a ^ x))
        });
        std::hint::black_box(sum);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((words * 8) as f64 / secs.max(1e-9));
    }
    best
}
