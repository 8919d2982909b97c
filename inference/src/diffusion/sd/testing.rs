//! Small random-weight Stable Diffusion checkpoints in diffusers layout, for tests (here and
//! in the CLI's): each family's configs, a word-level CLIP-style tokenizer, and weights of the
//! right names and shapes drawn at random, so loading and sampling run the real code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::stable_diffusion::unet_2d::UNet2DConditionModel;
use candle_transformers::models::stable_diffusion::vae::AutoEncoderKL;
use serde_json::json;

use super::{TextConfig, TextEncoder, UNetJson, VaeJson};

/// A checkpoint family.
#[derive(Clone, Copy, Debug)]
pub enum Family {
    Sd15,
    Sd21,
    Turbo,
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
    let words = "<unk> <|startoftext|> ! a an the of on in with red blue orange cream navy gold \
                 circle ground scooter sun over sea banner summer sale <|endoftext|>";
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

/// Write a small random-weight checkpoint of `family` into `dir`.
pub fn random_checkpoint(dir: &Path, family: Family) {
    let cpu = Device::Cpu;
    tokenizer(dir);
    let sd2 = !matches!(family, Family::Sd15);
    if sd2 {
        write(
            &dir.join("tokenizer/tokenizer_config.json"),
            &json!({"pad_token": "!"}),
        );
    }
    let text = json!({
        "vocab_size": 28, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 16,
        "hidden_act": if sd2 { "gelu" } else { "quick_gelu" },
    });
    write(&dir.join("text_encoder/config.json"), &text);
    let unet = json!({
        "_class_name": "UNet2DConditionModel",
        "block_out_channels": [32, 64],
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": if sd2 { json!([2, 4]) } else { json!(4) },
        "cross_attention_dim": 32,
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "use_linear_projection": sd2,
        "sample_size": 16,
    });
    write(&dir.join("unet/config.json"), &unet);
    let vae = json!({
        "block_out_channels": [32, 32], "layers_per_block": 1, "latent_channels": 4,
        "norm_num_groups": 8, "scaling_factor": 0.18215,
    });
    write(&dir.join("vae/config.json"), &vae);
    let scheduler = match family {
        Family::Sd15 => json!({"_class_name": "PNDMScheduler", "beta_schedule": "scaled_linear",
                               "steps_offset": 1, "prediction_type": "epsilon"}),
        Family::Sd21 => json!({"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear",
                               "steps_offset": 1, "prediction_type": "v_prediction"}),
        Family::Turbo => json!({"_class_name": "EulerDiscreteScheduler",
                                "timestep_spacing": "trailing", "prediction_type": "epsilon"}),
    };
    write(&dir.join("scheduler/scheduler_config.json"), &scheduler);

    // Random weights: build each model on a VarMap with the crate's own config parsing, save.
    let save = |sub: &str, file: &str, build: &dyn Fn(VarBuilder)| {
        let vm = VarMap::new();
        build(VarBuilder::from_varmap(&vm, DType::F32, &cpu));
        vm.save(dir.join(sub).join(file)).expect("test checkpoint");
    };
    let text_config: TextConfig = serde_json::from_value(text).expect("test checkpoint");
    save("text_encoder", "model.safetensors", &|vb| {
        TextEncoder::load(dir, &dir.join("tokenizer/tokenizer.json"), vb, &text_config)
            .expect("test checkpoint");
    });
    let unet_config = serde_json::from_value::<UNetJson>(unet)
        .expect("test checkpoint")
        .to_candle(&dir.join("unet/config.json"))
        .expect("test checkpoint");
    save("unet", "diffusion_pytorch_model.safetensors", &|vb| {
        UNet2DConditionModel::new(vb, 4, 4, false, unet_config.clone()).expect("test checkpoint");
    });
    let vae_config = serde_json::from_value::<VaeJson>(vae)
        .expect("test checkpoint")
        .to_candle(&dir.join("vae/config.json"))
        .expect("test checkpoint");
    save("vae", "diffusion_pytorch_model.safetensors", &|vb| {
        AutoEncoderKL::new(vb, 3, 3, vae_config.clone()).expect("test checkpoint");
    });
}
