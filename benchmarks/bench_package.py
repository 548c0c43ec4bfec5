"""Benchmark of the published models as users run them: source framework vs ONNX Runtime and its variants.

One run, one table per model, side by side, ms per item at batch 1 and batch 32 (models with a
fixed batch of 1, cleaning and siamese, run 32 calls): the source framework (TensorFlow for
cleaning, PyTorch for siamese and the sigver .pth SigNets; for the five Lasagne pickles no
framework is installable (Theano), so their float64 NumPy oracle stands in, marked as such),
ONNX Runtime fp32 (models/<name>/model.onnx) and every published variant
(models/<name>/variants/<variant>/model.onnx, stage `derive`), each with its accuracy against
fp32 on the same input (cosine, max |diff|, decision agreement) and its speed ratio against the
source framework. Runtimes are timed interleaved (round-robin, one call each per round, median
over the rounds) so that load from other processes hits all of them alike; the load average is
printed with every table. Variants the stage refused (outside their tolerances) are listed from
reports/<name>/variants.json with the deltas it measured (the stage times nothing: this is where
the variants' speed is measured).

Then end to end, as the CLI runs them: `verify` (a pair: sigver preprocessing, Siamese) and
`embed` (one image: sigver preprocessing, signet_pth), the package in ONNX Runtime against what a
user of the upstream code runs (sigver's own scikit-image preprocessing, as transcribed in
tests/test_package_preprocess.py, which the package equals pixel for pixel (checked here), and
the PyTorch module), cold (a new process per run, its parts timed: interpreter start, imports,
load, preprocess, run) and warm (the API, model loaded).

Needs a built project (`dvc repro`): data/raw/<model>/, models/<model>/ with variants/. Not a
test: it prints figures and asserts nothing.

    python benchmarks/bench_package.py [--project DIR] [--rounds 7] [--threads 2] [--models ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_unfused_bn import interleaved_medians as interleaved_ms  # noqa: E402  (round-robin medians)

from stages.core.params import load_params  # noqa: E402
from stages.families import load_family  # noqa: E402

NO_FRAMEWORK = "NumPy float64 oracle (stand-in: Theano/Lasagne not installable)"


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
    return float(np.min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def timing_input(spec, family) -> dict[str, np.ndarray]:
    """One validation input of the model (for SigNet-SPP the one nearest 150x220)."""
    samples = family.validation_inputs(spec, 3, [])
    if spec.preprocessing.spp:
        return min(
            (feeds for _s, feeds in samples if feeds["input"].shape[0] == 1),
            key=lambda feeds: abs(feeds["input"].shape[2] * feeds["input"].shape[3] - 150 * 220),
        )
    return samples[0][1]


def bench_model(project: Path, name: str, spec, rounds: int, threads: int) -> dict:
    family = load_family(spec.family)
    source = NO_FRAMEWORK if spec.family == "lasagne_signet" else family.REFERENCE
    reference = family.reference(Path("data/raw") / name, spec)
    feeds = timing_input(spec, family)
    fixed = spec.family == "keras_cleaning" or spec.network.architecture == "siamese"
    feeds32 = feeds if fixed else {k: np.concatenate([v] * 32) for k, v in feeds.items()}
    calls32 = 32 if fixed else 1
    folder = Path("models") / name
    files = {"ORT fp32": folder / "model.onnx"}
    files.update(
        {
            f"ORT {p.name}": p / "model.onnx"
            for p in sorted((folder / "variants").glob("*"))
            if (p / "model.onnx").is_file()
        }
    )
    sessions = {label: session(path, threads) for label, path in files.items()}
    names = [o.name for o in sessions["ORT fp32"].get_outputs()]
    outputs = {label: dict(zip(names, s.run(names, feeds32))) for label, s in sessions.items()}

    def call(run: Callable[[dict], object], batch: dict, calls: int) -> Callable[[], object]:
        return lambda: [run(batch) for _ in range(calls)]

    runners = {
        source: reference,
        **{label: (lambda s: lambda batch: s.run(names, batch))(s) for label, s in sessions.items()},
    }
    before = load()
    b1 = interleaved_ms({label: call(run, feeds, 1) for label, run in runners.items()}, rounds)
    b32 = interleaved_ms({label: call(run, feeds32, calls32) for label, run in runners.items()}, max(3, rounds // 2))
    b32 = {label: value / 32 for label, value in b32.items()}
    shape = "x".join(map(str, next(iter(feeds.values())).shape))
    print(
        f"\n== {name}: ms per item (input {shape}; batch 32 = {'32 calls' if fixed else 'one call of 32'}), "
        f"median of {rounds} interleaved rounds, {threads} threads; {before} -> {load()} =="
    )
    print(
        f"{'runtime':<22}{'batch 1':>9}{'batch 32':>10}{'x src b1':>10}{'x src b32':>10}{'x fp32 b1':>10}   accuracy vs ORT fp32"
    )
    rows = {}
    for label in runners:
        accuracy = "(source)" if label == source else "(reference)" if label == "ORT fp32" else ""
        if label in outputs and label != "ORT fp32":
            parts = []
            for n in names:
                ref, got = outputs["ORT fp32"][n], outputs[label][n]
                if n == spec.validation.decision_output:
                    parts.append(f"{n}: decisions agree {np.mean(np.sign(ref) == np.sign(got)):.3f}")
                else:
                    parts.append(f"{n}: cos {cosine(ref, got):.5f}, max|d| {np.abs(ref - got).max():.2g}")
            accuracy = "; ".join(parts)
        rows[label] = {"b1": b1[label], "b32": b32[label], "accuracy": accuracy}
        print(
            f"{label[:21]:<22}{b1[label]:>9.2f}{b32[label]:>10.2f}{b1[source] / b1[label]:>10.2f}{b32[source] / b32[label]:>10.2f}"
            f"{b1['ORT fp32'] / b1[label]:>10.2f}   {accuracy}"
        )
    record = Path("reports") / folder.name / "variants.json"
    if record.is_file():
        for variant, entry in json.loads(record.read_text())["variants"].items():
            if not entry.get("published"):
                print(
                    f"  refused by the variants step: {variant}: {entry.get('failure')} (cosine {entry.get('min_cosine')})"
                )
    return rows


# One end-to-end run in a fresh process, timing its own parts: the interpreter's start is what
# the parent measures beyond them. ORT: the package as `signature-onnx verify/embed` runs it.
# torch: what a user of the upstream code runs: sigver's own preprocessing (scikit-image,
# transcribed in tests/test_package_preprocess.py; the package's gives the same pixels, faster)
# and the family's PyTorch module.
COLD_SCRIPT = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
task, runtime, model, threads, images = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
if runtime == "ort":
    from signature_onnx import AutoORTModel
    t1 = time.perf_counter()
    m = AutoORTModel.from_pretrained("models/" + model, threads=threads)
    t2 = time.perf_counter()
    x = [m.prepare(i) for i in images]
    t3 = time.perf_counter()
    m._run(dict(zip(m.input_names, x)) if task == "verify" else {m.input_names[0]: x[0]})
else:
    import torch
    from pathlib import Path
    from signature_onnx.preprocessing import Preprocessing
    from stages.core.params import model_spec
    from stages.families.torch_sigver import siamese, signet
    torch.set_num_threads(threads)
    t1 = time.perf_counter()
    net = (siamese if task == "verify" else signet).load_model(Path("data/raw") / model, model_spec(model))
    from test_package_preprocess import upstream_load, upstream_preprocess_signature  # sigver's own code
    settings = json.loads(Path("models/" + model + "/preprocessing.json").read_text())
    style = Preprocessing.from_dict(settings["preprocessing"], "preprocessing.json")
    dtype = "uint8" if task == "verify" else "float32"
    sizes = (style.canvas, style.img_size, style.input_size)
    prepare = lambda path: style.network_input(upstream_preprocess_signature(upstream_load(path), *sizes), dtype)
    t2 = time.perf_counter()
    x = [torch.from_numpy(prepare(i)) for i in images]
    t3 = time.perf_counter()
    with torch.no_grad():
        net(*x)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "preprocess": t3 - t2, "run": t4 - t3, "inside": t4 - t0}))
"""


