//! The MiniLM embedder on the real all-MiniLM-L6-v2 weights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use atelier_inference::embed::{Embedder, MiniLmEmbedder};

fn embedder() -> MiniLmEmbedder {
    let path = common::installed("all-minilm-l6-v2");
    MiniLmEmbedder::load(path.parent().unwrap()).unwrap()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn vectors_are_unit_length_and_meaningful() {
    let e = embedder();
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
        "similar {similar}, different {different}"
    );
}

#[test]
fn batching_does_not_change_vectors() {
    let e = embedder();
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
    assert!(diff < 1e-4, "padding changed the vector by {diff}");
}

#[test]
fn long_texts_are_windowed_not_cut() {
    let e = embedder();
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
