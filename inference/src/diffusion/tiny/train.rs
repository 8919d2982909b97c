//! Training the offline model on the procedural dataset, with checkpoints and resume.
//!
//! A checkpoint directory holds `model.safetensors` (the weights being trained),
//! `ema.safetensors` (their exponential moving average, which samples better and is what ships),
//! `config.json` (the network's shapes) and `state.json` (step, data position, loss history).
//! Every file is written to a temporary name and renamed, so a kill never leaves a torn
//! checkpoint. The optimiser's moments are not saved: a resumed run warms its learning rate up
//! again over a few dozen steps instead, which costs a little speed, not quality.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::data::Generator;
use super::flow;
use super::model::{Condition, DTYPE, MAX_TEXT_TOKENS, TinyConfig, TinyDit};
use crate::embed::{Embedder, TokenStates};
use crate::error::{Error, Result};

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Network shapes (ignored when resuming: the checkpoint's are used).
    pub config: TinyConfig,
    /// Train until this step (counting steps done before a resume).
    pub steps: u64,
    /// Images per step.
    pub batch: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// Steps of linear warm-up, at the start and again after a resume.
    pub warmup: u64,
    /// The learning rate falls linearly to a tenth of its peak over the last this many steps
    /// before `steps` (0: constant after the warm-up).
    pub decay_steps: u64,
    /// Seed of the data stream and of the noise.
    pub seed: u64,
    /// Share of captions replaced by the empty condition (for classifier-free guidance).
    pub cond_dropout: f32,
    /// Decay of the weights' moving average.
    pub ema_decay: f64,
    /// Wall time between checkpoints.
    pub checkpoint_every: Duration,
    /// Where checkpoints, the loss curve and the final model go.
    pub out_dir: PathBuf,
    /// A checkpoint (or shipped model) directory to continue from.
    pub resume: Option<PathBuf>,
    /// When resuming a network without cross-attention, add it (new layers whose output
    /// starts at zero, so the network is unchanged until they learn).
    pub add_cross_attention: bool,
    /// When resuming a network without the final pixel convolution, add it (zero-initialised
    /// likewise).
    pub add_final_conv: bool,
    /// When resuming a network without the pixel refiner, add one this wide (its last
    /// convolution starts at zero likewise); 0 adds none.
    pub add_refiner: usize,
    /// How much more a figure's pixels count in the loss than the rest (1: all alike). See
    /// `Sample::foreground`; the loss stays a weighted mean, so its scale does not change.
    pub foreground_weight: f32,
}

impl TrainOptions {
    /// Defaults for the shipped model.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        TrainOptions {
            config: TinyConfig::base(),
            steps: 20_000,
            batch: 32,
            lr: 3e-4,
            warmup: 300,
            decay_steps: 0,
            seed: 1,
            cond_dropout: 0.1,
            ema_decay: 0.999,
            checkpoint_every: Duration::from_secs(300),
            out_dir: out_dir.into(),
            resume: None,
            add_cross_attention: false,
            add_final_conv: false,
            add_refiner: 0,
            foreground_weight: 1.0,
        }
    }
}

/// What `state.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Shapes of the network.
    pub config: TinyConfig,
    /// Optimiser steps done.
    pub step: u64,
    /// Seed of the data stream.
    pub seed: u64,
    /// Index of the next sample of the stream.
    pub next_sample: u64,
    /// Batch size used.
    pub batch: usize,
    /// (step, smoothed loss) every few steps.
    pub losses: Vec<(u64, f32)>,
    /// Seconds of training so far.
    pub seconds: f64,
}

impl TrainState {
    /// The state before the first step.
    fn fresh(config: TinyConfig, options: &TrainOptions) -> Self {
        TrainState {
            config,
            step: 0,
            seed: options.seed,
            next_sample: 0,
            batch: options.batch,
            losses: Vec::new(),
            seconds: 0.0,
        }
    }
}

