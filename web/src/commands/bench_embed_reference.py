# Reference runtime for `atelier bench embed`: sentence-transformers on PyTorch CPU, on the same
# model files, sentences, batch sizes and thread count. Reads a JSON job on stdin, prints one
# JSON result on stdout.
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer, models

job = json.load(sys.stdin)
torch.set_num_threads(job["threads"])
word = models.Transformer(job["model_dir"], max_seq_length=256)
pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu")
sentences = job["sentences"]
model.encode(sentences[:8], batch_size=8)  # warm-up
result = {"rates": {}, "first": model.encode(sentences[:2], normalize_embeddings=True).tolist()}
for batch in job["batches"]:
    times = []
    for _ in range(job["runs"]):
        start = time.perf_counter()
        model.encode(sentences, batch_size=batch, normalize_embeddings=True)
        times.append(time.perf_counter() - start)
    times.sort()
    result["rates"][str(batch)] = len(sentences) / times[len(times) // 2]
json.dump(result, sys.stdout)
