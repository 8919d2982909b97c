//! The MiniLM embedder on the real all-MiniLM-L6-v2 weights, on both engines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use atelier_inference::embed::{EmbedEngine, Embedder, MiniLmEmbedder};

fn embedder_on(engine: EmbedEngine) -> MiniLmEmbedder {
    let path = common::installed("all-minilm-l6-v2");
    let e = MiniLmEmbedder::load_with(path.parent().unwrap(), engine).unwrap();
    assert_eq!(e.engine(), engine);
    e
}

/// Each engine in turn.
fn embedders() -> impl Iterator<Item = MiniLmEmbedder> {
    [
        EmbedEngine::Llama,
        EmbedEngine::LlamaQ8,
        EmbedEngine::Candle,
    ]
    .into_iter()
    .map(embedder_on)
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_are_unit_length_and_meaningful() {
    for e in embedders() {
        assert_eq!(e.dimensions(), 384);
        let texts = [
            "a navy background with gold confetti",
            "gold confetti scattered over a dark blue backdrop",
            "a quarterly financial report table",
        ];
        let v = e.embed(&texts).unwrap();
        for x in &v {
            assert!((dot(x, x) - 1.0).abs() < 1e-4);
        }
        let similar = dot(&v[0], &v[1]);
        let different = dot(&v[0], &v[2]);
        assert!(
            similar > different + 0.2,
            "{:?}: similar {similar}, different {different}",
            e.engine()
        );
    }
}

#[test]
fn batching_does_not_change_vectors() {
    for e in embedders() {
        let alone = e.embed(&["a red circle on the left"]).unwrap();
        let batched = e
            .embed(&[
                "a much longer caption that forces padding in the batch",
                "a red circle on the left",
            ])
            .unwrap();
        let diff: f32 = alone[0]
            .iter()
            .zip(&batched[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            diff < 1e-4,
            "{:?}: batching changed the vector by {diff}",
            e.engine()
        );
    }
}

#[test]
fn long_texts_are_windowed_not_cut() {
    for e in embedders() {
        let head = "Our brand voice is warm and direct. ".repeat(60);
        let tail = "Never use the colour red in any banner. ".repeat(60);
        let long = format!("{head}{tail}");
        let v = e.embed(&[long.as_str(), head.as_str()]).unwrap();
        // Were the text cut at the window, it would embed exactly like its head.
        let same = dot(&v[0], &v[1]);
        assert!(
            same < 0.999,
            "the tail of a long text was ignored (cosine {same})"
        );
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-4);
    }
}

/// llama.cpp and candle compute the same network: the same vectors up to rounding (llama.cpp's
/// GELU is the tanh approximation; 8-bit weights a little more), for short, long, batched and
/// empty texts.
#[test]
fn the_engines_give_the_same_vectors() {
    let llama = embedder_on(EmbedEngine::Llama);
    let q8 = embedder_on(EmbedEngine::LlamaQ8);
    let candle = embedder_on(EmbedEngine::Candle);
    let long = "Confetti in gold and navy, never red, always with the logo top left. ".repeat(50);
    let texts = [
        "a banner for our summer sale",
        "",
        "Use the primary colour #1D3557 for headlines; keep the logo clear of other elements.",
        long.as_str(),
    ];
    let a = llama.embed(&texts).unwrap();
    let b = candle.embed(&texts).unwrap();
    let c = q8.embed(&texts).unwrap();
    for (i, ((x, y), z)) in a.iter().zip(&b).zip(&c).enumerate() {
        let cos = dot(x, y);
        assert!(cos > 0.9999, "text {i}: cosine llama.cpp/candle {cos}");
        let cos = dot(x, z);
        assert!(cos > 0.998, "text {i}: cosine f32/q8_0 {cos}");
    }
    // Not trivially equal because both are constant: different texts differ.
    assert!(dot(&a[0], &a[2]) < 0.9);
}

/// Per-token states agree across engines like the pooled vectors do, and the one-pass
/// `embed_with_token_states` gives exactly what `embed` and `token_states` give apart.
#[test]
fn the_engines_give_the_same_token_states_and_one_pass_equals_two() {
    let texts = [
        "a gold circle on navy",
        "",
        "sunset over mountains in orange and purple",
    ];
    let states: Vec<_> = [
        EmbedEngine::Llama,
        EmbedEngine::LlamaQ8,
        EmbedEngine::Candle,
    ]
    .into_iter()
    .map(|engine| {
        let e = embedder_on(engine);
        let apart = (
            e.embed(&texts).unwrap(),
            e.token_states(&texts, 64).unwrap(),
        );
        let together = e.embed_with_token_states(&texts, 64).unwrap();
        assert_eq!(apart.1, together.1, "{engine:?}");
        for (x, y) in apart.0.iter().zip(&together.0) {
            assert!(dot(x, y) > 0.99999, "{engine:?}: cosine {}", dot(x, y));
        }
        together.1
    })
    .collect();
    let (llama, q8, candle) = (&states[0], &states[1], &states[2]);
    for (t, text) in texts.iter().enumerate() {
        assert_eq!(llama[t].tokens, candle[t].tokens, "{text}");
        for row in 0..llama[t].tokens {
            let r =
                |s: &atelier_inference::embed::TokenStates| s.values[row * 384..][..384].to_vec();
            let cos = |a: &[f32], b: &[f32]| dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt());
            let c = cos(&r(&llama[t]), &r(&candle[t]));
            assert!(c > 0.999, "{text} token {row}: cosine llama.cpp/candle {c}");
            let c = cos(&r(&llama[t]), &r(&q8[t]));
            assert!(c > 0.99, "{text} token {row}: cosine f32/q8_0 {c}");
        }
    }
    // A caption longer than the cut takes the two-pass path and still agrees.
    let e = embedder_on(EmbedEngine::LlamaQ8);
    let long = ["a gold circle on navy with confetti"];
    let (v, s) = e.embed_with_token_states(&long, 3).unwrap();
    assert_eq!(s[0].tokens, 3);
    assert_eq!(v, e.embed(&long).unwrap());
}

#[derive(serde::Deserialize)]
struct Reference {
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

/// Every engine against sentence-transformers' own vectors for the same texts
/// (scripts/reference/minilm.py wrote them from the same weights): candle to float rounding,
/// llama.cpp to its tanh GELU's rounding.
#[test]
fn every_engine_matches_sentence_transformers() {
    let reference: Reference =
        serde_json::from_str(include_str!("data/minilm/reference.json")).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(String::as_str).collect();
    for e in embedders() {
        let ours = e.embed(&texts).unwrap();
        for (i, (x, y)) in ours.iter().zip(&reference.vectors).enumerate() {
            let cos = dot(x, y);
            let largest = x
                .iter()
                .zip(y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let (min_cos, max_diff) = match e.engine() {
                EmbedEngine::Candle => (0.999_999, 1e-5),
                EmbedEngine::Llama => (0.9999, 2e-3),
                EmbedEngine::LlamaQ8 => (0.998, 1.5e-2),
            };
            assert!(
                cos > min_cos && largest < max_diff,
                "{:?}, text {i} {:?}: cosine {cos}, largest difference {largest}",
                e.engine(),
                texts[i]
            );
        }
    }
}
