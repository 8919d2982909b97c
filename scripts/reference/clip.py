#!/usr/bin/env python3
"""A small random-weight CLIP checkpoint and its reference outputs for inference/tests/vision.rs.

No registry ships CLIP weights, so the test checks Atelier's CLIP scorer on a checkpoint made
here: a CLIP with tiny dimensions and seeded random weights, written in Hugging Face layout
(`config.json`, `model.safetensors`, `tokenizer.json` with start/end tokens) exactly as a real
checkpoint is, so the Rust side loads it through its real loading code.

The reference embeddings come from an independent NumPy forward pass written from the
definition in transformers' `modeling_clip.py` (pre-LayerNorm encoder layers, quick-GELU MLP,
causal text attention pooled at the end token, class-token vision pooling after
`post_layernorm`, bias-free projections) and CLIP's image normalisation. The test images have a
short side equal to the model's input size, so preprocessing is a centre crop with no
resampling and both sides see the same pixels.

Usage (from the repository root):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy==2.1.3 safetensors==0.4.5 \
        tokenizers==0.20.3 pillow==11.0.0
    /tmp/ref/bin/python scripts/reference/clip.py
"""

import json
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

OUT = Path(__file__).resolve().parents[2] / "inference/tests/data/clip"

WORDS = (
    "a an the of with on in and for our , . navy gold red blue green orange purple white black "
    "background confetti sunset over mountains circle square banner summer sale sea sun city "
    "skyline dots stripes waves poster"
).split()
START, END, UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"

TEXT = dict(hidden=32, heads=4, layers=2, inter=64, positions=12)
VISION = dict(hidden=48, heads=4, layers=2, inter=96, image=32, patch=8)
PROJECTION = 16
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def tokenizer():
    vocab = {UNK: 0, START: 1}
    for word in WORDS:
        vocab[word] = len(vocab)
    vocab[END] = len(vocab)  # the end token has the largest id, as in OpenAI's CLIP vocabulary
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}",
        special_tokens=[(START, vocab[START]), (END, vocab[END])],
    )
    return tok, vocab


