"""Benchmark: the preprocessing as an ONNX graph (preprocess.onnx) against the package's Python code.

For each style (wiwd, its SPP path, sigver, rgb) the graph is built from the params of one model
(stages/preprocess_graph, as the validate stage builds it) and both run on the same decoded
pages: a folder of scans (--images, e.g. ../shared/fixtures/signatures) or, without it, drawn
pages of scan-like sizes. Each model runs in a process of its own; each round runs one side
over every page, then the other (median per page over the rounds), so a load change hits both
alike and neither runs while the other's worker threads still spin. The table gives ms per page
(mean of the per-page medians), the ratio Python / graph (> 1: the graph is faster) and how many
pages gave a bit-equal network input, with the load average. In about one process in three the
graph ran 2-2.5x slower than usual for the whole process (docs/preprocess-graph.md, Speed):
rerun a line that is far off. Not a test: it asserts nothing.

    python benchmarks/bench_preprocess.py [--images DIR] [--rounds 5] [--threads 2] [--models ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
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


def time_model(name: str, inputs: list, rounds: int, threads: int) -> str:
    """One table line: the model's graph against the Python preprocessing on `inputs`."""
    spec = model_spec(name)
    pre = spec.preprocessing.package_form()
    tensor = spec.onnx.inputs[0]
    graph = preprocess_model(pre, spec.onnx.inputs[:1], spec.onnx.opset, 8)
    run = session(graph.SerializeToString(), threads)

    def python(rgb: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pre.network_input(pre.image(pre.gray_from_rgb(rgb)), tensor.dtype)

    def onnx_graph(rgb: np.ndarray) -> np.ndarray:
        return run.run([tensor.name], {pixels_name(tensor): rgb})[0]

    pixels = [rgb for _label, rgb in inputs]
    equal = sum(int(np.array_equal(python(rgb), onnx_graph(rgb))) for rgb in pixels)
    medians = alternating_passes({"python": python, "graph": onnx_graph}, pixels, rounds)
    style = pre.style + (" spp" if pre.spp else "")
    p, g = float(np.mean(medians["python"])), float(np.mean(medians["graph"]))
    return f"{name:<20} {style:<11} {p:>10.2f} {g:>10.2f} {p / g:>6.2f}x {equal:>6}/{len(inputs)}"


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
    parser.add_argument("--line-only", action="store_true", help=argparse.SUPPRESS)  # one model, in a child process
    args = parser.parse_args()
    inputs = pages(args.images, args.count)
    if args.line_only:
        print(time_model(args.models[0], inputs, args.rounds, args.threads))
        return
    print(
        f"{len(inputs)} pages from {args.images or 'drawings'}, {args.threads} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'model':<20} {'style':<11} {'python ms':>10} {'graph ms':>10} {'ratio':>7} {'bit-equal':>10}")
    # Each model in a process of its own, as an application runs one: a session's worker threads
    # and memory arena would otherwise outlive its model and share the machine with the next.
    common = ["--count", str(args.count), "--rounds", str(args.rounds), "--threads", str(args.threads)]
    common += ["--images", str(args.images)] if args.images else []
    for name in args.models:
        child = subprocess.run(
            [sys.executable, __file__, "--line-only", "--models", name, *common], capture_output=True, text=True
        )
        if child.returncode != 0:
            sys.exit(
                f"error: timing {name} failed: {child.stderr.strip().splitlines()[-1] if child.stderr.strip() else child.returncode}"
            )
        print(child.stdout.strip())


if __name__ == "__main__":
    main()