/// Reported after every step.
#[derive(Debug, Clone)]
pub struct TrainProgress {
    pub step: u64,
    pub loss: f32,
    pub smoothed: f32,
    pub images_per_sec: f32,
    /// Set when this step wrote a checkpoint.
    pub checkpoint: Option<PathBuf>,
}

/// A batch of clean images `[B, 3, S, S]` in [-1, 1], their captions and, when the figure is
/// weighted up, the per-pixel loss weights `[B, 1, S, S]`.
pub struct Batch {
    /// `[B, 3, S, S]` in [-1, 1].
    pub images: Tensor,
    /// One per image.
    pub captions: Vec<String>,
    /// `[B, 1, S, S]`, or `None` when every pixel counts alike.
    pub weights: Option<Tensor>,
}

/// Samples `first..first + batch` of stream `seed` as a [`Batch`]; `foreground_weight` ≠ 1
/// gives each figure's pixels that weight and every other pixel 1.
pub fn batch_tensor(
    generator: &Generator,
    seed: u64,
    first: u64,
    batch: usize,
    foreground_weight: f32,
    device: &Device,
) -> Result<Batch> {
    let weighted = (foreground_weight - 1.0).abs() > f32::EPSILON;
    let mut pixels = Vec::new();
    let mut weights = Vec::new();
    let mut captions = Vec::with_capacity(batch);
    let mut size = 0;
    for i in 0..batch as u64 {
        let sample = generator.sample(seed, first + i);
        size = sample.size as usize;
        pixels.extend(sample.rgb.iter().map(|&v| v as f32 / 127.5 - 1.0));
        if weighted {
            match sample.foreground() {
                Some(mask) => weights.extend(
                    mask.iter()
                        .map(|&m| if m { foreground_weight } else { 1.0 }),
                ),
                None => weights.extend(std::iter::repeat_n(1.0, size * size)),
            }
        }
        captions.push(sample.caption);
    }
    let images = Tensor::from_vec(pixels, (batch, size, size, 3), device)
        .and_then(|t| t.permute((0, 3, 1, 2))?.contiguous())
        .map_err(Error::candle("assemble a batch"))?;
    let weights = weighted
        .then(|| Tensor::from_vec(weights, (batch, 1, size, size), device))
        .transpose()
        .map_err(Error::candle("assemble the loss weights"))?;
    Ok(Batch {
        images,
        captions,
        weights,
    })
}

/// Caption embeddings (and token states), cached: the caption space repeats often.
pub struct EmbeddingCache<'a> {
    embedder: &'a dyn Embedder,
    with_tokens: bool,
    cache: HashMap<String, (Vec<f32>, Option<TokenStates>)>,
}

impl<'a> EmbeddingCache<'a> {
    /// `with_tokens`: also the per-token states (networks with cross-attention).
    pub fn new(embedder: &'a dyn Embedder, with_tokens: bool) -> Self {
        EmbeddingCache {
            embedder,
            with_tokens,
            cache: HashMap::new(),
        }
    }

    /// The condition of a batch; captions at `dropped` positions get the empty condition.
    pub fn condition(
        &mut self,
        captions: &[String],
        dropped: &[bool],
        device: &Device,
    ) -> Result<Condition> {
        // ~1.5 KB per caption without token states, ~25 KB with them: a few hundred MB at most.
        let limit = if self.with_tokens { 20_000 } else { 200_000 };
        if self.cache.len() + captions.len() > limit {
            self.cache.clear();
        }
        let mut missing: Vec<&str> = captions
            .iter()
            .filter(|c| !self.cache.contains_key(c.as_str()))
            .map(String::as_str)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let (vectors, states): (_, Vec<Option<TokenStates>>) = if self.with_tokens {
                let (vectors, states) = self
                    .embedder
                    .embed_with_token_states(&missing, MAX_TEXT_TOKENS)?;
                (vectors, states.into_iter().map(Some).collect())
            } else {
                (self.embedder.embed(&missing)?, vec![None; missing.len()])
            };
            for ((caption, vector), states) in missing.iter().zip(vectors).zip(states) {
                self.cache.insert((*caption).to_string(), (vector, states));
            }
        }
        let dims = self.embedder.dimensions();
        let empty = TokenStates {
            tokens: 0,
            values: Vec::new(),
        };
        let mut pooled = Vec::with_capacity(captions.len());
        let mut tokens = Vec::with_capacity(captions.len());
        for (caption, drop) in captions.iter().zip(dropped) {
            match (drop, self.cache.get(caption)) {
                (false, Some((v, t))) => {
                    pooled.push(v.clone());
                    tokens.push(t.clone().unwrap_or_else(|| empty.clone()));
                }
                _ => {
                    pooled.push(vec![0f32; dims]);
                    tokens.push(empty.clone());
                }
            }
        }
        let tokens = self.with_tokens.then_some(tokens.as_slice());
        Condition::new(&pooled, tokens, dims, device).map_err(Error::candle("assemble embeddings"))
    }
}

