//! Small random-weight Stable Diffusion checkpoints in diffusers layout, for tests (here and
//! in the CLI's): each family's configs, a small CLIP tokenizer (SD 1.5: a word-level
//! `tokenizer.json`; the others: CLIP-format `vocab.json` and `merges.txt`, as diffusers
//! repositories ship it), and weights of the right names and shapes drawn at random, so
//! loading and sampling run the real code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde_json::json;

use super::tokenizer::{END, START};
use super::unet::Denoiser;
use super::{TextConfig, TextEncoder, TokenizerFiles, UNetJson, VaeJson};

/// A checkpoint family.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    Sd15,
    Sd21,
    Turbo,
    Sdxl,
    SdxlTurbo,
}

/// `unet/config.json` of Stable Diffusion 1.5 (full size: 860 M parameters).
pub fn sd15_unet_config() -> serde_json::Value {
    json!({
        "_class_name": "UNet2DConditionModel",
        "block_out_channels": [320, 640, 1280, 1280],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                             "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                           "CrossAttnUpBlock2D"],
        "attention_head_dim": 8, "cross_attention_dim": 768, "layers_per_block": 2,
        "norm_num_groups": 32, "sample_size": 64, "in_channels": 4, "out_channels": 4
    })
}

/// `vae/config.json` of Stable Diffusion 1.5 (full size).
pub fn sd15_vae_config() -> serde_json::Value {
    json!({
        "_class_name": "AutoencoderKL",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D",
                             "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D",
                           "UpDecoderBlock2D"],
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
        "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215
    })
}

/// Write `value` as pretty JSON, creating parent directories.
pub fn write(path: &Path, value: &serde_json::Value) {
    std::fs::create_dir_all(path.parent().expect("test checkpoint")).expect("test checkpoint");
    std::fs::write(
        path,
        serde_json::to_string_pretty(value).expect("test checkpoint"),
    )
    .expect("test checkpoint");
}

/// A word-level CLIP-style tokenizer: start and end tokens, `!` for SD 2's padding.
fn tokenizer(dir: &Path) {
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::normalizers::Lowercase;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;
    use tokenizers::processors::template::TemplateProcessing;
    let words = format!("<unk> <|startoftext|> ! {WORDS} <|endoftext|>");
    let vocab: std::collections::HashMap<String, u32> = words
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| (w.to_string(), i as u32))
        .collect();
    let end = vocab["<|endoftext|>"];
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .expect("test checkpoint");
    let mut tok = tokenizers::Tokenizer::new(model);
    tok.with_normalizer(Some(Lowercase));
    tok.with_pre_tokenizer(Some(Whitespace {}));
    tok.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single("<|startoftext|> $A <|endoftext|>")
            .expect("test checkpoint")
            .special_tokens(vec![("<|startoftext|>", 1), ("<|endoftext|>", end)])
            .build()
            .expect("test checkpoint"),
    ));
    std::fs::create_dir_all(dir.join("tokenizer")).expect("test checkpoint");
    tok.save(dir.join("tokenizer/tokenizer.json"), false)
        .expect("test checkpoint");
}

/// The words of the test checkpoints' vocabularies.
const WORDS: &str = "a an the of on in with red blue orange cream navy gold circle ground \
                     scooter sun over sea banner summer sale";

/// A CLIP-format `vocab.json` and `merges.txt` in `dir`: every letter, `!` and digit alone and
/// word-final (`x</w>`), the merges that spell each of `words` left to right (a word may still
/// end in pieces where another word's merge ranks first, as in real BPE), CLIP's special
/// tokens. Returns the vocabulary's size.
pub fn write_clip_vocab(dir: &Path, words: &[&str]) -> usize {
    let mut vocab: Vec<String> = Vec::new();
    let mut merges: Vec<String> = Vec::new();
    fn add(token: String, vocab: &mut Vec<String>) {
        if !vocab.contains(&token) {
            vocab.push(token);
        }
    }
    for c in ('a'..='z').chain('0'..='9').chain(['!']) {
        add(c.to_string(), &mut vocab);
        add(format!("{c}</w>"), &mut vocab);
    }
    for word in words {
        let chars: Vec<char> = word.chars().collect();
        let mut left = chars[0].to_string();
        for (i, c) in chars.iter().enumerate().skip(1) {
            let right = if i + 1 == chars.len() {
                format!("{c}</w>")
            } else {
                c.to_string()
            };
            let merge = format!("{left} {right}");
            if !merges.contains(&merge) {
                merges.push(merge);
            }
            left = format!("{left}{right}");
            add(left.clone(), &mut vocab);
        }
    }
    add(START.into(), &mut vocab);
    add(END.into(), &mut vocab);
    let map: serde_json::Map<String, serde_json::Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i.into()))
        .collect();
    std::fs::create_dir_all(dir).expect("test tokenizer");
    std::fs::write(
        dir.join("vocab.json"),
        serde_json::to_string(&map).expect("test tokenizer"),
    )
    .expect("test tokenizer");
    std::fs::write(
        dir.join("merges.txt"),
        format!("#version: 0.2\n{}\n", merges.join("\n")),
    )
    .expect("test tokenizer");
    vocab.len()
}

