"""Benchmark: ONNX Runtime speed of the PyTorch models with BatchNormalization kept (as the
pipeline exports them now) against the exporter's Conv + BatchNorm fold (as it exported them
before), in one run, on the same weights and inputs.

The fold made the ONNX bytes depend on the CPU (PyTorch kernels computed the new conv weights at
export time); the pipeline now keeps each BatchNormalization node and lets ONNX Runtime fuse it
when it loads the session. This measures what that costs at inference: nothing, if ORT's own
fusion does the same work. Prints ms per image (median of --repeat runs) and the ratio.

Weights: the pipeline's stand-ins from data/raw/<model>/ when they exist (after `dvc repro`),
else written in memory from params. Not a test: it prints figures and asserts nothing.

    python benchmarks/bench_unfused_bn.py [--repeat 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from stages.core.params import model_spec  # noqa: E402
from stages.families.torch_sigver import siamese as torch_siamese  # noqa: E402
from stages.families.torch_sigver import signet as torch_signet
from stages.families.torch_sigver.layers import export_unfused  # noqa: E402

MODELS = ("siamese", "signet_pth", "signet_f_lambda0_95_pth")


def export_folded(module: torch.nn.Module, examples: tuple, dynamic: bool) -> bytes:
    """The exporter's default (EVAL mode): Conv + BatchNorm folded with PyTorch kernels."""
    buffer = io.BytesIO()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # the pipeline's exporter too
    names = ["input"] if len(examples) == 1 else ["input0", "input1"]
    with torch.no_grad():
        torch.onnx.export(
            module.eval(),
            examples,
            buffer,
            input_names=names,
            opset_version=17,
            dynamo=False,
            dynamic_axes={"input": {0: "batch"}} if dynamic else None,
        )
    return buffer.getvalue()


def raw_folder(name: str, spec, scratch: Path) -> Path:
    raw = REPO / "data" / "raw" / name
    if all((raw / f).is_file() for f in spec.files):
        return raw
    family = torch_siamese if spec.network.architecture == "siamese" else torch_signet
    target = scratch / name
    target.mkdir(parents=True)
    family.write_builtin(target, spec)
    return target


def interleaved_medians(runs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median ms of each run, timed alternately (one of each per round), so a load change on a
    shared machine hits both alike."""
    for run in runs.values():
        run()  # warm-up: session allocations
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeat):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(values) for label, values in times.items()}


def session(data: bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| model | batch | folded ms/img | unfused ms/img | unfused/folded |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for name in MODELS:
            spec = model_spec(name, REPO / "params.yaml")
            raw = raw_folder(name, spec, Path(scratch))
            if spec.network.architecture == "siamese":
                module = torch_siamese.load_model(raw, spec)
                examples = tuple(torch.zeros((150, 220), dtype=torch.uint8) for _ in range(2))
                unfused = export_unfused(module, examples, ["input0", "input1"], ["e1", "e2", "logit"], 17)
                cases = [
                    (
                        1,
                        {
                            "input0": rng.integers(0, 256, (150, 220), dtype=np.uint8),
                            "input1": rng.integers(0, 256, (150, 220), dtype=np.uint8),
                        },
                    )
                ]
                folded = export_folded(module, examples, dynamic=False)
            else:
                module = torch_signet.load_model(raw, spec)
                examples = (torch.zeros((1, 1, 150, 220)),)
                unfused = export_unfused(
                    module, examples, ["input"], ["fc2"], 17, {"input": {0: "batch"}, "fc2": {0: "batch"}}
                )
                folded = export_folded(module, examples, dynamic=True)
                cases = [(b, {"input": rng.uniform(0, 1, (b, 1, 150, 220)).astype(np.float32)}) for b in (1, 32)]
            sessions = {
                label: session(data, args.threads) for label, data in (("folded", folded), ("unfused", unfused))
            }
            for batch, feeds in cases:
                medians = interleaved_medians(
                    {label: (lambda s=s: s.run(None, feeds)) for label, s in sessions.items()}, args.repeat
                )
                ms = {label: value / batch for label, value in medians.items()}
                print(
                    f"| {name} | {batch} | {ms['folded']:.2f} | {ms['unfused']:.2f} | {ms['unfused'] / ms['folded']:.2f}x |"
                )


if __name__ == "__main__":
    main()
