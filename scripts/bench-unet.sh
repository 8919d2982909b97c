#!/usr/bin/env bash
# `atelier bench unet` against diffusers (PyTorch CPU) on the same SD 1.5 configs (random
# weights), shapes and threads. diffusers and torch go into a virtualenv beside the model cache
# (~10 minutes and several GB once: PyPI's torch wheel is the CUDA build); nothing is downloaded
# from a model hub. Results are appended to docs/benchmarks.md. Needs ~8 GB of memory.
# Usage: scripts/bench-unet.sh [THREADS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
threads="${1:-2}"

atelier_bench_venv "import diffusers, torch" torch diffusers

atelier_build
# candle sizes its thread pool from RAYON_NUM_THREADS; the reference gets the same count.
RAYON_NUM_THREADS="$threads" "$CARGO_TARGET_DIR/debug/atelier" bench unet --threads "$threads" \
  --reference-python "$bench_python" --markdown docs/benchmarks.md
