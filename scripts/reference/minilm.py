#!/usr/bin/env python3
"""Reference sentence vectors of all-MiniLM-L6-v2 from sentence-transformers, for
inference/tests/embed.rs: both of Atelier's engines (llama.cpp and candle) must give the same
vectors for the same texts.

The model is read from Atelier's model cache (the `all-minilm-l6-v2` card: config.json,
tokenizer.json, model.safetensors), so no hub download happens. sentence-transformers' own
pipeline for this model is BERT → mean pooling over the attention mask → L2 normalisation, with
texts cut at 256 tokens; the texts here are shorter than that.

Usage (from the repository root; any recent versions):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install sentence-transformers
    /tmp/ref/bin/python scripts/reference/minilm.py [MODEL_DIR]
"""

import json
import os
import sys
from pathlib import Path

import torch
from sentence_transformers import SentenceTransformer, models

OUT = Path(__file__).resolve().parents[2] / "inference/tests/data/minilm/reference.json"
TEXTS = [
    "a banner for our summer sale",
    "",
    "Use the primary colour #1D3557 for headlines; keep the logo clear of other elements.",
    "Never place the logo on a busy photograph, and never recolour it.",
    "gold confetti scattered over a dark blue backdrop",
    "Ünïcödé, emoji 🎉 and CJK 夏のセール in one caption",
]

model_dir = Path(
    sys.argv[1]
    if len(sys.argv) > 1
    else os.path.expanduser("~/.cache/atelier/models/all-minilm-l6-v2")
)
torch.manual_seed(0)
bert = models.Transformer(str(model_dir), max_seq_length=256)
pool = models.Pooling(bert.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[bert, pool, models.Normalize()], device="cpu")
vectors = model.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(
    json.dumps(
        {
            "texts": TEXTS,
            "vectors": [[round(float(x), 7) for x in v] for v in vectors],
            "sentence_transformers": __import__("sentence_transformers").__version__,
            "torch": torch.__version__,
        }
    )
    + "\n"
)
print(f"wrote {OUT}")