/// Write a small random-weight checkpoint of `family` into `dir`.
pub fn random_checkpoint(dir: &Path, family: Family) {
    let cpu = Device::Cpu;
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let xl = matches!(family, Family::Sdxl | Family::SdxlTurbo);
    let vocab_size = match family {
        Family::Sd15 => {
            tokenizer(dir);
            28
        }
        _ => write_clip_vocab(&dir.join("tokenizer"), &words),
    };
    // SD 2.x pads with `!`; SDXL's first tokenizer pads with the end token, its second with `!`.
    let sd2 = matches!(family, Family::Sd21 | Family::Turbo);
    if sd2 {
        write(
            &dir.join("tokenizer/tokenizer_config.json"),
            &json!({"pad_token": "!"}),
        );
    }
    let text = json!({
        "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 16,
        "hidden_act": if sd2 { "gelu" } else { "quick_gelu" },
    });
    write(&dir.join("text_encoder/config.json"), &text);
    let text_2 = xl.then(|| {
        write_clip_vocab(&dir.join("tokenizer_2"), &words);
        write(
            &dir.join("tokenizer_2/tokenizer_config.json"),
            &json!({"pad_token": "!"}),
        );
        let config = json!({
            "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 4, "max_position_embeddings": 16,
            "hidden_act": "gelu", "projection_dim": 16,
        });
        write(&dir.join("text_encoder_2/config.json"), &config);
        config
    });
    let unet = if xl {
        json!({
            "_class_name": "UNet2DConditionModel",
            "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 2],
            "cross_attention_dim": 64,
            "layers_per_block": 1,
            "norm_num_groups": 32,
            "use_linear_projection": true,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 16,
            "sample_size": 16,
        })
    } else {
        json!({
            "_class_name": "UNet2DConditionModel",
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": if sd2 { json!([2, 4]) } else { json!(4) },
            "cross_attention_dim": 32,
            "layers_per_block": 1,
            "norm_num_groups": 32,
            "use_linear_projection": sd2,
            "sample_size": 16,
        })
    };
    write(&dir.join("unet/config.json"), &unet);
    let vae = json!({
        "block_out_channels": [32, 32], "layers_per_block": 1, "latent_channels": 4,
        "norm_num_groups": 8, "scaling_factor": if xl { 0.13025 } else { 0.18215 },
        "force_upcast": xl,
    });
    write(&dir.join("vae/config.json"), &vae);
    let scheduler = match family {
        Family::Sd15 => json!({"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
                               "steps_offset": 1, "prediction_type": "epsilon"}),
        Family::Sd21 => json!({"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
                               "steps_offset": 1, "prediction_type": "v_prediction"}),
        Family::Sdxl => json!({"_class_name": "EulerDiscreteScheduler",
                               "beta_schedule": "scaled_linear", "timestep_spacing": "leading",
                               "steps_offset": 1, "prediction_type": "epsilon"}),
        Family::Turbo | Family::SdxlTurbo => {
            json!({"_class_name": "EulerAncestralDiscreteScheduler",
                                "timestep_spacing": "trailing", "prediction_type": "epsilon"})
        }
    };
    write(&dir.join("scheduler/scheduler_config.json"), &scheduler);

    // Random weights: build each model on a VarMap with the crate's own config parsing, save.
    let save = |sub: &str, file: &str, build: &dyn Fn(VarBuilder)| {
        let vm = VarMap::new();
        build(VarBuilder::from_varmap(&vm, DType::F32, &cpu));
        vm.save(dir.join(sub).join(file)).expect("test checkpoint");
    };
    let text_tower = |sub: &str, tokenizer_dir: &str, config: serde_json::Value, projection| {
        let config: TextConfig = serde_json::from_value(config).expect("test checkpoint");
        save(sub, "model.safetensors", &|vb| {
            let dir = dir.join(tokenizer_dir);
            let tokenizer = TokenizerFiles::find(&dir, None).expect("test checkpoint");
            TextEncoder::load(&dir, &tokenizer, vb, &config, projection).expect("test checkpoint");
        });
    };
    text_tower("text_encoder", "tokenizer", text, false);
    if let Some(config) = text_2 {
        text_tower("text_encoder_2", "tokenizer_2", config, true);
    }
    let unet_json = serde_json::from_value::<UNetJson>(unet).expect("test checkpoint");
    let path = dir.join("unet/config.json");
    let unet_config = unet_json.to_candle(&path).expect("test checkpoint");
    let text_time = unet_json.text_time(&path).expect("test checkpoint");
    save("unet", "diffusion_pytorch_model.safetensors", &|vb| {
        Denoiser::new(vb, unet_config.clone(), text_time).expect("test checkpoint");
    });
    let vae_config = serde_json::from_value::<VaeJson>(vae)
        .expect("test checkpoint")
        .to_candle(&dir.join("vae/config.json"))
        .expect("test checkpoint");
    save("vae", "diffusion_pytorch_model.safetensors", &|vb| {
        AutoEncoderKL::new(vb, 3, 3, vae_config.clone()).expect("test checkpoint");
    });
}
