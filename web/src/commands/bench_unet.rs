//! `atelier bench unet`: one UNet step at Stable Diffusion 1.5 shapes and one VAE decode,
//! candle against diffusers on PyTorch CPU — random weights of the same configs (the ones
//! SD 1.5 ships), the same input shapes, the same thread count, fp32 on both sides.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use atelier_inference::diffusion::sd::testing::{sd15_unet_config, sd15_vae_config};
use atelier_inference::diffusion::sd::{UNetJson, VaeJson};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde::Deserialize;
use serde_json::json;

use super::bench::{median, publish};
use crate::cli::BenchUnetArgs;

const REFERENCE_SCRIPT: &str = include_str!("bench_unet_reference.py");
/// CLIP ViT-L's window: the text the UNet attends to.
const TEXT_TOKENS: usize = 77;

#[derive(Deserialize)]
struct Reference {
    unet: HashMap<String, f64>,
    vae: HashMap<String, f64>,
    torch: String,
}

/// Median seconds of `runs` calls after one warm-up call.
fn timed(runs: usize, mut run: impl FnMut() -> candle_core::Result<Tensor>) -> anyhow::Result<f64> {
    std::hint::black_box(run()?);
    let mut seconds = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(run()?);
        seconds.push(start.elapsed().as_secs_f64());
    }
    Ok(median(seconds))
}

pub async fn unet(args: BenchUnetArgs) -> anyhow::Result<()> {
    anyhow::ensure!((1..=20).contains(&args.runs), "--runs must be in 1..=20");
    anyhow::ensure!(
        !args.sizes.is_empty()
            && args
                .sizes
                .iter()
                .chain(&args.vae_sizes)
                .all(|s| (64..=1024).contains(s) && s % 64 == 0),
        "--sizes and --vae-sizes must be multiples of 64 in 64..=1024"
    );
    let threads = candle_core::utils::get_num_threads();
    anyhow::ensure!(
        threads == args.threads,
        "candle uses {threads} threads here; run with RAYON_NUM_THREADS={0} (scripts/bench-unet.sh \
         does) so both runtimes use --threads {0}",
        args.threads
    );
    let cpu = Device::Cpu;
    let config_path = Path::new("sd15/unet/config.json");
    let unet_config =
        serde_json::from_value::<UNetJson>(sd15_unet_config())?.to_candle(config_path)?;
    let vae_config = serde_json::from_value::<VaeJson>(sd15_vae_config())?
        .to_candle(Path::new("sd15/vae/config.json"))?;

    let mut ours_unet = Vec::new();
    {
        eprintln!("building the SD 1.5 UNet with random weights…");
        let vm = VarMap::new();
        let unet = UNet2DConditionModel::new(
            VarBuilder::from_varmap(&vm, DType::F32, &cpu),
            4,
            4,
            false,
            unet_config,
        )?;
        let params: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        eprintln!("{:.0} M parameters", params as f64 / 1e6);
        let text = Tensor::randn(0f32, 1.0, (1, TEXT_TOKENS, 768), &cpu)?;
        for &size in &args.sizes {
            let latents = Tensor::randn(0f32, 1.0, (1, 4, size / 8, size / 8), &cpu)?;
            let s = timed(args.runs, || unet.forward(&latents, 981.0, &text))?;
            eprintln!("candle UNet {size}: {s:.2} s");
            ours_unet.push((size, s));
        }
    }
    let mut ours_vae = Vec::new();
    {
        let vm = VarMap::new();
        let vae = AutoEncoderKL::new(
            VarBuilder::from_varmap(&vm, DType::F32, &cpu),
            3,
            3,
            vae_config,
        )?;
        for &size in &args.vae_sizes {
            let latents = Tensor::randn(0f32, 1.0, (1, 4, size / 8, size / 8), &cpu)?;
            let s = timed(args.runs, || vae.decode(&latents))?;
            eprintln!("candle VAE decode {size}: {s:.2} s");
            ours_vae.push((size, s));
        }
    }

    let reference: Option<Reference> = match &args.reference_python {
        Some(python) => {
            eprintln!("measuring diffusers…");
            let job = json!({
                "unet": sd15_unet_config(),
                "vae": sd15_vae_config(),
                "sizes": args.sizes,
                "vae_sizes": args.vae_sizes,
                "text_tokens": TEXT_TOKENS,
                "threads": args.threads,
                "runs": args.runs,
            });
            Some(super::bench::run_reference(
                python,
                REFERENCE_SCRIPT,
                &job,
                "diffusers",
            )?)
        }
        None => None,
    };

    let mut table = format!(
        "\n### Stable Diffusion 1.5 UNet and VAE: candle vs diffusers ({})\n\n\
         Random weights of SD 1.5's configs (UNet 860 M parameters), batch 1, {TEXT_TOKENS} text \
         tokens, fp32, {} threads, median of {} runs after a warm-up{}.\n\n\
         | what | candle (s) | diffusers (s) | candle / diffusers | goal |\n|---|---|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        args.threads,
        args.runs,
        reference
            .as_ref()
            .map(|r| format!("; PyTorch {}", r.torch))
            .unwrap_or_default()
    );
    let rows = ours_unet
        .iter()
        .map(|(size, s)| (format!("UNet step {size}²"), *s, size, false))
        .chain(
            ours_vae
                .iter()
                .map(|(size, s)| (format!("VAE decode {size}²"), *s, size, true)),
        );
    for (what, s, size, vae) in rows {
        let theirs = reference.as_ref().and_then(|r| {
            let map = if vae { &r.vae } else { &r.unet };
            map.get(&size.to_string()).copied()
        });
        let (t, ratio) = match theirs {
            Some(t) => (format!("{t:.2}"), format!("{:.2}×", s / t)),
            None => ("not measured".into(), "–".into()),
        };
        table.push_str(&format!("| {what} | {s:.2} | {t} | {ratio} | ≤ 1.2× |\n"));
    }
    publish(&table, args.markdown.as_deref())
}