def cold_run(task: str, runtime: str, model: str, threads: int, images: list[Path]) -> dict[str, float]:
    """Parts of one cold run in ms; `start` is the process's wall time outside the timed parts."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT, task, runtime, model, str(threads), *map(str, images)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    wall = time.perf_counter() - start
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    timed = {
        "start": wall - parts["inside"],
        **{k: parts[k] for k in ("import", "load", "preprocess", "run")},
        "total": wall,
    }
    return {k: v * 1000 for k, v in timed.items()}


def bench_end_to_end(images: list[Path], rounds: int, threads: int) -> None:
    """`verify` (a pair: siamese) and `embed` (one image: signet_pth), ONNX Runtime against PyTorch
    with the same preprocessing: cold (a new process per run: start, imports, load, preprocess, run)
    and warm (the API with the model loaded), medians of interleaved rounds."""
    import statistics

    import torch

    from signature_onnx import ORTModelForSignatureFeatures, ORTModelForSignatureVerification
    from stages.core.params import model_spec
    from stages.families.torch_sigver import siamese as torch_siamese
    from stages.families.torch_sigver import signet as torch_signet

    a, b = images[0], images[1]
    cases = {"verify": ("siamese", [a, b]), "embed": ("signet_pth", [a])}
    before = load()
    cold: dict[tuple[str, str], list[dict[str, float]]] = {(t, r): [] for t in cases for r in ("torch", "ort")}
    for _ in range(rounds):
        for (task, runtime), runs in cold.items():
            runs.append(cold_run(task, runtime, cases[task][0], threads, cases[task][1]))
    print(
        f"\n== end to end, cold (one new process per run), {a.name} / {b.name}; ms, median of {rounds} interleaved rounds, "
        f"{threads} threads; {before} -> {load()} =="
    )
    print(f"{'':<18}{'start':>8}{'import':>8}{'load':>8}{'prep':>8}{'run':>8}{'total':>9}{'x torch':>9}")
    for task in cases:
        medians = {
            r: {k: statistics.median(run[k] for run in cold[(task, r)]) for k in cold[(task, r)][0]}
            for r in ("torch", "ort")
        }
        for runtime, label in (("torch", "PyTorch"), ("ort", "ONNX Runtime")):
            m = medians[runtime]
            print(
                f"{task + ' ' + label:<18}"
                + "".join(f"{m[k]:>8.0f}" for k in ("start", "import", "load", "preprocess", "run"))
                + f"{m['total']:>9.0f}{medians['torch']['total'] / m['total']:>8.2f}x"
            )

    torch.set_num_threads(threads)
    siamese = torch_siamese.load_model(Path("data/raw/siamese"), model_spec("siamese"))
    signet = torch_signet.load_model(Path("data/raw/signet_pth"), model_spec("signet_pth"))
    verifier = ORTModelForSignatureVerification.from_pretrained(Path("models/siamese"), threads=threads)
    embedder = ORTModelForSignatureFeatures.from_pretrained(Path("models/signet_pth"), threads=threads)
    pair = [verifier.prepare(a), verifier.prepare(b)]
    one = embedder.prepare(a)
    sys.path.insert(0, str(REPO / "tests"))
    from test_package_preprocess import upstream_load, upstream_preprocess_signature  # sigver's own code

    def upstream_prepare(model, path: Path) -> np.ndarray:
        style = model.folder.preprocessing
        dtype = "uint8" if model is verifier else "float32"
        return style.network_input(
            upstream_preprocess_signature(upstream_load(path), style.canvas, style.img_size, style.input_size), dtype
        )

    for model, path, ours in ((verifier, a, pair[0]), (verifier, b, pair[1]), (embedder, a, one)):
        assert np.array_equal(upstream_prepare(model, path), ours), (
            "the package's preprocessing must be sigver's, pixel for pixel"
        )

    def torch_verify() -> None:
        x1, x2 = (torch.from_numpy(upstream_prepare(verifier, p)) for p in (a, b))
        with torch.no_grad():
            siamese(x1, x2)

    def torch_embed() -> None:
        with torch.no_grad():
            signet(torch.from_numpy(upstream_prepare(embedder, a)))

    def torch_run(net, *arrays) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad():
                net(*(torch.from_numpy(x) for x in arrays))

        return run

    runs = {
        "verify: PyTorch": torch_verify,
        "verify: ORT": lambda: verifier.verify(a, b),
        "  preprocess a pair (sigver)": lambda: (upstream_prepare(verifier, a), upstream_prepare(verifier, b)),
        "  preprocess a pair (package)": lambda: (verifier.prepare(a), verifier.prepare(b)),
        "  network, PyTorch": torch_run(siamese, *pair),
        "  network, ORT": lambda: verifier._run(dict(zip(verifier.input_names, pair))),
        "embed 1: PyTorch": torch_embed,
        "embed 1: ORT": lambda: embedder.embed([a]),
        "  preprocess one (sigver)": lambda: upstream_prepare(embedder, a),
        "  preprocess one (package)": lambda: embedder.prepare(a),
        "  network, PyTorch ": torch_run(signet, one),
        "  network, ORT ": lambda: embedder._run({embedder.input_names[0]: one}),
    }
    before = load()
    ms = interleaved_ms(runs, rounds * 3)
    print(
        f"\n== end to end, warm (API, model loaded); ms, median of {rounds * 3} interleaved rounds; {before} -> {load()} =="
    )
    for label, value in ms.items():
        base = (
            ms["verify: PyTorch"]
            if label == "verify: ORT"
            else ms["embed 1: PyTorch"]
            if label == "embed 1: ORT"
            else None
        )
        ratio = f"{base / value:>8.2f}x vs PyTorch" if base else ""
        print(f"{label:<30}{value:>10.2f}{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--project", type=Path, default=Path("."), help="a built project (data/raw, models); default: here"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds per figure (median)")
    parser.add_argument("--threads", type=int, default=2, help="threads for every runtime")
    parser.add_argument(
        "--images", type=Path, help="a folder of signature scans for the end-to-end rows (default: drawn ones)"
    )
    parser.add_argument(
        "--models", nargs="*", help="models to benchmark (default: every model of params.yaml; none: end to end only)"
    )
    args = parser.parse_args()
    import warnings

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(args.threads))
    warnings.simplefilter("ignore")  # the synthetic-weights warning; timings do not depend on values
    project = args.project.resolve()
    os.chdir(project)
    params = load_params(project / "params.yaml")
    for name in list(params.models) if args.models is None else args.models:
        bench_model(project, name, params.models[name], args.rounds, args.threads)
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
    bench_end_to_end(images, args.rounds, args.threads)


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)
    main()
