"""Benchmark of the SigNet family: ONNX Runtime vs the NumPy oracle vs PyTorch, per image.

One run, one table: SigNet (Lasagne) at batch 1 and 32, SigNet-SPP 300 dpi at three image
sizes, and the sigver .pth SigNet at batch 1 and 32 (PyTorch is its source; it has no oracle).
For the Lasagne networks PyTorch runs `LasagneTwin`, the same layer facts written with
torch.nn.functional on the same arrays (the tests check it against the oracle), so all three
columns compute the same function.

Weights: the pipeline's files when they exist (data/raw/<model>/ and models/<model>/model.onnx,
after `dvc repro`), else the built-in stand-ins generated in memory; timing does not depend on
the values. Not a test: it prints figures and asserts nothing.

    python benchmarks/bench_signet.py [--repeat 5] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.core.drawings import signature_gray  # noqa: E402
from stages.core.params import model_spec  # noqa: E402
from stages.families import lasagne_signet  # noqa: E402
from stages.families.lasagne_signet import standin  # noqa: E402
from stages.families.lasagne_signet.layout import Conv, Dense, Pool, SpatialPyramid, architecture, check_params  # noqa: E402
from stages.families.lasagne_signet.onnx_builder import build_model  # noqa: E402
from stages.families.lasagne_signet.oracle import LasagneOracle  # noqa: E402
from stages.families.lasagne_signet.pickle_file import load_checked  # noqa: E402
from stages.families.torch_sigver import signet as torch_signet  # noqa: E402
from stages.speedups.checks import ms_per_call  # noqa: E402

SPP_SIZES = ((300, 450), (1000, 1500), (2000, 3000))
QUICK_SPP_SIZES = ((100, 150), (200, 300), (300, 450))


class LasagneTwin(torch.nn.Module):
    """The Lasagne network in PyTorch (float32), from the layer facts, on the pickle's arrays.

    conv: F.conv2d (cross-correlation) with W as stored; batch norm (x - mean) * (gamma * inv_std)
    + beta; ReLU; F.max_pool2d (floor mode); SigNet flattens (C, H, W); SPP "kaiming" bins by
    slicing; dense x @ W with W (in, out).
    """

    def __init__(self, architecture_name: str, params: Sequence[np.ndarray]):
        super().__init__()
        self.arch = architecture(architecture_name)
        self.weights = [torch.from_numpy(np.ascontiguousarray(p)) for p in params]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs, cursor = {}, 0
        for layer in self.arch.layers:
            if isinstance(layer, (Conv, Dense)):
                w, beta, gamma, mean, inv_std = self.weights[cursor : cursor + 5]
                cursor += 5
                if isinstance(layer, Conv):
                    x = F.conv2d(x, w, stride=layer.stride, padding=layer.pad)
                    view = (1, -1, 1, 1)
                else:
                    x = x.flatten(1) @ w
                    view = (1, -1)
                x = torch.relu((x - mean.view(view)) * (gamma * inv_std).view(view) + beta.view(view))
                if isinstance(layer, Dense):
                    outputs[layer.name] = x
            elif isinstance(layer, Pool):
                x = F.max_pool2d(x, layer.size, layer.stride)
            elif isinstance(layer, SpatialPyramid):
                x = self._pyramid(x, layer.levels)
        return outputs

    @staticmethod
    def _pyramid(x: torch.Tensor, levels: Sequence[int]) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        bins = []
        for n in levels:
            for r in range(n):
                for c in range(n):
                    region = x[
                        :,
                        :,
                        math.floor(r / n * h) : math.ceil((r + 1) / n * h),
                        math.floor(c / n * w) : math.ceil((c + 1) / n * w),
                    ]
                    bins.append(region.amax(dim=(2, 3)))
        return torch.stack(bins, dim=2).flatten(1)  # index c * 21 + bin


def lasagne_model(name: str) -> tuple[str, list[np.ndarray], bytes, str]:
    """(architecture_name, flat params, ONNX bytes, where from) for a Lasagne model of params.yaml."""
    spec = model_spec(name, REPO / "params.yaml")
    architecture_name = spec.network.architecture
    raw = REPO / "data" / "raw" / name / spec.files[0]
    published = REPO / "models" / name / "model.onnx"
    if raw.exists() and published.exists():
        content, _ = load_checked(raw, architecture_name)
        return architecture_name, content.params, published.read_bytes(), "pipeline files"
    params = standin.synthetic_params(architecture_name, spec.source.seed)
    model = build_model(
        architecture(architecture_name), check_params(architecture_name, params, name), opset=spec.onnx.opset
    )
    return architecture_name, params, model.SerializeToString(), "built-in stand-in, in memory"


def session(data: bytes, threads: int) -> ort.InferenceSession:
    """ORT with its default settings except the thread count. Its worker threads spin after a
    run, which slows NumPy and PyTorch in the same process, so every case times the other
    runtimes before an ORT session exists."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def seconds(run: Callable[[], object], repeat: int) -> float:
    """Median wall time of `repeat` calls after one warm-up call (the variants step's timer)."""
    return ms_per_call(run, repeat) / 1000


