// Runs a model folder's ONNX model-zoo test vectors in onnxruntime-node (a second runtime).
// Usage: node check_vectors.mjs MODEL_DIR   (onnxruntime-node resolvable from NODE_PATH or cwd)
// Prints one JSON object {sets: [{name, passed, max_abs_error, failure}]}; exit 0 when all pass.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.join(process.cwd(), "index.js"));
const ort = require("onnxruntime-node");

// Minimal reader of an ONNX TensorProto: dims (1), data_type (2), name (8), raw_data (9).
function readVarint(buf, pos) {
  let result = 0n, shift = 0n, byte;
  do {
    byte = buf[pos++];
    result |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
  } while (byte & 0x80);
  return [result, pos];
}

function parseTensor(file) {
  const buf = fs.readFileSync(file);
  const tensor = { dims: [], dataType: 0, name: "", raw: null };
  let pos = 0;
  while (pos < buf.length) {
    let key;
    [key, pos] = readVarint(buf, pos);
    const field = Number(key >> 3n), wire = Number(key & 7n);
    if (wire === 0) {
      let value;
      [value, pos] = readVarint(buf, pos);
      if (field === 1) tensor.dims.push(Number(value));
      else if (field === 2) tensor.dataType = Number(value);
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(buf, pos);
      const bytes = buf.subarray(pos, pos + Number(length));
      pos += Number(length);
      if (field === 1) { // packed dims
        let p = 0;
        while (p < bytes.length) { let v; [v, p] = readVarint(bytes, p); tensor.dims.push(Number(v)); }
      } else if (field === 8) tensor.name = bytes.toString("utf8");
      else if (field === 9) tensor.raw = bytes;
    } else if (wire === 5) pos += 4;
    else if (wire === 1) pos += 8;
    else throw new Error(`${file}: unsupported protobuf wire type ${wire}`);
  }
  if (tensor.raw === null) throw new Error(`${file}: tensor without raw_data`);
  const copy = Buffer.from(tensor.raw); // aligned copy
  const ab = copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.length);
  if (tensor.dataType === 1) return { ...tensor, type: "float32", data: new Float32Array(ab) };
  if (tensor.dataType === 2) return { ...tensor, type: "uint8", data: new Uint8Array(ab) };
  if (tensor.dataType === 9) return { ...tensor, type: "bool", data: new Uint8Array(ab) }; // pipeline.onnx's valid flags
  throw new Error(`${file}: unsupported data_type ${tensor.dataType}`);
}

const numbered = (dir, prefix) => fs.readdirSync(dir)
  .filter((f) => new RegExp(`^${prefix}_\\d+\\.pb$`).test(f))
  .sort((a, b) => Number(a.split("_")[1].split(".")[0]) - Number(b.split("_")[1].split(".")[0]))
  .map((f) => parseTensor(path.join(dir, f)));

const modelDir = process.argv[2];
const report = [];
// model.onnx's sets, then pipeline.onnx's (raw pixels in) when the folder has them
const runs = [[modelDir, "model.onnx", ""], [path.join(modelDir, "pipeline_test_data"), "pipeline.onnx", "pipeline_test_data/"]];
for (const [setsDir, modelFile, prefix] of runs) {
  if (!fs.existsSync(path.join(setsDir, "test_vectors.json"))) continue;
  const { atol, rtol } = JSON.parse(fs.readFileSync(path.join(setsDir, "test_vectors.json"), "utf8")).tolerance;
  const session = await ort.InferenceSession.create(path.join(modelDir, modelFile));
  const sets = fs.readdirSync(setsDir).filter((d) => /^test_data_set_\d+$/.test(d)).sort();
  for (const set of sets) {
    const dir = path.join(setsDir, set);
    const feeds = {};
    for (const t of numbered(dir, "input")) feeds[t.name] = new ort.Tensor(t.type, t.data, t.dims);
    const results = await session.run(feeds);
    const entry = { name: prefix + set, passed: true, max_abs_error: {}, failure: null };
    for (const want of numbered(dir, "output")) {
      const got = Array.from(results[want.name].data, Number);
      let worst = 0;
      for (let i = 0; i < want.data.length; i++) {
        const diff = Math.abs(got[i] - want.data[i]);
        worst = Math.max(worst, diff);
        if (!(diff <= atol + rtol * Math.abs(want.data[i])) && entry.passed) {
          entry.passed = false;
          entry.failure = `${want.name}[${i}]: ${got[i]}, expected ${want.data[i]}`;
        }
      }
      if (got.length !== want.data.length) { entry.passed = false; entry.failure = `${want.name}: ${got.length} values, expected ${want.data.length}`; }
      entry.max_abs_error[want.name] = worst;
    }
    report.push(entry);
  }
}
console.log(JSON.stringify({ runtime: `onnxruntime-node ${ort.env.versions?.common ?? ""}`, sets: report }));
process.exit(report.every((r) => r.passed) ? 0 : 1);
