//! Atelier's offline image model: training lowers the loss, checkpoints round-trip, generation
//! is deterministic and honours the ImageGenerator contract. Uses the real MiniLM embedder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use atelier_inference::Error;
use atelier_inference::diffusion::tiny::TinyGenerator;
use atelier_inference::diffusion::tiny::model::TinyConfig;
use atelier_inference::diffusion::tiny::train::{TrainOptions, train};
use atelier_inference::diffusion::{ImageGenerator, ImageRequest, InitImage};
use atelier_inference::embed::{Embedder, MiniLmEmbedder};

fn embedder() -> Arc<MiniLmEmbedder> {
    let path = common::installed("all-minilm-l6-v2");
    Arc::new(MiniLmEmbedder::load(path.parent().unwrap()).unwrap())
}

fn toy_options(out: &std::path::Path, steps: u64) -> TrainOptions {
    let mut o = TrainOptions::new(out);
    o.config = TinyConfig::toy();
    o.steps = steps;
    o.batch = 8;
    o.lr = 2e-3;
    o.warmup = 5;
    o.checkpoint_every = Duration::from_secs(3600);
    o
}

#[test]
fn a_short_training_run_lowers_the_loss_and_resumes() {
    let out = tempfile::tempdir().unwrap();
    let e = embedder();
    let mut losses = Vec::new();
    let state = train(&toy_options(out.path(), 120), e.as_ref(), |p| {
        losses.push(p.loss);
        true
    })
    .unwrap();
    assert_eq!(state.step, 120);
    let first: f32 = losses[..20].iter().sum::<f32>() / 20.0;
    let last: f32 = losses[losses.len() - 20..].iter().sum::<f32>() / 20.0;
    assert!(last < first * 0.8, "loss went from {first} to {last}");
    for file in [
        "checkpoint/model.safetensors",
        "checkpoint/ema.safetensors",
        "checkpoint/state.json",
        "model/model.safetensors",
        "model/config.json",
        "loss.csv",
        "loss.png",
    ] {
        assert!(out.path().join(file).exists(), "{file} missing");
    }

    // Resume continues the step count and the data stream, here with the shapes' pixels
    // weighted up (as the shipped model was fine-tuned).
    let mut resumed = toy_options(out.path(), 130);
    resumed.resume = Some(out.path().join("checkpoint"));
    resumed.foreground_weight = 8.0;
    let mut resumed_losses = Vec::new();
    let state2 = train(&resumed, e.as_ref(), |p| {
        resumed_losses.push(p.loss);
        true
    })
    .unwrap();
    assert_eq!(state2.step, 130);
    assert!(
        resumed_losses.iter().all(|l| l.is_finite() && *l < first),
        "{resumed_losses:?} (the first steps averaged {first})"
    );
    assert_eq!(state2.next_sample, state.next_sample + 10 * 8);
}

#[tokio::test]
async fn saved_weights_load_and_generation_is_deterministic() {
    let out = tempfile::tempdir().unwrap();
    let e = embedder();
    train(&toy_options(out.path(), 3), e.as_ref(), |_| true).unwrap();
    let generator = TinyGenerator::load(&out.path().join("model"), e.clone()).unwrap();

    let mut request = ImageRequest::new("a large red circle on the left of a navy background");
    request.width = 128;
    request.height = 128;
    request.steps = 4;
    request.seed = 9;
    request.count = 2;
    let steps_seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = steps_seen.clone();
    let a = generator
        .generate(
            request.clone(),
            Some(Box::new(move |p| {
                seen.lock()
                    .unwrap()
                    .push((p.image, p.step, p.preview.is_some()))
            })),
        )
        .await
        .unwrap();
    let b = generator.generate(request.clone(), None).await.unwrap();
    assert_eq!(a.images.len(), 2);
    assert_eq!(a.images[0].image.dimensions(), (128, 128));
    assert_eq!(
        a.images[0].image, b.images[0].image,
        "same seed, same bytes"
    );
    assert_ne!(
        a.images[0].image, a.images[1].image,
        "image i uses seed + i"
    );
    assert_eq!(a.images[1].seed, 10);
    let seen = steps_seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        8,
        "one progress event per step per image: {seen:?}"
    );
    assert!(seen.iter().all(|s| s.2), "every step has a preview");

    // Strength 0 keeps the init image.
    let init = image::RgbImage::from_fn(128, 128, |x, _| image::Rgb([x as u8, 10, 200]));
    let mut keep = request.clone();
    keep.count = 1;
    keep.init = Some(InitImage {
        image: init.clone(),
        strength: 0.0,
    });
    let kept = generator.generate(keep, None).await.unwrap();
    assert_eq!(kept.images[0].image, init);

    // Limits are explicit.
    let mut bad = request.clone();
    bad.width = 100;
    let err = generator.generate(bad, None).await.unwrap_err();
    assert!(
        err.to_string().contains("width") && err.to_string().contains("multiple of 64"),
        "{err}"
    );
    let mut wide = request.clone();
    wide.width = 256;
    assert!(
        generator
            .generate(wide, None)
            .await
            .unwrap_err()
            .to_string()
            .contains("square")
    );

    // Cancellation stops it.
    let cancelled = request.clone();
    cancelled.cancel.cancel();
    assert!(matches!(
        generator.generate(cancelled, None).await.unwrap_err(),
        Error::Cancelled
    ));
    assert_eq!(e.dimensions(), 384);
}

