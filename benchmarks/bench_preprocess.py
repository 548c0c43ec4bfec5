"""Benchmark: the preprocessing as an ONNX graph (preprocess.onnx) against the package's Python code.

For each style (wiwd, its SPP path, sigver, rgb) the graph is built from the params of one model
(stages/preprocess_graph, as the validate stage builds it) and both run on the same decoded
pages: a folder of scans (--images, e.g. ../shared/fixtures/signatures) or, without it, drawn
pages of scan-like sizes. Each round runs one side over every page, then the other (median
per page over the rounds), so a load change hits both alike while neither runs in the moment
after the other's calls, when onnxruntime's and OpenCV's worker threads still spin on both
cores (timed one call of each in turn, the same graph measured 0.8 or 2.0 ms from one
process to the next); the table gives ms per page (mean of the
per-page medians), the ratio Python / graph (> 1: the graph is faster) and how many pages gave a
bit-equal network input. The load average is printed with it. Not a test: it asserts nothing.

    python benchmarks/bench_preprocess.py [--images DIR] [--rounds 5] [--threads 2] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_unfused_bn import session  # noqa: E402

from signature_onnx.preprocessing.files import IMAGE_SUFFIXES, load_rgb  # noqa: E402
from stages.core.drawings import drawn_page  # noqa: E402
from stages.core.params import model_spec  # noqa: E402
from stages.preprocess_graph import pixels_name, preprocess_model  # noqa: E402

MODELS = ["signet", "signet_spp_300dpi", "signet_pth", "siamese", "cleaning"]  # one per style, path and size


def pages(folder: Path | None, count: int) -> list[tuple[str, np.ndarray]]:
    if folder is not None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        return [(p.name, load_rgb(p)) for p in files]
    return [(f"drawn_{k}", drawn_page(9000 + k, 350 + 40 * k, 700 + 60 * k, False)) for k in range(count)]


def alternating_passes(
    sides: dict[str, Callable[[np.ndarray], object]], pages: list, rounds: int
) -> dict[str, list[float]]:
    """ms per page of each side: median over `rounds` rounds; a round runs one side over every
    page, then the other (after one warm-up pass each)."""
    for run in sides.values():
        for rgb in pages:
            run(rgb)
    times: dict[str, list[list[float]]] = {label: [[] for _ in pages] for label in sides}
    for _ in range(rounds):
        for label, run in sides.items():
            for index, rgb in enumerate(pages):
                start = time.perf_counter()
                run(rgb)
                times[label][index].append((time.perf_counter() - start) * 1000)
    return {label: [statistics.median(values) for values in per_page] for label, per_page in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=Path, help="a folder of scans (default: drawn pages)")
    parser.add_argument("--count", type=int, default=12, help="pages (default 12)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per page (median)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument(
        "--models", nargs="+", default=MODELS, help=f"models whose preprocessing is timed (default {' '.join(MODELS)})"
    )
    args = parser.parse_args()
    inputs = pages(args.images, args.count)
    print(
        f"{len(inputs)} pages from {args.images or 'drawings'}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'model':<20} {'style':<11} {'python ms':>10} {'graph ms':>10} {'ratio':>7} {'bit-equal':>10}")
    for name in args.models:
        spec = model_spec(name)
        pre = spec.preprocessing.package_form()
        tensor = spec.onnx.inputs[0]
        graph = preprocess_model(pre, spec.onnx.inputs[:1], spec.onnx.opset, 8)
        run = session(graph.SerializeToString(), args.threads)

        def python(rgb: np.ndarray, pre=pre, tensor=tensor) -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pre.network_input(pre.image(pre.gray_from_rgb(rgb)), tensor.dtype)

        def onnx_graph(rgb: np.ndarray, run=run, tensor=tensor) -> np.ndarray:
            return run.run([tensor.name], {pixels_name(tensor): rgb})[0]

        pixels = [rgb for _label, rgb in inputs]
        equal = sum(int(np.array_equal(python(rgb), onnx_graph(rgb))) for rgb in pixels)
        medians = alternating_passes({"python": python, "graph": onnx_graph}, pixels, args.rounds)
        python_ms, graph_ms = medians["python"], medians["graph"]
        style = pre.style + (" spp" if pre.spp else "")
        p, g = float(np.mean(python_ms)), float(np.mean(graph_ms))
        print(f"{name:<20} {style:<11} {p:>10.2f} {g:>10.2f} {p / g:>6.2f}x {equal:>6}/{len(inputs)}")


if __name__ == "__main__":
    main()
