// Reference outputs of ESRGAN-slim (UpscalerJS) on TensorFlow.js, the runtime the weights were
// published for, for inference/tests/vision.rs.
//
// Draws the test image (200×90, wider than one of Atelier's tiles, so the test also covers the
// seams), runs the x2 and x4 models with tf.loadLayersModel on the pure-JS CPU backend, and
// writes input.png, x2.png and x4.png (outputs clamped to 0–255 and rounded, as Atelier does)
// to inference/tests/data/esrgan/.
//
// Usage (from the repository root):
//   (cd scripts/reference/esrgan && npm install)
//   node scripts/reference/esrgan/esrgan.mjs ~/.cache/atelier/models/esrgan-slim
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { PNG } from "pngjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(here, "../../../inference/tests/data/esrgan");
const modelDir = process.argv[2];
if (!modelDir) {
  console.error("usage: node esrgan.mjs MODEL_DIR (the esrgan-slim model cache directory)");
  process.exit(2);
}

const W = 200;
const H = 90;

// A warm gradient, a navy disc, a diagonal edge and a thin light stripe: smooth areas, curves,
// straight edges and fine detail.
function draw() {
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      let c = [230 - x / 2, 180 - y / 2, 90 + x / 4];
      const dx = x - 60, dy = y - 45;
      if (dx * dx + dy * dy < 28 * 28) c = [20, 40, 110];
      if (x + 2 * y > 300 && x > 120) c = [200, 60, 30];
      if (y >= 70 && y < 72) c = [250, 245, 235];
      const i = (y * W + x) * 3;
      rgb.set(c.map((v) => Math.max(0, Math.min(255, Math.round(v)))), i);
    }
  }
  return rgb;
}

function writePng(file, rgb, w, h) {
  const png = new PNG({ width: w, height: h, colorType: 2 });
  for (let i = 0; i < w * h; i++) {
    png.data[i * 4] = rgb[i * 3];
    png.data[i * 4 + 1] = rgb[i * 3 + 1];
    png.data[i * 4 + 2] = rgb[i * 3 + 2];
    png.data[i * 4 + 3] = 255;
  }
  fs.writeFileSync(file, PNG.sync.write(png, { colorType: 2 }));
}

async function load(scale) {
  const json = JSON.parse(fs.readFileSync(path.join(modelDir, `x${scale}.json`), "utf8"));
  const bin = fs.readFileSync(path.join(modelDir, `x${scale}.bin`));
  const specs = json.weightsManifest.flatMap((g) => g.weights);
  const data = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
  return tf.loadLayersModel(
    tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: specs, weightData: data }),
  );
}

await tf.setBackend("cpu");
fs.mkdirSync(out, { recursive: true });
const input = draw();
writePng(path.join(out, "input.png"), input, W, H);
for (const scale of [2, 4]) {
  const model = await load(scale);
  const x = tf.tensor4d(Float32Array.from(input), [1, H, W, 3]);
  const y = model.predict(x).clipByValue(0, 255).round();
  const [, oh, ow] = y.shape;
  const rgb = Uint8Array.from(await y.data());
  writePng(path.join(out, `x${scale}.png`), rgb, ow, oh);
  console.log(`x${scale}: ${W}×${H} → ${ow}×${oh}`);
}
