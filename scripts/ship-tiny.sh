#!/usr/bin/env bash
# Ship a trained atelier-tiny: copy a run's weights into models/atelier-tiny, update the bundled
# model card's digests in inference/models.toml, and redraw the model card's grid.
# Usage: scripts/ship-tiny.sh [RUN_DIR]   (default runs/tiny; needs RUN_DIR/model/*)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
atelier_target_dir
run="${1:-runs/tiny}"
dest=models/atelier-tiny
for f in model.safetensors config.json; do
  test -f "$run/model/$f" || { echo "missing $run/model/$f" >&2; exit 1; }
done
cp "$run/model/model.safetensors" "$run/model/config.json" "$dest/"
cp "$run/model/state.json" "$dest/state.json" 2>/dev/null || cp "$run/checkpoint/state.json" "$dest/state.json" 2>/dev/null || true
for f in loss.png loss.csv; do cp "$run/$f" "$dest/" 2>/dev/null || true; done
python3 - "$dest" <<'PY'
import hashlib, os, re, sys
dest = sys.argv[1]
path = "inference/models.toml"
text = open(path).read()
start = text.index('name = "atelier-tiny"')
head, card = text[:start], text[start:]
for name in ["model.safetensors", "config.json"]:
    data = open(os.path.join(dest, name), "rb").read()
    digest, size = hashlib.sha256(data).hexdigest(), len(data)
    card = re.sub(r'(name = "%s"\nsha256 = ")[0-9a-f]{64}("\nsize = )\d+' % re.escape(name),
                  r"\g<1>%s\g<2>%d" % (digest, size), card, count=1)
    print(f"{name}: {size} bytes, sha256 {digest}")
open(path, "w").write(head + card)
PY
atelier_build
"$CARGO_TARGET_DIR/debug/atelier" generate --prompts "$dest/grid-prompts.txt" --weights "$dest" \
  --size 64x64 --seed 1 --out "$(mktemp -d)" --grid "$dest/grid.png" >/dev/null
echo "shipped $run into $dest; look at $dest/grid.png and update $dest/README.md"
