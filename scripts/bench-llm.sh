#!/usr/bin/env bash
# `atelier bench llm` against llama-cpp-python, with the reference runtime installed in a
# virtualenv beside the model cache (built from PyPI's source package: ~10 minutes once).
# Usage: scripts/bench-llm.sh [extra `atelier bench llm` flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
atelier_models_dir

venv="${ATELIER_BENCH_VENV:-$HOME/.cache/atelier/bench-venv}"
if ! "$venv/bin/python" -c "import llama_cpp" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # The same SIMD level as the in-process build (x86-64-v3: AVX2, FMA, F16C, BMI2), no GPU.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_CUDA=OFF" "$venv/bin/python" -m pip install --quiet llama-cpp-python
fi

atelier_build
atelier="$CARGO_TARGET_DIR/debug/atelier"
"$atelier" models pull qwen2.5-coder-0.5b-instruct
"$atelier" bench llm --reference-python "$venv/bin/python" --markdown docs/benchmarks.md "$@"
