//! The ONNX vision models on tract: u2netp masks and open_nsfw scores, on the real weights.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use atelier_inference::vision::clip::ClipScorer;
use atelier_inference::vision::safety::{self, NsfwClassifier};
use atelier_inference::vision::segment::Segmenter;
use atelier_inference::vision::upscale::Upscaler;
use image::{GrayImage, Luma, Rgb, RgbImage};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/open_nsfw")
        .join(name)
}

/// Intersection over union of the pixels above half intensity.
fn iou(mask: &GrayImage, truth: &GrayImage) -> f64 {
    let (mut inter, mut union) = (0u64, 0u64);
    for (a, b) in mask.pixels().zip(truth.pixels()) {
        let (a, b) = (a.0[0] > 127, b.0[0] > 127);
        inter += u64::from(a && b);
        union += u64::from(a || b);
    }
    inter as f64 / union.max(1) as f64
}

/// A scene with a known foreground: `inside` says which pixels belong to the subject.
fn scene(
    (w, h): (u32, u32),
    ground: impl Fn(u32, u32) -> [u8; 3],
    subject: [u8; 3],
    inside: impl Fn(f64, f64) -> bool,
) -> (RgbImage, GrayImage) {
    let image = RgbImage::from_fn(w, h, |x, y| {
        if inside(f64::from(x), f64::from(y)) {
            Rgb(subject)
        } else {
            Rgb(ground(x, y))
        }
    });
    let truth = GrayImage::from_fn(w, h, |x, y| {
        Luma([if inside(f64::from(x), f64::from(y)) {
            255
        } else {
            0
        }])
    });
    (image, truth)
}

#[test]
fn u2netp_finds_a_clear_subject() {
    let segmenter = Segmenter::load(&common::installed("u2netp")).unwrap();
    let ellipse = |x: f64, y: f64| {
        let (dx, dy) = ((x - 240.0) / 90.0, (y - 185.0) / 105.0);
        dx * dx + dy * dy <= 1.0
    };
    // A bottle-like shape: a narrow neck on a wide body.
    let bottle = |x: f64, y: f64| {
        ((215.0..=265.0).contains(&x) && (50.0..=140.0).contains(&y))
            || ((170.0..=310.0).contains(&x) && (140.0..=310.0).contains(&y))
    };
    let cases = [
        (
            "red disc on warm white",
            scene((480, 360), |_, _| [235, 232, 225], [200, 40, 40], ellipse),
        ),
        (
            "navy bottle on light grey",
            scene((480, 360), |_, _| [245, 245, 245], [30, 60, 140], bottle),
        ),
        (
            "amber disc on a dark gradient",
            scene(
                (480, 360),
                |x, y| [(40 + y / 4) as u8, (60 + y / 5) as u8, (90 + x / 8) as u8],
                [240, 170, 20],
                ellipse,
            ),
        ),
    ];
    for (what, (image, truth)) in cases {
        let mask = segmenter.mask(&image).unwrap();
        assert_eq!(mask.dimensions(), image.dimensions(), "{what}");
        let score = iou(&mask, &truth);
        assert!(score >= 0.8, "{what}: IoU {score:.3} < 0.8");
    }
}

#[test]
fn open_nsfw_matches_the_onnx_runtime_reference() {
    let classifier = NsfwClassifier::load(&common::installed("open-nsfw")).unwrap();
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("reference.json")).unwrap()).unwrap();
    let outputs = reference["outputs"].as_object().unwrap();
    assert!(
        outputs.len() >= 5,
        "the reference covers {} images",
        outputs.len()
    );
    for (file, expected) in outputs {
        let image = image::open(data(file)).unwrap().to_rgb8();
        let input = safety::preprocess(&image, false).unwrap();
        let score = classifier.classify_input(input).unwrap();
        for (got, key) in [(score.sfw, "sfw"), (score.nsfw, "nsfw")] {
            let want = expected[key].as_f64().unwrap() as f32;
            assert!(
                (got - want).abs() <= 1e-4,
                "{file}: {key} {got} vs ONNX Runtime's {want}"
            );
        }
        // The full pipeline (with the JPEG round trip) agrees on what these images are.
        let full = classifier.classify(&image).unwrap();
        assert!(full.nsfw < 0.2, "{file}: {full:?}");
        assert!((full.sfw + full.nsfw - 1.0).abs() < 1e-4);
    }
}

