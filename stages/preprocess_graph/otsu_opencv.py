"""OpenCV's Otsu threshold (`cv2.threshold(..., THRESH_OTSU)` on uint8) as ONNX nodes, exact.

OpenCV (imgproc/src/thresh.cpp, `getThreshVal_Otsu`, 4.x and 5.x) does, on the 256-bin
histogram h of N pixels, in double precision (where OpenCV is built with Intel IPP, as the
opencv-python wheels are, cv2 runs IPP's Otsu instead: the same value on every real scan and
drawn page tried, but another of the tied bins on exact ties such as a symmetric histogram,
11 of the 100 symmetric test images; the graph follows the C loop):

    scale = 1. / N;  mu = sum_i i * (double)h[i];  mu *= scale;
    mu1 = 0, q1 = 0, max_sigma = 0, max_val = 0;
    for i in 0..255:
        p_i = h[i] * scale;
        mu1 *= q1;  q1 += p_i;  q2 = 1. - q1;
        if (min(q1, q2) < FLT_EPSILON || max(q1, q2) > 1. - FLT_EPSILON) continue;
        mu1 = (mu1 + i * p_i) / q1;  mu2 = (mu - q1 * mu1) / q2;
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if (sigma > max_sigma) { max_sigma = sigma; max_val = i; }
    return max_val;

Quirks kept: a skipped bin leaves mu1 MULTIPLIED by q1 (not divided back), and the next bin
multiplies it again; ties keep the FIRST maximum (strict >); no bin with sigma > 0 gives 0.

q1 is a running sum rounded at every step: ONNX CumSum (a sequential left-to-right sum in
onnxruntime and in numpy's `cumsum`, which the reference runtime uses) gives exactly C's
q1 += p_i, so q1, q2 and the skip test are computed on [256] vectors. mu1's recurrence
(mu1 = (mu1 * q1_prev + i p_i) / q1, kept as mu1 * q1_prev on a skipped bin) is rounded at
every step and cannot be vectorised exactly: it is UNROLLED, 256 steps of 3 scalar nodes on
the bins Split out of the vectors (~770 small nodes). An ONNX Scan did the same arithmetic,
but its per-iteration overhead in onnxruntime made it slower: 2x alone, and it was the largest
node of the wiwd graph in a profile under load. The rest has no recurrence
and is computed on the [256] vectors with the same operations in the same order
(q2 = 1 - q1; mu2 = (mu - q1 * mu1) / q2; sigma = ((q1 * q2) * d) * d): element for element
the same doubles as in C. The C loop's running maximum with a strict > and a start at
max_sigma = 0, max_val = 0 is then ArgMax (first occurrence) of sigma with skipped bins set
to 0: a maximum <= 0 leaves index 0, and otherwise the first bin reaching the maximum wins, as
in C. The sum for mu is of integers < 2**53, exact in any order; h[i] * scale and i * p_i are
computed once per bin as in C.

That unrolled recurrence is most of the graph's time on small scans, so it runs only where it
can change the answer. First, on the [256] vectors, mu1 is taken from a running sum, S / q1
(S = CumSum of i p_i over the counted bins: C's mu1 keeps nothing of the skipped leading bins,
so neither does S), and sigma from it by the same operations as above. Every term i p_i is
>= 0, so relative rounding errors only add: the recurrence's mu1 is within 3 roundings per bin
(768 at most) of the exact S / q1, the running sum's within 256 (255 additions, the division),
so the two differ by at most 1024 roundings of 2**-53, 3e-11 for mu1 <= 255. Sigma, which is
q1 (mu1 - mu)^2 / q2, changes by 2 q1 d per unit of mu1 (|d| = |mu1 - mu2| <= 255), and each
side rounds its own remaining operations within 1e-10: the two sigma of one bin differ by less
than E = 2e-8. Where the largest fast sigma M exceeds `UNAMBIGUOUS_MARGIN` (1e-6 > 2 E) and
every other counted bin's is below M - 1e-6, C's sigma has its unique maximum above 0 at the
same bin, so that bin is C's answer (an `If` takes it). Otherwise (sigma equal over empty bins, a near tie, nothing above
the margin) the `If` runs the exact recurrence. On the 41 real scans of the tests the fast
side decides 40 of the unblurred images and all of the blurred ones.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.histogram import BINS, histogram_256

FLT_EPSILON = float(np.finfo(np.float32).eps)  # C's FLT_EPSILON promoted to double, 2**-23
# How far the fast side's maximum must stand above every other bin and above 0 (module docstring).
UNAMBIGUOUS_MARGIN = 1e-6


def otsu_threshold(g: GraphBuilder, x: str, name: str) -> str:
    """`cv2.threshold(x, 0, 255, THRESH_BINARY + THRESH_OTSU)[0]` of a uint8 tensor.

    Args:
        g: the builder the nodes are added to.
        x: uint8 tensor of any shape with at least one element.
        name: scope, e.g. "wiwd/otsu".

    Returns:
        the name of a float64 scalar: the threshold, an integer 0..255 (pixels > it are
        "paper" for THRESH_BINARY).
    """
    return otsu_from_histogram(g, histogram_256(g, x, f"{name}/hist"), name)


def otsu_from_histogram(g: GraphBuilder, hist: str, name: str) -> str:
    """OpenCV's Otsu loop (module docstring) on an int64 [256] histogram -> float64 scalar (0-d).

    The bin comes from the fast side where its maximum is clear, else from the exact recurrence
    (an `If` named `<name>/If`, its condition `<name>/fast/Clear`)."""
    counts = g.op("Cast", [hist], f"{name}/Counts", to=TensorProto.DOUBLE)
    total = g.op("ReduceSum", [counts], f"{name}/N", keepdims=0)  # 0-d
    # 1. / total as a Reciprocal: onnxruntime fuses a Div(1, x) whose one consumer is a Mul into
    # another division, which rounds differently.
    scale = g.op("Reciprocal", [total], f"{name}/Scale")
    levels = g.const(f"{name}/levels", np.arange(BINS, dtype=np.float64))
    level_sum = g.op(
        "ReduceSum", [g.op("Mul", [levels, counts], f"{name}/LevelCounts")], f"{name}/LevelSum", keepdims=0
    )
    mu = g.op("Mul", [level_sum, scale], f"{name}/Mu")
    p = g.op("Mul", [counts, scale], f"{name}/P")  # p_i = h[i] * scale
    ip = g.op("Mul", [levels, p], f"{name}/IP")  # i * p_i
    axis = g.scalar(f"{name}/axis", 0, np.int64)
    q1 = g.op("CumSum", [p, axis], f"{name}/q1")  # q1 += p_i, in order
    q2 = g.op("Sub", [g.scalar(f"{name}/one_q2", 1.0, np.float64), q1], f"{name}/q2")
    skipped = _skipped(g, q1, q2, name)

    fast_sigma = _sigma(g, mu, q1, q2, _running_mu1(g, q1, ip, skipped, axis, f"{name}/fast"), skipped, f"{name}/fast")
    clear = _clear_maximum(g, fast_sigma, f"{name}/fast")
    fast = g.branch()
    fast_best = fast.op("ArgMax", [fast_sigma], f"{name}/fast/ArgMax", axis=0, keepdims=0, select_last_index=0)
    exact = g.branch()
    exact_sigma = _sigma(exact, mu, q1, q2, _mu1_recurrence(exact, q1, ip, skipped, f"{name}/mu1"), skipped, name)
    exact_best = exact.op("ArgMax", [exact_sigma], f"{name}/ArgMax", axis=0, keepdims=0, select_last_index=0)
    best_bin = g.if_else(clear, (fast, fast_best), (exact, exact_best), TensorProto.INT64, f"{name}/If")
    return g.op("Cast", [best_bin], f"{name}/Threshold", to=TensorProto.DOUBLE)


def _running_mu1(g: GraphBuilder, q1: str, ip: str, skipped: str, axis: str, name: str) -> str:
    """The fast side's mu1, S / q1: S the running sum of i p_i from the first counted bin on (C's
    mu1 keeps nothing of the skipped leading bins). float64 [256]; 0/0 on leading bins."""
    counted_so_far = g.op(
        "CumSum",
        [
            g.op("Cast", [g.op("Not", [skipped], f"{name}/IsCounted")], f"{name}/IsCountedInt", to=TensorProto.INT32),
            axis,
        ],
        f"{name}/CountedSoFar",
    )
    leading = g.op("Equal", [counted_so_far, g.scalar(f"{name}/none", 0, np.int32)], f"{name}/Leading")
    ip_counted = g.op("Where", [leading, g.scalar(f"{name}/no_ip", 0.0, np.float64), ip], f"{name}/IPCounted")
    running = g.op("CumSum", [ip_counted, axis], f"{name}/S")
    return g.op("Div", [running, q1], f"{name}/mu1")


def _clear_maximum(g: GraphBuilder, sigma: str, name: str) -> str:
    """bool scalar: the largest sigma exceeds `UNAMBIGUOUS_MARGIN` and no other bin is within it."""
    best = g.op("ReduceMax", [sigma], f"{name}/Best", keepdims=0)
    tolerance = g.scalar(f"{name}/margin", UNAMBIGUOUS_MARGIN, np.float64)
    near = g.op("GreaterOrEqual", [sigma, g.op("Sub", [best, tolerance], f"{name}/Floor")], f"{name}/Near")
    near_count = g.op(
        "ReduceSum", [g.op("Cast", [near], f"{name}/NearInt", to=TensorProto.INT64)], f"{name}/NearCount", keepdims=0
    )
    alone = g.op("Equal", [near_count, g.scalar(f"{name}/one", 1, np.int64)], f"{name}/Alone")
    return g.op("And", [alone, g.op("Greater", [best, tolerance], f"{name}/AboveMargin")], f"{name}/Clear")


def _sigma(g: GraphBuilder, mu: str, q1: str, q2: str, mu1: str, skipped: str, name: str) -> str:
    """C's sigma per bin from mu1, 0 on skipped bins (inf or NaN there never wins): float64 [256].

    mu2 = (mu - q1 * mu1) / q2; sigma = q1 * q2 * d * d, evaluated left to right as C does."""
    mu2 = g.op(
        "Div", [g.op("Sub", [mu, g.op("Mul", [q1, mu1], f"{name}/q1_mu1")], f"{name}/mu2_sum"), q2], f"{name}/mu2"
    )
    diff = g.op("Sub", [mu1, mu2], f"{name}/diff")
    sigma = g.op(
        "Mul", [g.op("Mul", [g.op("Mul", [q1, q2], f"{name}/q1q2"), diff], f"{name}/q1q2d"), diff], f"{name}/sigma"
    )
    zero = g.scalar(f"{name}/zero", 0.0, np.float64)
    return g.op("Where", [skipped, zero, sigma], f"{name}/Counted")


def _mu1_recurrence(g: GraphBuilder, q1: str, ip: str, skipped: str, name: str) -> str:
    """C's mu1 per bin, unrolled: float64 [256] q1, ip (i * p_i), bool [256] skipped -> float64 [256].

    Bin i: t = mu1 * q1[i-1] (mu1 = q1[-1] = 0 before bin 0); a counted bin's mu1 is
    (t + ip[i]) / q1[i]; a skipped bin keeps t. Both are one expression, (t + ip'[i]) / d[i], with
    ip' = 0 and d = 1 on skipped bins (t + 0 == t and t / 1 == t exactly: t is finite and >= 0),
    chosen once on the vectors: 3 nodes per bin on [1] tensors, the bins from one Split per
    vector, the results back with one Concat. The value on a skipped bin is not C's (C computes
    none there); sigma is not counted there.
    """
    f64 = np.float64
    kept = g.op("Where", [skipped, g.scalar(f"{name}/no_ip", 0.0, f64), ip], f"{name}/ip_kept")
    divisor = g.op("Where", [skipped, g.scalar(f"{name}/unit", 1.0, f64), q1], f"{name}/divisor")
    q1_bins = g.ops("Split", [q1], f"{name}/q1_bins", outputs=BINS, axis=0)
    ip_bins = g.ops("Split", [kept], f"{name}/ip_bins", outputs=BINS, axis=0)
    divisor_bins = g.ops("Split", [divisor], f"{name}/divisor_bins", outputs=BINS, axis=0)
    carried = q1_previous = g.const(f"{name}/zero", np.zeros(1, dtype=f64))
    per_bin = []
    for i in range(BINS):
        scope = f"{name}/bin{i}"
        times_q1 = g.op("Mul", [carried, q1_previous], f"{scope}/times_q1")  # mu1 *= q1
        summed = g.op("Add", [times_q1, ip_bins[i]], f"{scope}/sum")
        carried = g.op("Div", [summed, divisor_bins[i]], f"{scope}/Div")
        per_bin.append(carried)
        q1_previous = q1_bins[i]
    return g.op("Concat", per_bin, f"{name}/Concat", axis=0)


def _skipped(g: GraphBuilder, q1: str, q2: str, name: str) -> str:
    """bool, elementwise: min(q1, q2) < FLT_EPSILON || max(q1, q2) > 1. - FLT_EPSILON (the C `continue`)."""
    low = g.op(
        "Less",
        [g.op("Min", [q1, q2], f"{name}/qmin"), g.scalar(f"{name}/eps", FLT_EPSILON, np.float64)],
        f"{name}/too_small",
    )
    high = g.op(
        "Greater",
        [g.op("Max", [q1, q2], f"{name}/qmax"), g.scalar(f"{name}/one_minus_eps", 1.0 - FLT_EPSILON, np.float64)],
        f"{name}/too_large",
    )
    return g.op("Or", [low, high], f"{name}/skip")
