"""Benchmark of the published models as users run them: source framework vs ONNX Runtime variants.

One run, one table per model, side by side, per item (ms) at batch 1 and 32 (models with a
fixed batch of 1 run 32 calls): the source framework (TensorFlow or PyTorch), ONNX Runtime fp32
(the published model.onnx), and three faster-variant candidates made in memory from it:
ORT's provider-independent graph optimisations saved offline ("basic"), float16 weights and
activations (`onnxruntime.transformers.float16`, fp32 inputs/outputs kept) and int8 dynamic
quantisation (`onnxruntime.quantization.quantize_dynamic`, QInt8 weights). Each variant's
accuracy against fp32 on the same inputs is printed beside its speed (cosine, max |diff|,
decision agreement for the Siamese logit), so a fast but wrong variant is visible.

Then end to end, as the CLI runs them: `verify` (a pair: load, sigver preprocessing, Siamese)
and `embed` (one image: load, sigver preprocessing, signet_pth), ONNX Runtime vs PyTorch with
the same preprocessing, and the preprocessing alone.

Needs a built project (`dvc repro`, or the stages run in a scratch folder): data/raw/<model>/
and models/<model>/. Not a test: it prints figures and asserts nothing.

    python benchmarks/bench_package.py [--project DIR] [--repeat 5] [--threads 2] [--images DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.core.params import model_spec  # noqa: E402
from stages.families import load_family  # noqa: E402

MODELS = ("cleaning", "siamese", "signet_pth")


def median_ms(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up (first-call allocations, lazy initialisation)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def session(model: onnx.ModelProto | str, threads: int, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    data = model if isinstance(model, str) else model.SerializeToString()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def variants(fp32_path: Path, workdir: Path) -> dict[str, Path | str]:
    """The candidates, each a pure function of the fp32 file (no calibration data, no CPU probing);
    a candidate the tool cannot make is reported by its error message instead of a path."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.float16 import convert_float_to_float16

    out = {"fp32": fp32_path}
    basic = workdir / "basic.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(basic)
    ort.InferenceSession(str(fp32_path), options, providers=["CPUExecutionProvider"])
    out["basic"] = basic
    fp16 = workdir / "fp16.onnx"
    onnx.save(convert_float_to_float16(onnx.load(fp32_path), keep_io_types=True), fp16)
    out["fp16"] = fp16
    int8 = workdir / "int8_dynamic.onnx"
    try:
        quantize_dynamic(str(fp32_path), str(int8), weight_type=QuantType.QInt8)
        out["int8_dynamic"] = int8
    except Exception as exc:  # the quantizer refuses some graphs (e.g. weights behind Identity nodes)
        out["int8_dynamic"] = f"n/a: quantize_dynamic failed ({str(exc)[:80]})"
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bench_model(project: Path, name: str, repeat: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    spec = model_spec(name, project / "params.yaml")
    family = load_family(spec.family)
    os.chdir(project)
    reference = family.reference(Path("data/raw") / name, spec)
    samples = family.validation_inputs(spec, 2, [])
    feeds = samples[0][1]
    fixed_batch = any(isinstance(d, int) for d in spec.onnx.inputs[0].shape[:1]) or spec.network.architecture == "siamese"
    batch32 = feeds if fixed_batch else {k: np.concatenate([v] * 32) for k, v in feeds.items()}
    calls32 = 32 if fixed_batch else 1
    print(f"\n== {name} ({family.REFERENCE} source); ms per item, median of {repeat}, {threads} threads ==")
    print(f"{'runtime':<16}{'batch 1':>10}{'batch 32':>10}{'source/it b1':>14}{'source/it b32':>15}   accuracy vs fp32")
    source_b1 = median_ms(lambda: reference(feeds), repeat)
    source_b32 = median_ms(lambda: [reference(batch32) for _ in range(calls32)], repeat) / 32
    print(f"{family.REFERENCE:<16}{source_b1:>10.2f}{source_b32:>10.2f}{1.0:>14.2f}{1.0:>15.2f}")
    with tempfile.TemporaryDirectory() as workdir:
        files = variants(Path("models") / name / "model.onnx", Path(workdir))
        fp32_out = None
        for label, path in files.items():
            if isinstance(path, str):
                print(f"ORT {label:<12}{path}")
                continue
            sess = session(str(path), threads)
            names = [o.name for o in sess.get_outputs()]
            out = dict(zip(names, sess.run(names, feeds)))
            b1 = median_ms(lambda: sess.run(names, feeds), repeat)
            b32 = median_ms(lambda: [sess.run(names, batch32) for _ in range(calls32)], repeat) / 32
            if fp32_out is None:
                fp32_out = out
                accuracy = "(reference)"
            else:
                parts = [f"{n}: cos {cosine(out[n], fp32_out[n]):.5f}, max|d| {np.abs(out[n] - fp32_out[n]).max():.2g}" for n in names]
                if spec.validation.decision_output:
                    d = spec.validation.decision_output
                    parts.append(f"decision {'agrees' if np.sign(out[d]).item() == np.sign(fp32_out[d]).item() else 'DIFFERS'}")
                accuracy = "; ".join(parts)
            print(f"ORT {label:<12}{b1:>10.2f}{b32:>10.2f}{source_b1 / b1:>14.2f}{source_b32 / b32:>15.2f}   {accuracy}")


def bench_end_to_end(project: Path, images: list[Path], repeat: int, threads: int) -> None:
    import torch

    from signature_onnx import ORTModelForSignatureFeatures, ORTModelForSignatureVerification
    from stages.families.torch_sigver import siamese as torch_siamese
    from stages.families.torch_sigver import signet as torch_signet

    torch.set_num_threads(threads)
    os.chdir(project)
    verifier = ORTModelForSignatureVerification.from_pretrained("models/siamese", threads=threads)
    embedder = ORTModelForSignatureFeatures.from_pretrained("models/signet_pth", threads=threads)
    siamese = torch_siamese.load_model(Path("data/raw/siamese"), model_spec("siamese"))
    signet = torch_signet.load_model(Path("data/raw/signet_pth"), model_spec("signet_pth"))
    a, b = images[0], images[1]

    def torch_verify() -> None:
        x1, x2 = (torch.from_numpy(verifier.prepare(p)) for p in (a, b))
        with torch.no_grad():
            siamese(x1, x2)

    def torch_embed() -> None:
        with torch.no_grad():
            signet(torch.from_numpy(embedder.prepare(a)))

    print(f"\n== end to end (load + preprocessing + model), {a.name} / {b.name}; ms, median of {repeat} ==")
    rows = {
        "preprocess a pair (sigver)": median_ms(lambda: (verifier.prepare(a), verifier.prepare(b)), repeat),
        "verify: ORT": median_ms(lambda: verifier.verify(a, b), repeat),
        "verify: PyTorch": median_ms(torch_verify, repeat),
        "embed 1: ORT": median_ms(lambda: embedder.embed([a]), repeat),
        "embed 1: PyTorch": median_ms(torch_embed, repeat),
    }
    for label, value in rows.items():
        print(f"{label:<30}{value:>10.2f}")
    print(f"verify PyTorch/ORT {rows['verify: PyTorch'] / rows['verify: ORT']:.2f}x; embed PyTorch/ORT {rows['embed 1: PyTorch'] / rows['embed 1: ORT']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."), help="a built project (data/raw, models); default: here")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime")
    parser.add_argument("--images", type=Path, help="a folder of signature scans for the end-to-end rows (default: drawn ones)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help="models to benchmark")
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore")  # the synthetic-weights warning; timings do not depend on values
    project = args.project.resolve()
    for name in args.models:
        bench_model(project, name, args.repeat, args.threads)
    if args.images:
        images = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")[:2]
    else:
        from PIL import Image

        from stages.core.drawings import signature_rgb

        folder = Path(tempfile.mkdtemp())
        images = []
        for k in range(2):
            Image.fromarray(signature_rgb(k, 700, 1100, clutter=False)).save(folder / f"drawn_{k}.png")
            images.append(folder / f"drawn_{k}.png")
    bench_end_to_end(project, images, args.repeat, args.threads)


if __name__ == "__main__":
    main()
