#!/usr/bin/env bash
# `atelier bench embed` against sentence-transformers (PyTorch CPU) on the same model files,
# sentences, batch sizes and threads, then `atelier bench brand-search` at 100k points.
# sentence-transformers goes into a virtualenv beside the model cache (~10 minutes and several
# GB once: PyPI's torch wheel is the CUDA build). Results are appended to docs/benchmarks.md.
# Usage: scripts/bench-embed.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
atelier_models_dir
threads="${1:-2}"

atelier_bench_venv "import sentence_transformers" sentence-transformers

atelier_build
atelier="$CARGO_TARGET_DIR/debug/atelier"
"$atelier" models pull all-minilm-l6-v2
# candle sizes its thread pool from RAYON_NUM_THREADS; the reference gets the same count.
RAYON_NUM_THREADS="$threads" "$atelier" bench embed --threads "$threads" \
  --reference-python "$bench_python" --markdown docs/benchmarks.md
"$atelier" bench brand-search --markdown docs/benchmarks.md
