#!/usr/bin/env bash
# Set Atelier up on a fresh machine and run the main job on the embedded default:
# system packages, the build, the default models, then a brief answered by the local LLM.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_system_packages
atelier_target_dir
atelier_models_dir

atelier_build
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
"$atelier" brief "A square Instagram post and a story for our autumn blend with the headline 'Autumn blend': a ceramic cup of coffee on a wooden table in morning light." \
  --brand solstice --out out/brief

if [ -f models/atelier-tiny/model.safetensors ]; then
  echo
  echo "== and an image from Atelier's own offline model (an early checkpoint: see models/atelier-tiny/README.md) =="
  mkdir -p out
  "$atelier" generate "a navy background with gold confetti" --n 4 --out out
fi

echo
echo "== the server: chat UI, WebSocket protocol and OpenAI-compatible API (started, checked, stopped) =="
log="$(mktemp)"
"$atelier" serve --addr 127.0.0.1:0 >"$log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  grep -q "^listening on " "$log" && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 1
done
url="$(sed -n 's/^listening on //p' "$log" | head -1)"
[ -n "$url" ] || { cat "$log"; echo "the server did not start" >&2; exit 1; }
curl -fsS "$url/readyz"
echo
curl -fsS "$url/v1/models"
echo
kill -TERM "$server"
wait "$server" || true
echo "run it yourself: $atelier serve   (then open http://127.0.0.1:8080/)"
