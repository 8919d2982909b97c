#!/usr/bin/env python3
"""A small random-weight SDXL UNet and second text tower, with reference outputs from diffusers
and transformers themselves, for inference/tests/sd.rs.

No registry ships SDXL weights, so the test checks Atelier's SDXL parts against the reference
implementations on tiny shapes: `UNet2DConditionModel` with `addition_embed_type="text_time"`
(pooled text + six size numbers added to the time embedding) and `CLIPTextModelWithProjection`
(next-to-last hidden states, projected end-token state), both with seeded random weights and
written with `save_pretrained` in diffusers layout, so the Rust side loads them through its real
loading code. The tokenizer is a small CLIP-format `vocab.json` + `merges.txt`; transformers'
`CLIPTokenizer` gives the reference token ids.

Usage (from the repository root; any recent versions):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch diffusers transformers safetensors
    /tmp/ref/bin/python scripts/reference/sdxl.py
"""

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

OUT = Path(__file__).resolve().parents[2] / "inference/tests/data/sdxl"
WORDS = ["a", "red", "circle", "on", "cream", "summer", "sale", "banner", "navy", "gold"]
TEXTS = ["A red circle on cream", "summer SALE banner!", "navy  gold cats 12"]
WINDOW = 16

torch.manual_seed(7)

# The tokenizer: every letter, digit and `!` alone and word-final, left-to-right merges that
# spell each word, CLIP's special tokens (as inference/src/diffusion/sd/testing.rs writes it).
vocab, merges = [], []
for c in [*map(chr, range(ord("a"), ord("z") + 1)), *"0123456789", "!"]:
    vocab += [c, c + "</w>"]
for word in WORDS:
    left = word[0]
    for i, c in enumerate(word[1:], start=1):
        right = c + "</w>" if i == len(word) - 1 else c
        if f"{left} {right}" not in merges:
            merges.append(f"{left} {right}")
        left += right
        if left not in vocab:
            vocab.append(left)
vocab += ["<|startoftext|>", "<|endoftext|>"]
tok_dir = OUT / "tokenizer_2"
tok_dir.mkdir(parents=True, exist_ok=True)
(tok_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
(tok_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
(tok_dir / "tokenizer_config.json").write_text(json.dumps({"pad_token": "!"}))
tokenizer = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"), pad_token="!")
ids = tokenizer(TEXTS, padding="max_length", max_length=WINDOW, truncation=True,
                return_tensors="pt").input_ids

text_config = CLIPTextConfig(
    vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
    num_attention_heads=4, max_position_embeddings=WINDOW, hidden_act="gelu",
    projection_dim=16, bos_token_id=vocab.index("<|startoftext|>"),
    eos_token_id=vocab.index("<|endoftext|>"), pad_token_id=vocab.index("!"),
)
tower = CLIPTextModelWithProjection(text_config).eval()
tower.save_pretrained(OUT / "text_encoder_2", safe_serialization=True)
with torch.no_grad():
    out = tower(ids, output_hidden_states=True)
penultimate, pooled = out.hidden_states[-2], out.text_embeds

unet = UNet2DConditionModel(
    sample_size=8, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(64, 64), layers_per_block=1, attention_head_dim=(2, 2),
    transformer_layers_per_block=(1, 2), cross_attention_dim=32, norm_num_groups=32,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
    projection_class_embeddings_input_dim=6 * 8 + 16,
).eval()
# Default initialisation leaves some projections at zero; make every weight count. The weights
# are stored in f16 (a small file); the reference runs in f32 on exactly those values.
with torch.no_grad():
    for p in unet.parameters():
        p.add_(torch.randn_like(p) * 0.05)
        p.copy_(p.half().float())
sample = torch.randn(2, 4, 8, 8)
context = torch.randn(2, 7, 32)
text_embeds = torch.randn(2, 16)
time_ids = torch.tensor([[64.0, 64, 0, 0, 64, 64], [48.0, 32, 4, 8, 64, 64]])
with torch.no_grad():
    predicted = unet(sample, 500, context,
                     added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
unet.half().save_pretrained(OUT / "unet", safe_serialization=True)

save_file({
    "ids": ids.to(torch.int64).contiguous(),
    "penultimate": penultimate.contiguous(),
    "pooled": pooled.contiguous(),
    "sample": sample, "context": context, "text_embeds": text_embeds, "time_ids": time_ids,
    "predicted": predicted.contiguous(),
}, OUT / "io.safetensors")
(OUT / "texts.json").write_text(json.dumps(TEXTS))
print("wrote", OUT, "ids", ids.tolist())