#[test]
fn vision_models_refuse_empty_and_oversized_images_clearly() {
    let classifier = NsfwClassifier::load(&common::installed("open-nsfw")).unwrap();
    let segmenter = Segmenter::load(&common::installed("u2netp")).unwrap();
    let empty = RgbImage::new(0, 0);
    let err = classifier.classify(&empty).unwrap_err().to_string();
    assert!(err.contains("image") && err.contains("0×0"), "{err}");
    let err = segmenter.mask(&empty).unwrap_err().to_string();
    assert!(err.contains("0×0"), "{err}");
    let huge = RgbImage::new(10_000, 5_000);
    let err = classifier.classify(&huge).unwrap_err().to_string();
    assert!(
        err.contains("50.0 megapixels") && err.contains("at most 40"),
        "{err}"
    );
    let err = segmenter.mask(&huge).unwrap_err().to_string();
    assert!(err.contains("50.0 megapixels"), "{err}");
    let err = classifier
        .classify_input(vec![0.0; 10])
        .unwrap_err()
        .to_string();
    assert!(err.contains("224×224×3"), "{err}");
}

#[test]
fn a_missing_model_file_names_the_path() {
    let err = Segmenter::load(std::path::Path::new("/nonexistent/u2netp.onnx"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/u2netp.onnx"), "{err}");
}

fn esrgan_dir() -> PathBuf {
    common::installed("esrgan-slim")
        .parent()
        .unwrap()
        .to_path_buf()
}

fn esrgan_data(name: &str) -> RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/esrgan")
        .join(name);
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn esrgan_matches_tensorflow_js_across_tile_seams() {
    let input = esrgan_data("input.png");
    for scale in [2, 4] {
        let upscaler = Upscaler::load(&esrgan_dir(), scale).unwrap();
        assert_eq!(upscaler.scale(), scale);
        let got = upscaler.upscale(&input).unwrap();
        let want = esrgan_data(&format!("x{scale}.png"));
        assert_eq!(got.dimensions(), want.dimensions());
        // Same graph, same weights, float32 on both sides: only rounding at .5 may differ.
        let (mut worst, mut sum) = (0u8, 0u64);
        for (a, b) in got.as_raw().iter().zip(want.as_raw()) {
            let d = a.abs_diff(*b);
            worst = worst.max(d);
            sum += u64::from(d);
        }
        let mean = sum as f64 / got.as_raw().len() as f64;
        assert!(
            worst <= 1 && mean < 0.01,
            "x{scale}: max {worst}, mean {mean:.4}"
        );
    }
}

#[test]
fn esrgan_refuses_other_scales_and_outputs_over_the_limit() {
    let err = Upscaler::load(&esrgan_dir(), 3).unwrap_err().to_string();
    assert!(err.contains("2× or 4×"), "{err}");
    let upscaler = Upscaler::load(&esrgan_dir(), 4).unwrap();
    let err = upscaler
        .upscale(&RgbImage::new(3000, 10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("12000×40") && err.contains("8192"), "{err}");
    let err = upscaler
        .upscale(&RgbImage::new(0, 10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("0×10"), "{err}");
    // A truncated weights file is named, not run.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(esrgan_dir().join("x2.json"), dir.path().join("x2.json")).unwrap();
    std::fs::write(dir.path().join("x2.bin"), [0u8; 1000]).unwrap();
    let err = Upscaler::load(dir.path(), 2).unwrap_err().to_string();
    assert!(
        err.contains("x2.json") && err.contains("ends at 1000 bytes"),
        "{err}"
    );
}

fn clip_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/clip")
}

#[derive(serde::Deserialize)]
struct ClipReference {
    texts: Vec<ClipText>,
    images: Vec<ClipImage>,
    cosine: Vec<Vec<f32>>,
}

#[derive(serde::Deserialize)]
struct ClipText {
    text: String,
    ids: Vec<u32>,
    truncated: bool,
    embedding: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct ClipImage {
    file: String,
    embedding: Vec<f32>,
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A random-weight CLIP in Hugging Face layout (written by scripts/reference/clip.py), loaded
/// through the real loading code, agrees with an independent NumPy forward pass within 1e-4:
/// token ids, text and image embeddings, and the similarity of every pair.
#[test]
fn clip_matches_the_reference_forward_pass() {
    let dir = clip_dir();
    let reference: ClipReference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let clip = ClipScorer::load(&dir).unwrap();
    assert_eq!(clip.name(), "atelier-test-clip");
    assert_eq!(clip.input_side(), 32);
    for text in &reference.texts {
        let (ids, truncated) = clip.tokens(&text.text).unwrap();
        assert_eq!(ids, text.ids, "{}", text.text);
        assert_eq!(truncated, text.truncated, "{}", text.text);
        let (embedding, _) = clip.embed_text(&text.text).unwrap();
        let diff = max_diff(&embedding, &text.embedding);
        assert!(
            diff < 1e-4,
            "{}: text embedding differs by {diff}",
            text.text
        );
    }
    assert!(
        reference.texts.iter().any(|t| t.truncated),
        "a long text is covered"
    );
    for (i, img) in reference.images.iter().enumerate() {
        let pixels = image::open(dir.join(&img.file)).unwrap().to_rgb8();
        let embedding = clip.embed_image(&pixels).unwrap();
        let diff = max_diff(&embedding, &img.embedding);
        assert!(
            diff < 1e-4,
            "{}: image embedding differs by {diff}",
            img.file
        );
        for (j, text) in reference.texts.iter().enumerate() {
            let sim = clip.similarity(&pixels, &text.text).unwrap();
            let expected = reference.cosine[i][j];
            assert!(
                (sim.cosine - expected).abs() < 1e-4,
                "{} vs {:?}: {} (reference {expected})",
                img.file,
                text.text,
                sim.cosine
            );
            assert_eq!(sim.truncated, text.truncated);
        }
    }
    // Same input, same bytes.
    let pixels = image::open(dir.join(&reference.images[0].file))
        .unwrap()
        .to_rgb8();
    assert_eq!(
        clip.similarity(&pixels, "red stripes").unwrap(),
        clip.similarity(&pixels, "red stripes").unwrap()
    );
}

/// Images of any shape are resized on their short side and centre-cropped; empty texts,
/// empty or oversized images and broken checkpoints give errors that say what is wrong.
#[test]
fn clip_refuses_bad_input_and_broken_checkpoints_clearly() {
    let clip = ClipScorer::load(&clip_dir()).unwrap();
    let wide = RgbImage::from_pixel(300, 100, Rgb([200, 40, 40]));
    let input = clip.pixels(&wide).unwrap();
    assert_eq!(input.dims(), &[1, 3, 32, 32]);
    let sim = clip.similarity(&wide, "red").unwrap();
    assert!((-1.0..=1.0).contains(&sim.cosine));

    let err = clip.similarity(&wide, "   ").unwrap_err().to_string();
    assert!(err.contains("text") && err.contains("empty"), "{err}");
    let err = clip.pixels(&RgbImage::new(0, 0)).unwrap_err().to_string();
    assert!(err.contains("image"), "{err}");
    let err = clip
        .pixels(&RgbImage::new(8000, 6000))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("40000000") || err.contains("megapixel"),
        "{err}"
    );

    // A directory without the files, a config with an unsupported activation, weights
    // without the class embedding: each named.
    let tmp = tempfile::tempdir().unwrap();
    let err = ClipScorer::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(clip_dir().join(file), tmp.path().join(file)).unwrap();
    }
    let config = std::fs::read_to_string(tmp.path().join("config.json")).unwrap();
    std::fs::write(
        tmp.path().join("config.json"),
        config.replacen("quick_gelu", "gelu", 1),
    )
    .unwrap();
    let err = ClipScorer::load(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("text_config.hidden_act") && err.contains("quick_gelu"),
        "{err}"
    );
    std::fs::write(tmp.path().join("config.json"), &config).unwrap();
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    let err = ClipScorer::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // Weights that lack the class embedding are refused rather than filled with noise.
    let weights = candle_core::safetensors::load(
        clip_dir().join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let partial: std::collections::HashMap<_, _> = weights
        .into_iter()
        .filter(|(name, _)| name != "vision_model.embeddings.class_embedding")
        .collect();
    candle_core::safetensors::save(&partial, tmp.path().join("model.safetensors")).unwrap();
    let err = ClipScorer::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("class_embedding"), "{err}");
}
