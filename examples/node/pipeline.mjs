// Runs a published model folder's pipeline.onnx on PNG files with onnxruntime-node: the
// preprocessing and the network in one graph, so no Python (and no preprocessing port) is needed.
//
// Usage: node pipeline.mjs MODEL_DIR IMAGE.png [IMAGE_B.png]
//   (one PNG per pipeline input: two for the Siamese verifier; onnxruntime-node and pngjs
//    resolvable from this folder (npm install) or from NODE_PATH / the working directory)
// Prints one JSON object {model, outputs: {name: {dims, data}}, valid: {input: bool}};
// exits 1 with an "error:" line when an image is refused (valid false) or cannot be read.
//
// Decoding: pngjs gives 8-bit RGBA (16-bit PNGs scaled to 8 bits); transparent pixels are
// blended onto white paper as the Python package's load_rgb does (rounded half to even).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.cwd(), "index.js"));
const load = (name) => {
  try { return require(name); } catch { return createRequire(import.meta.url)(name); }
};
const ort = load("onnxruntime-node");
const { PNG } = load("pngjs");

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(1);
}

const roundHalfEven = (x) => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

// uint8 RGB [height, width, 3] of a PNG file, alpha blended onto white.
function pixels(file) {
  let png;
  try {
    png = PNG.sync.read(fs.readFileSync(file));
  } catch (err) {
    fail(`${JSON.stringify(file).slice(0, 200)}: cannot read it as a PNG (${String(err.message).slice(0, 120)}); expected a PNG image`);
  }
  const { width, height, data } = png;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
    const alpha = data[i + 3] / 255;
    for (let c = 0; c < 3; c++) rgb[j + c] = alpha === 1 ? data[i + c] : roundHalfEven(data[i + c] * alpha + 255 * (1 - alpha));
  }
  return new ort.Tensor("uint8", rgb, [height, width, 3]);
}

const [modelDir, ...images] = process.argv.slice(2);
if (!modelDir || images.length === 0) fail("usage: node pipeline.mjs MODEL_DIR IMAGE.png [IMAGE_B.png]");
const session = await ort.InferenceSession.create(path.join(modelDir, "pipeline.onnx"));
if (images.length !== session.inputNames.length) {
  fail(`${modelDir}: pipeline.onnx takes ${session.inputNames.length} image(s) (${session.inputNames.join(", ")}), got ${images.length}`);
}
const feeds = Object.fromEntries(session.inputNames.map((name, k) => [name, pixels(images[k])]));
const results = await session.run(feeds);
const report = { model: modelDir, outputs: {}, valid: {} };
for (const name of session.outputNames) {
  if (name.endsWith("_valid")) report.valid[name.slice(0, -"_valid".length)] = Boolean(results[name].data[0]);
  else report.outputs[name] = { dims: results[name].dims, data: Array.from(results[name].data) };
}
const refused = Object.entries(report.valid).filter(([, ok]) => !ok).map(([input]) => input);
if (refused.length) fail(`the preprocessing refuses the image for ${refused.join(", ")} (a uniform page, no ink, or too small); expected a signature on paper`);
console.log(JSON.stringify(report));