def random_weights(rng, vocab_size):
    w = {}

    def normal(name, *shape, std=0.2):
        w[name] = (rng.standard_normal(shape) * std).astype(np.float32)

    def norm(name, dim):
        w[f"{name}.weight"] = (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)
        w[f"{name}.bias"] = (0.1 * rng.standard_normal(dim)).astype(np.float32)

    def linear(name, inp, out, bias=True):
        normal(f"{name}.weight", out, inp, std=1.0 / np.sqrt(inp))
        if bias:
            normal(f"{name}.bias", out, std=0.05)

    def encoder(prefix, cfg):
        d = cfg["hidden"]
        for i in range(cfg["layers"]):
            layer = f"{prefix}.encoder.layers.{i}"
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear(f"{layer}.self_attn.{proj}", d, d)
            norm(f"{layer}.layer_norm1", d)
            norm(f"{layer}.layer_norm2", d)
            linear(f"{layer}.mlp.fc1", d, cfg["inter"])
            linear(f"{layer}.mlp.fc2", cfg["inter"], d)

    t, v = TEXT, VISION
    normal("text_model.embeddings.token_embedding.weight", vocab_size, t["hidden"], std=0.5)
    normal("text_model.embeddings.position_embedding.weight", t["positions"], t["hidden"], std=0.1)
    encoder("text_model", t)
    norm("text_model.final_layer_norm", t["hidden"])
    patches = (v["image"] // v["patch"]) ** 2
    normal("vision_model.embeddings.class_embedding", v["hidden"], std=0.5)
    normal("vision_model.embeddings.patch_embedding.weight", v["hidden"], 3, v["patch"], v["patch"],
           std=1.0 / np.sqrt(3 * v["patch"] ** 2))
    normal("vision_model.embeddings.position_embedding.weight", patches + 1, v["hidden"], std=0.1)
    norm("vision_model.pre_layrnorm", v["hidden"])
    encoder("vision_model", v)
    norm("vision_model.post_layernorm", v["hidden"])
    linear("text_projection", t["hidden"], PROJECTION, bias=False)
    linear("visual_projection", v["hidden"], PROJECTION, bias=False)
    w["logit_scale"] = np.array(2.6592, dtype=np.float32)
    return w


def layer_norm(x, w, name):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[f"{name}.weight"] + w[f"{name}.bias"]


def linear(x, w, name):
    y = x @ w[f"{name}.weight"].T
    bias = w.get(f"{name}.bias")
    return y if bias is None else y + bias


def quick_gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def encode(x, w, prefix, cfg, causal):
    n, d = x.shape
    heads = cfg["heads"]
    hd = d // heads
    mask = np.triu(np.full((n, n), -np.inf), k=1) if causal else np.zeros((n, n))
    for i in range(cfg["layers"]):
        layer = f"{prefix}.encoder.layers.{i}"
        h = layer_norm(x, w, f"{layer}.layer_norm1")
        q = linear(h, w, f"{layer}.self_attn.q_proj") * hd**-0.5
        k = linear(h, w, f"{layer}.self_attn.k_proj")
        v = linear(h, w, f"{layer}.self_attn.v_proj")
        q, k, v = (a.reshape(n, heads, hd).transpose(1, 0, 2) for a in (q, k, v))
        scores = q @ k.transpose(0, 2, 1) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attn = (scores @ v).transpose(1, 0, 2).reshape(n, d)
        x = x + linear(attn, w, f"{layer}.self_attn.out_proj")
        h = layer_norm(x, w, f"{layer}.layer_norm2")
        x = x + linear(quick_gelu(linear(h, w, f"{layer}.mlp.fc1")), w, f"{layer}.mlp.fc2")
    return x


def unit(v):
    return v / np.linalg.norm(v)


def text_embedding(ids, w):
    x = w["text_model.embeddings.token_embedding.weight"][ids]
    x = x + w["text_model.embeddings.position_embedding.weight"][: len(ids)]
    x = encode(x.astype(np.float64), w, "text_model", TEXT, causal=True)
    x = layer_norm(x, w, "text_model.final_layer_norm")
    return unit(linear(x[len(ids) - 1], w, "text_projection"))


def image_embedding(img, w):
    side, p = VISION["image"], VISION["patch"]
    arr = np.asarray(img, dtype=np.float64) / 255.0
    h, wd = arr.shape[:2]
    top, left = (h - side) // 2, (wd - side) // 2
    arr = (arr[top : top + side, left : left + side] - MEAN) / STD
    g = side // p
    patches = arr.reshape(g, p, g, p, 3).transpose(0, 2, 4, 1, 3).reshape(g * g, 3 * p * p)
    kernel = w["vision_model.embeddings.patch_embedding.weight"].reshape(VISION["hidden"], -1)
    x = np.concatenate([w["vision_model.embeddings.class_embedding"][None], patches @ kernel.T])
    x = x + w["vision_model.embeddings.position_embedding.weight"]
    x = layer_norm(x, w, "vision_model.pre_layrnorm")
    x = encode(x, w, "vision_model", VISION, causal=False)
    pooled = layer_norm(x[0], w, "vision_model.post_layernorm")
    return unit(linear(pooled, w, "visual_projection"))


def images():
    """Deterministic test images whose short side is the model's input size."""
    side = VISION["image"]
    yy, xx = np.mgrid[0:side, 0 : side * 3 // 2]
    gradient = np.stack([xx * 5 % 256, yy * 8 % 256, (xx + yy) * 3 % 256], -1)
    navy = np.zeros((side, side, 3)) + [20, 30, 90]
    disc = (xx[:, :side] - 16) ** 2 + (yy[:, :side] - 14) ** 2 < 81
    navy[disc] = [230, 180, 40]
    stripes = np.where((xx[:, :side] // 4) % 2 == 0, 230, 30)[..., None] * [1, 0.3, 0.2]
    return {
        "gradient_wide.png": gradient.astype(np.uint8),  # 48×32: centre crop only
        "navy_gold_disc.png": navy.astype(np.uint8),
        "red_stripes.png": stripes.astype(np.uint8),
    }


TEXTS = [
    "a navy background with a gold circle",
    "red stripes",
    "Sunset over mountains, orange and purple.",
    "a summer sale banner with gold confetti on a navy background for our city poster",
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    tok, vocab = tokenizer()
    tok.save(str(OUT / "tokenizer.json"))
    rng = np.random.default_rng(20261129)
    w = random_weights(rng, len(vocab))
    save_file(w, str(OUT / "model.safetensors"))
    config = {
        "_name_or_path": "atelier-test-clip",
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": PROJECTION,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "vocab_size": len(vocab),
            "hidden_size": TEXT["hidden"],
            "intermediate_size": TEXT["inter"],
            "num_hidden_layers": TEXT["layers"],
            "num_attention_heads": TEXT["heads"],
            "max_position_embeddings": TEXT["positions"],
            "hidden_act": "quick_gelu",
            "bos_token_id": vocab[START],
            "eos_token_id": vocab[END],
        },
        "vision_config": {
            "hidden_size": VISION["hidden"],
            "intermediate_size": VISION["inter"],
            "num_hidden_layers": VISION["layers"],
            "num_attention_heads": VISION["heads"],
            "image_size": VISION["image"],
            "patch_size": VISION["patch"],
            "hidden_act": "quick_gelu",
        },
    }
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    texts = []
    for text in TEXTS:
        ids = tok.encode(text).ids
        truncated = len(ids) > TEXT["positions"]
        if truncated:  # keep the end token, as the scorer does
            ids = ids[: TEXT["positions"] - 1] + ids[-1:]
        texts.append(dict(text=text, ids=ids, truncated=truncated,
                          embedding=text_embedding(np.array(ids), w64).tolist()))
    imgs = []
    for name, pixels in images().items():
        Image.fromarray(pixels).save(OUT / name)
        imgs.append(dict(file=name, embedding=image_embedding(pixels, w64).tolist()))
    cosine = [[float(np.dot(i["embedding"], t["embedding"])) for t in texts] for i in imgs]
    reference = dict(
        note="written by scripts/reference/clip.py (NumPy forward pass, float64)",
        texts=texts, images=imgs, cosine=cosine,
    )
    (OUT / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(json.dumps(cosine))


if __name__ == "__main__":
    main()
