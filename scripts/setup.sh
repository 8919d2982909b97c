#!/usr/bin/env bash
# Set Atelier up on a fresh machine and run the main job on the embedded default:
# system packages, the build, the default models, then a brief answered by the local LLM.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
atelier_models_dir

cargo build --locked -p atelier-web
atelier="$CARGO_TARGET_DIR/debug/atelier"

"$atelier" models pull --defaults
"$atelier" models list

echo
echo "== main job: a creative brief, answered by the in-process LLM as structured JSON =="
"$atelier" chat "Plan a banner for our summer sale: a headline, a subline, a palette of three hex colours and the mood." \
  --schema prompts/examples/banner-plan.schema.json --temperature 0.2 --stats

echo
echo "== the example brands, stored in the embedded Qdrant engine, and one retrieval =="
"$atelier" brands ingest examples/brands/solstice examples/brands/voltline
"$atelier" brands search solstice "colours for a summer sale banner" --top-k 2

echo
echo "== the agent: a brief → brand retrieval → plan → images → critique → refine → final message =="
"$atelier" brief "A square Instagram post for our autumn blend: a ceramic cup of coffee on a wooden table in morning light." \
  --brand solstice --out out/brief

if [ -f models/atelier-tiny/model.safetensors ]; then
  echo
  echo "== and an image from Atelier's own offline model (an early checkpoint: see models/atelier-tiny/README.md) =="
  mkdir -p out
  "$atelier" generate "a navy background with gold confetti" --n 4 --out out
fi