def phase(runs: Sequence[Callable[[], object]], cases: Sequence[tuple[str, np.ndarray]], repeat: int) -> list[float]:
    """Seconds per image of each case for one runtime, then a pause.

    Each runtime is timed in a phase of its own: the thread pools of ORT, OpenBLAS and PyTorch
    keep spinning for a moment after work, and on a small machine that would slow whichever
    runtime ran next. The pause lets them go idle.
    """
    times = [seconds(run, repeat) / x.shape[0] for run, (_label, x) in zip(runs, cases)]
    time.sleep(0.5)
    return times


def spp_batch(architecture_name: str, size: tuple[int, int], seed: int) -> np.ndarray:
    return lasagne_signet.spp_input(signature_gray(seed, *size), architecture_name)


def signet_batch(batch: int, seed: int, scale: float = 1.0) -> np.ndarray:
    images = [
        lasagne_signet.signet_input(signature_gray(seed + i, 300 + 7 * i, 600 + 11 * i)) for i in range(min(batch, 4))
    ]
    stacked = np.concatenate([images[i % len(images)] for i in range(batch)])
    return (stacked * np.float32(scale)).astype(np.float32)


def measure_lasagne(name: str, cases: Sequence[tuple[str, np.ndarray]], repeat: int, threads: int) -> list[tuple]:
    architecture_name, params, data, origin = lasagne_model(name)
    oracle = LasagneOracle(architecture_name, params)
    twin = LasagneTwin(architecture_name, params).eval()
    with torch.no_grad():
        torch_times = phase([lambda x=x: twin(torch.from_numpy(x)) for _l, x in cases], cases, repeat)
    oracle_times = phase([lambda x=x: oracle(x) for _l, x in cases], cases, max(1, repeat // 2))
    sess = session(data, threads)
    input_name = sess.get_inputs()[0].name
    ort_times = phase([lambda x=x: sess.run(None, {input_name: x}) for _l, x in cases], cases, repeat)
    return [
        (f"{name} {label}", t_ort, t_oracle, t_torch, origin)
        for (label, _x), t_ort, t_oracle, t_torch in zip(cases, ort_times, oracle_times, torch_times)
    ]


def measure_pth(name: str, cases: Sequence[tuple[str, np.ndarray]], repeat: int, threads: int) -> list[tuple]:
    spec = model_spec(name, REPO / "params.yaml")
    raw = REPO / "data" / "raw" / name
    published = REPO / "models" / name / "model.onnx"
    if (raw / spec.files[0]).exists() and published.exists():
        model, data, origin = torch_signet.load_model(raw, spec), published.read_bytes(), "pipeline files"
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            torch_signet.write_builtin(Path(scratch), spec)
            torch_signet.convert(Path(scratch), spec, Path(scratch) / "m.onnx")
            model, data = torch_signet.load_model(Path(scratch), spec), (Path(scratch) / "m.onnx").read_bytes()
        origin = "built-in stand-in, in memory"
    with torch.no_grad():
        torch_times = phase([lambda x=x: model(torch.from_numpy(x)) for _l, x in cases], cases, repeat)
    sess = session(data, threads)
    input_name = sess.get_inputs()[0].name
    ort_times = phase([lambda x=x: sess.run(None, {input_name: x}) for _l, x in cases], cases, repeat)
    return [
        (f"{name} {label}", t_ort, None, t_torch, origin)
        for (label, _x), t_ort, t_torch in zip(cases, ort_times, torch_times)
    ]


def table(rows: Sequence[tuple]) -> str:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value * 1e3:.2f}"

    def ratio(value: float | None, ort_time: float) -> str:
        return "—" if value is None else f"{value / ort_time:.1f}x"

    header = ("case", "ORT ms/img", "oracle ms/img", "PyTorch ms/img", "oracle/ORT", "PyTorch/ORT")
    body = [
        (label, ms(t_ort), ms(t_or), ms(t_pt), ratio(t_or, t_ort), ratio(t_pt, t_ort))
        for label, t_ort, t_or, t_pt, _ in rows
    ]
    widths = [max(len(str(r[i])) for r in (header, *body)) for i in range(len(header))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in body]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (median; default %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="ORT and PyTorch threads (default: all cores)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and batch 4 (a smoke run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    big = 4 if args.quick else 32
    spp_sizes = QUICK_SPP_SIZES if args.quick else SPP_SIZES
    rows = measure_lasagne(
        "signet", [("batch 1", signet_batch(1, 7)), (f"batch {big}", signet_batch(big, 7))], args.repeat, args.threads
    )
    rows += measure_lasagne(
        "signet_spp_300dpi",
        [(f"{h}x{w}", spp_batch("signet_spp_300dpi", (h, w), 11)) for h, w in spp_sizes],
        args.repeat,
        args.threads,
    )
    rows += measure_pth(
        "signet_pth",
        [("batch 1", signet_batch(1, 7, 1 / 255)), (f"batch {big}", signet_batch(big, 7, 1 / 255))],
        args.repeat,
        args.threads,
    )
    print(
        f"threads: {args.threads}; median of {args.repeat} runs after a warm-up; weights: "
        + ", ".join(sorted({f"{r[0].split()[0]}: {r[4]}" for r in rows}))
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