#[test]
fn minilm_gives_the_state_of_every_word_piece() {
    let e = embedder();
    let states = e
        .token_states(&["a gold circle on navy", "", "a gold circle on navy"], 64)
        .unwrap();
    assert_eq!(states.len(), 3);
    // Five word-pieces, [CLS] and [SEP] left out.
    assert_eq!(states[0].tokens, 5);
    assert_eq!(states[0].values.len(), 5 * 384);
    assert_eq!(states[1].tokens, 0, "an empty text has no words");
    assert_eq!(states[0], states[2], "the same text, the same states");
    // Contextual: "gold" next to "circle" differs from "gold" alone, and words differ.
    let row =
        |s: &atelier_inference::embed::TokenStates, i: usize| s.values[i * 384..][..384].to_vec();
    let alone = e.token_states(&["gold"], 64).unwrap();
    assert_eq!(alone[0].tokens, 1);
    assert_ne!(row(&states[0], 1), row(&alone[0], 0));
    assert_ne!(row(&states[0], 1), row(&states[0], 2));
    // Longer texts are cut to the first max_tokens word-pieces.
    let cut = e.token_states(&["a gold circle on navy"], 2).unwrap();
    assert_eq!(cut[0].tokens, 2);
    let err = e.token_states(&["x"], 0).unwrap_err();
    assert!(err.to_string().contains("max_tokens"), "{err}");
}

#[tokio::test]
async fn a_network_trained_without_cross_attention_final_conv_or_refiner_gains_them_on_resume() {
    let out = tempfile::tempdir().unwrap();
    let e = embedder();
    let mut plain = toy_options(out.path(), 20);
    plain.config.cross_attention = false;
    plain.config.final_conv = false;
    plain.config.refiner = 0;
    train(&plain, e.as_ref(), |_| true).unwrap();
    let shipped = out.path().join("model");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["cross_attention"], false);
    assert_eq!(config["final_conv"], false);
    assert_eq!(config["refiner"], 0);

    // Resuming from the shipped directory without the flag keeps the network as it is …
    let next = tempfile::tempdir().unwrap();
    let mut same = toy_options(next.path(), 22);
    same.resume = Some(shipped.clone());
    train(&same, e.as_ref(), |_| true).unwrap();
    let config = std::fs::read_to_string(next.path().join("model/config.json")).unwrap();
    assert!(config.contains("\"cross_attention\": false"), "{config}");

    // … and with the flags, adds cross-attention, the final convolution and the refiner and
    // goes on from the same step.
    let upgraded = tempfile::tempdir().unwrap();
    let mut grow = toy_options(upgraded.path(), 25);
    grow.resume = Some(shipped);
    grow.add_cross_attention = true;
    grow.add_final_conv = true;
    grow.add_refiner = 4;
    let state = train(&grow, e.as_ref(), |_| true).unwrap();
    assert_eq!(state.step, 25);
    assert!(state.config.cross_attention && state.config.final_conv);
    assert_eq!(state.config.refiner, 4);
    let weights = candle_core::safetensors::load(
        upgraded.path().join("model/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(weights.contains_key("final_conv.weight"));
    assert_eq!(weights["refiner.conv1.weight"].dims(), &[9 * 4, 4]);
    let generator = TinyGenerator::load(&upgraded.path().join("model"), e.clone()).unwrap();
    let mut request = ImageRequest::new("a navy background with gold confetti");
    request.width = 64;
    request.height = 64;
    request.steps = 2;
    assert_eq!(
        generator
            .generate(request, None)
            .await
            .unwrap()
            .images
            .len(),
        1
    );
}

/// An embedder that only returns pooled vectors, as a remote API does.
struct PooledOnly(Arc<MiniLmEmbedder>);

impl Embedder for PooledOnly {
    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }
    fn embed(&self, texts: &[&str]) -> atelier_inference::Result<Vec<Vec<f32>>> {
        self.0.embed(texts)
    }
}

#[test]
fn a_cross_attention_network_refuses_an_embedder_without_token_states() {
    let out = tempfile::tempdir().unwrap();
    let e = embedder();
    train(&toy_options(out.path(), 2), e.as_ref(), |_| true).unwrap();
    let err = TinyGenerator::load(&out.path().join("model"), Arc::new(PooledOnly(e.clone())))
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("per-token states"), "{err}");
}