fn write_atomic(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!("moving {} into place", path.display())))
}

fn save_tensors(map: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    write_atomic(path, |tmp| {
        candle_core::safetensors::save(map, tmp).map_err(Error::candle("write safetensors"))
    })
}

fn save_json(value: &impl Serialize, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Candle {
        action: "serialise JSON",
        detail: e.to_string(),
    })?;
    write_atomic(path, |tmp| {
        std::fs::write(tmp, text).map_err(Error::io(format!("writing {}", tmp.display())))
    })
}

fn var_tensors(vars: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = vars.data().lock().map_err(|_| Error::Candle {
        action: "read weights",
        detail: "lock poisoned".into(),
    })?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// Read the config of a checkpoint or model directory.
pub fn read_config(dir: &Path) -> Result<TinyConfig> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).map_err(Error::io(format!("reading {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Candle {
        action: "parse config.json",
        detail: e.to_string(),
    })
}

/// Train; `on_progress` hears every step and returns false to stop early (a checkpoint is
/// written first). Returns the final state; the shipped model is in `out_dir/model`.
pub fn train(
    options: &TrainOptions,
    embedder: &dyn Embedder,
    mut on_progress: impl FnMut(&TrainProgress) -> bool,
) -> Result<TrainState> {
    let device = Device::Cpu;
    std::fs::create_dir_all(&options.out_dir)
        .map_err(Error::io(format!("creating {}", options.out_dir.display())))?;
    let (config, mut state) = match &options.resume {
        Some(dir) => {
            let mut config = read_config(dir)?;
            let upgrade = options.add_cross_attention && !config.cross_attention;
            let add_conv = options.add_final_conv && !config.final_conv;
            let add_refiner = options.add_refiner > 0 && config.refiner == 0;
            config.cross_attention |= options.add_cross_attention;
            config.final_conv |= options.add_final_conv;
            if add_refiner {
                config.refiner = options.add_refiner;
                config.validate().map_err(|reason| Error::InvalidRequest {
                    field: "refiner",
                    reason,
                })?;
            }
            let state = match std::fs::read_to_string(dir.join("state.json")) {
                Ok(text) => {
                    serde_json::from_str::<TrainState>(&text).map_err(|e| Error::Candle {
                        action: "parse state.json",
                        detail: e.to_string(),
                    })?
                }
                Err(_) => TrainState::fresh(config, options),
            };
            let state = TrainState { config, ..state };
            if upgrade {
                tracing::info!("adding cross-attention to the resumed network");
            }
            if add_conv {
                tracing::info!("adding the final pixel convolution to the resumed network");
            }
            if add_refiner {
                tracing::info!(
                    width = config.refiner,
                    "adding the pixel refiner to the resumed network"
                );
            }
            (config, state)
        }
        None => (options.config, TrainState::fresh(options.config, options)),
    };
    let vars = VarMap::new();
    let model = TinyDit::new(config, VarBuilder::from_varmap(&vars, DTYPE, &device))
        .map_err(Error::candle("build the model"))?;
    if let Some(dir) = &options.resume {
        let weights = if dir.join("model.safetensors").exists() {
            dir.join("model.safetensors")
        } else {
            dir.join("ema.safetensors")
        };
        // Layers a resumed network gains keep their fresh initialisation.
        let gained = |name: &str| {
            (options.add_cross_attention
                && (name.contains(".cross.")
                    || name.starts_with("text_tokens.")
                    || name == "null_token"))
                || (options.add_final_conv && name.starts_with("final_conv."))
                || (options.add_refiner > 0 && name.starts_with("refiner."))
        };
        load_into(&vars, &weights, &device, gained)?;
        tracing::info!(step = state.step, dir = %dir.display(), "resuming");
    }
    let mut ema: HashMap<String, Tensor> =
        match options.resume.as_ref().map(|d| d.join("ema.safetensors")) {
            Some(path) if path.exists() => candle_core::safetensors::load(&path, &device)
                .and_then(|m| {
                    m.into_iter()
                        .map(|(k, v)| v.to_dtype(DTYPE).map(|v| (k, v)))
                        .collect()
                })
                .map_err(Error::candle("load EMA weights"))?,
            _ => var_tensors(&vars)?
                .into_iter()
                .map(|(k, v)| v.detach().copy().map(|v| (k, v.detach())))
                .collect::<candle_core::Result<_>>()
                .map_err(Error::candle("copy weights"))?,
        };
    let mut optimizer = AdamW::new(
        vars.all_vars(),
        ParamsAdamW {
            lr: options.lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
    .map_err(Error::candle("create the optimiser"))?;
    let generator =
        Generator::new(config.image_size as u32).ok_or_else(|| Error::InvalidRequest {
            field: "image_size",
            reason: format!("{} is outside 8..=1024", config.image_size),
        })?;
    let mut embeddings = EmbeddingCache::new(embedder, config.cross_attention);
    let mut rng =
        ChaCha8Rng::seed_from_u64(state.seed ^ state.step.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let checkpoint_dir = options.out_dir.join("checkpoint");
    let mut last_checkpoint = Instant::now();
    let mut smoothed = state.losses.last().map(|&(_, l)| l).unwrap_or(0.0);
    let started_at_step = state.step;
    let run_started = Instant::now();
    let seconds_before = state.seconds;

    while state.step < options.steps {
        let step_started = Instant::now();
        let Batch {
            images: x0,
            captions,
            weights,
        } = batch_tensor(
            &generator,
            state.seed,
            state.next_sample,
            state.batch,
            options.foreground_weight,
            &device,
        )?;
        state.next_sample += state.batch as u64;
        let dropped: Vec<bool> = (0..captions.len())
            .map(|_| rng.random::<f32>() < options.cond_dropout)
            .collect();
        let cond = embeddings.condition(&captions, &dropped, &device)?;
        let loss = flow::loss(&model, &x0, &cond, weights.as_ref(), &mut rng)
            .map_err(Error::candle("compute the loss"))?;
        let since_start = state.step - started_at_step + 1;
        // A resumed run has fresh optimiser moments; Adam's bias correction makes a short
        // warm-up enough for them.
        let warmup = if started_at_step == 0 {
            options.warmup
        } else {
            options.warmup.min(RESUME_WARMUP)
        };
        let lr = options.lr
            * (since_start as f64 / warmup.max(1) as f64).min(1.0)
            * decay_factor(state.step, options.steps, options.decay_steps);
        optimizer.set_learning_rate(lr);
        optimizer
            .backward_step(&loss)
            .map_err(Error::candle("take an optimiser step"))?;
        update_ema(
            &mut ema,
            &vars,
            ema_decay_at(state.step + 1, options.ema_decay),
        )?;
        state.step += 1;
        let loss_value = loss
            .to_scalar::<f32>()
            .map_err(Error::candle("read the loss"))?;
        smoothed = if state.step == 1 {
            loss_value
        } else {
            0.98 * smoothed + 0.02 * loss_value
        };
        if state.step % 10 == 0 {
            state.losses.push((state.step, smoothed));
        }
        state.seconds = seconds_before + run_started.elapsed().as_secs_f64();
        let done = state.step >= options.steps;
        let mut progress = TrainProgress {
            step: state.step,
            loss: loss_value,
            smoothed,
            images_per_sec: state.batch as f32 / step_started.elapsed().as_secs_f32().max(1e-6),
            checkpoint: None,
        };
        let due = last_checkpoint.elapsed() >= options.checkpoint_every || done;
        if due {
            write_checkpoint(&checkpoint_dir, &vars, &ema, &state)?;
            write_model(&options.out_dir.join("model"), &ema, &state)?;
            write_loss_curve(&options.out_dir, &state.losses)?;
            last_checkpoint = Instant::now();
            progress.checkpoint = Some(checkpoint_dir.clone());
        }
        if !on_progress(&progress) {
            if !due {
                write_checkpoint(&checkpoint_dir, &vars, &ema, &state)?;
                write_model(&options.out_dir.join("model"), &ema, &state)?;
                write_loss_curve(&options.out_dir, &state.losses)?;
            }
            break;
        }
    }
    Ok(state)
}

/// Share of the peak learning rate at step `step` (from 0) of a run to `steps` whose last
/// `decay` steps fall linearly to a tenth.
fn decay_factor(step: u64, steps: u64, decay: u64) -> f64 {
    let left = steps.saturating_sub(step);
    if decay == 0 || left >= decay {
        return 1.0;
    }
    0.1 + 0.9 * left as f64 / decay as f64
}

/// Steps of learning-rate warm-up after a resume (at most).
const RESUME_WARMUP: u64 = 50;

/// Decay of the weights' moving average at optimiser step `step` (from 1): the power-function
/// profile of Karras et al. (2024), β = (1 − 1/step)^(γ+1) with γ = 6.94, so the average
/// always spans about the last tenth of the run, capped at `cap`. (The former profile,
/// 1 − 1/(step + 10), averaged the whole run evenly: after a few hundred steps the average was
/// still mostly the untrained network, and sampled noise while the weights drew colours.)
fn ema_decay_at(step: u64, cap: f64) -> f64 {
    if step <= 1 {
        return 0.0;
    }
    (1.0 - 1.0 / step as f64).powf(7.94).min(cap)
}

/// Move the moving average towards the current weights. Every result is detached: a tensor
/// computed from the previous average would otherwise keep it (and so every earlier average)
/// alive through candle's backprop graph, growing memory by a model's size per step.
fn update_ema(ema: &mut HashMap<String, Tensor>, vars: &VarMap, decay: f64) -> Result<()> {
    let current = var_tensors(vars)?;
    for (name, value) in current {
        let value = value.detach();
        let next = match ema.get(&name) {
            Some(avg) => ((avg * decay).map_err(Error::candle("update EMA"))?
                + (&value * (1.0 - decay)).map_err(Error::candle("update EMA"))?)
            .map_err(Error::candle("update EMA"))?,
            None => value.copy().map_err(Error::candle("update EMA"))?,
        };
        ema.insert(name, next.detach());
    }
    Ok(())
}

fn write_checkpoint(
    dir: &Path,
    vars: &VarMap,
    ema: &HashMap<String, Tensor>,
    state: &TrainState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    save_tensors(&var_tensors(vars)?, &dir.join("model.safetensors"))?;
    save_tensors(ema, &dir.join("ema.safetensors"))?;
    save_json(&state.config, &dir.join("config.json"))?;
    save_json(state, &dir.join("state.json"))?;
    tracing::info!(step = state.step, dir = %dir.display(), "checkpoint written");
    Ok(())
}

/// The shippable model: EMA weights in f16 (half the size, no visible loss), config, and the
/// training state so a later run can resume from the shipped directory.
fn write_model(dir: &Path, ema: &HashMap<String, Tensor>, state: &TrainState) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    let half: HashMap<String, Tensor> = ema
        .iter()
        .map(|(k, v)| v.to_dtype(candle_core::DType::F16).map(|v| (k.clone(), v)))
        .collect::<candle_core::Result<_>>()
        .map_err(Error::candle("convert weights to f16"))?;
    save_tensors(&half, &dir.join("model.safetensors"))?;
    save_json(&state.config, &dir.join("config.json"))?;
    save_json(state, &dir.join("state.json"))
}

/// Load weights of any float dtype into the (f32) variables of `vars`; a variable the file
/// lacks is an error unless `may_lack(name)`, in which case it keeps its initial value.
fn load_into(
    vars: &VarMap,
    path: &Path,
    device: &Device,
    may_lack: impl Fn(&str) -> bool,
) -> Result<()> {
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(Error::candle("read checkpoint weights"))?;
    let data = vars.data().lock().map_err(|_| Error::Candle {
        action: "load weights",
        detail: "lock poisoned".into(),
    })?;
    for (name, var) in data.iter() {
        if !tensors.contains_key(name) && may_lack(name) {
            continue;
        }
        let tensor = tensors.get(name).ok_or_else(|| Error::Candle {
            action: "load checkpoint weights",
            detail: format!("{} has no tensor `{name}`", path.display()),
        })?;
        var.set(
            &tensor
                .to_dtype(DTYPE)
                .map_err(Error::candle("convert weights"))?,
        )
        .map_err(Error::candle("load checkpoint weights"))?;
    }
    Ok(())
}

/// `loss.csv` and `loss.png` (smoothed training loss against step).
fn write_loss_curve(dir: &Path, losses: &[(u64, f32)]) -> Result<()> {
    let mut csv = String::from("step,loss\n");
    for (step, loss) in losses {
        csv.push_str(&format!("{step},{loss}\n"));
    }
    write_atomic(&dir.join("loss.csv"), |tmp| {
        std::fs::write(tmp, &csv).map_err(Error::io("writing loss.csv"))
    })?;
    crate::plot::line_chart(
        losses,
        "training loss (smoothed)",
        "step",
        "loss",
        &dir.join("loss.png"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the moving average kept every earlier average alive through candle's
    /// backprop graph; a training run grew by a model's size per step until the OOM killer
    /// stopped it at step 256 (24 GB).
    #[test]
    fn the_moving_average_follows_the_recent_tenth_of_the_run() {
        assert_eq!(ema_decay_at(1, 0.999), 0.0);
        // Its window 1 / (1 − β) is about a tenth of the steps done, up to the cap.
        for step in [100u64, 1000, 5000] {
            let window = 1.0 / (1.0 - ema_decay_at(step, 0.9999));
            let share = window / step as f64;
            assert!(
                (0.1..0.15).contains(&share),
                "step {step}: window {window:.0}"
            );
        }
        assert_eq!(ema_decay_at(1_000_000, 0.999), 0.999);
    }

    #[test]
    fn the_learning_rate_decays_over_the_last_steps_only() {
        assert_eq!(decay_factor(0, 1000, 0), 1.0);
        assert_eq!(decay_factor(999, 1000, 0), 1.0);
        assert_eq!(decay_factor(700, 1000, 300), 1.0);
        assert!((decay_factor(850, 1000, 300) - 0.55).abs() < 1e-9);
        assert!((decay_factor(1000, 1000, 300) - 0.1).abs() < 1e-9);
        // A run resumed past its end keeps the floor.
        assert!((decay_factor(1200, 1000, 300) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn ema_updates_do_not_keep_a_graph_alive() {
        let device = Device::Cpu;
        let vars = VarMap::new();
        let _model = TinyDit::new(
            TinyConfig::toy(),
            VarBuilder::from_varmap(&vars, DTYPE, &device),
        )
        .unwrap();
        let mut ema = HashMap::new();
        for _ in 0..3 {
            update_ema(&mut ema, &vars, 0.9).unwrap();
        }
        assert!(!ema.is_empty());
        for (name, tensor) in &ema {
            assert!(
                !tensor.track_op(),
                "EMA tensor {name} still tracks its history"
            );
        }
    }
}
