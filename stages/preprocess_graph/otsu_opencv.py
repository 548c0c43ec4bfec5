"""OpenCV's Otsu threshold (`cv2.threshold(..., THRESH_OTSU)` on uint8) as ONNX nodes, exact.

OpenCV (imgproc/src/thresh.cpp, `getThreshVal_Otsu`, 4.x and 5.x; with IPP the result is the
same on every image tried, see the tests) does, on the 256-bin histogram h of N pixels, in
double precision:

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

q1 and mu1 are rounded at every step, so their recurrence cannot be vectorised exactly: it runs
as an ONNX `Scan` over the 256 bins whose body is exactly the C statements for q1, the skip
test and mu1, one node per operation, in the same order, and which also emits q1, mu1 and
"skipped" per bin. The rest has no recurrence and is computed on those [256] vectors with the
same operations in the same order (q2 = 1 - q1; mu2 = (mu - q1 * mu1) / q2;
sigma = ((q1 * q2) * d) * d): element for element the same doubles as in C. The C loop's
running maximum with a strict > and a start at max_sigma = 0, max_val = 0 is then
ArgMax (first occurrence) of sigma with skipped bins set to 0: a maximum <= 0 leaves index 0,
and otherwise the first bin reaching the maximum wins, as in C. The sum for mu is of integers
< 2**53, exact in any order; h[i] * scale and i * p_i are computed once per bin as in C.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.histogram import BINS, histogram_256

FLT_EPSILON = float(np.finfo(np.float32).eps)  # C's FLT_EPSILON promoted to double, 2**-23


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
    """OpenCV's Otsu loop (module docstring) on an int64 [256] histogram -> float64 scalar (0-d)."""
    counts = g.op("Cast", [hist], f"{name}/Counts", to=TensorProto.DOUBLE)
    total = g.op("ReduceSum", [counts], f"{name}/N", keepdims=0)  # 0-d
    scale = g.op("Div", [g.scalar(f"{name}/one", 1.0, np.float64), total], f"{name}/Scale")
    levels = g.const(f"{name}/levels", np.arange(BINS, dtype=np.float64))
    level_sum = g.op("ReduceSum", [g.op("Mul", [levels, counts], f"{name}/LevelCounts")], f"{name}/LevelSum", keepdims=0)
    mu = g.op("Mul", [level_sum, scale], f"{name}/Mu")
    p = g.op("Mul", [counts, scale], f"{name}/P")  # p_i = h[i] * scale
    ip = g.op("Mul", [levels, p], f"{name}/IP")  # i * p_i
    zero = g.scalar(f"{name}/zero", 0.0, np.float64)
    # State (mu1, q1) from 0; p and ip are scanned; the body reads nothing from the outer graph,
    # so renaming the outer graph's tensors (as preprocess_model does) cannot break it.
    _, _, q1, mu1, skipped = g.ops("Scan", [zero, zero, p, ip], f"{name}/Scan", outputs=5, num_scan_inputs=2, body=_scan_body(f"{name}/scan"))
    q2 = g.op("Sub", [g.scalar(f"{name}/one_q2", 1.0, np.float64), q1], f"{name}/q2")
    mu2 = g.op("Div", [g.op("Sub", [mu, g.op("Mul", [q1, mu1], f"{name}/q1_mu1")], f"{name}/mu2_sum"), q2], f"{name}/mu2")
    diff = g.op("Sub", [mu1, mu2], f"{name}/diff")
    # q1 * q2 * d * d, evaluated left to right as C does.
    sigma = g.op("Mul", [g.op("Mul", [g.op("Mul", [q1, q2], f"{name}/q1q2"), diff], f"{name}/q1q2d"), diff], f"{name}/sigma")
    counted = g.op("Where", [skipped, zero, sigma], f"{name}/Counted")  # skipped bins (inf/NaN there) never win
    best = g.op("ArgMax", [counted], f"{name}/ArgMax", axis=0, keepdims=0, select_last_index=0)
    return g.op("Cast", [best], f"{name}/Threshold", to=TensorProto.DOUBLE)


def _scan_body(name: str) -> onnx.GraphProto:
    """One bin of OpenCV's loop: state (mu1, q1), scanned (p_i, ip_i), all float64 0-d.

    Outputs: the next state (mu1 as C stores it, q1), then per bin q1, mu1 as the sigma
    formula uses it (meaningless where skipped) and the skip flag.
    """
    b = GraphBuilder(0)  # only collects the body's nodes
    mu1, q1, p_i, ip_i = (f"{name}/{n}" for n in ("mu1_in", "q1_in", "p_i", "ip_i"))
    mu1_times_q1 = b.op("Mul", [mu1, q1], f"{name}/mu1_times_q1")  # mu1 *= q1
    q1_new = b.op("Add", [q1, p_i], f"{name}/q1")  # q1 += p_i
    q2 = b.op("Sub", [b.scalar(f"{name}/one", 1.0, np.float64), q1_new], f"{name}/q2")
    skip = _skipped(b, q1_new, q2, name)
    mu1_new = b.op("Div", [b.op("Add", [mu1_times_q1, ip_i], f"{name}/mu1_sum"), q1_new], f"{name}/mu1")
    outputs = [
        b.op("Where", [skip, mu1_times_q1, mu1_new], f"{name}/mu1_out"),  # a skipped bin keeps mu1 * q1
        b.op("Identity", [q1_new], f"{name}/q1_out"),
        b.op("Identity", [q1_new], f"{name}/q1_bin"),
        b.op("Identity", [mu1_new], f"{name}/mu1_bin"),
        b.op("Identity", [skip], f"{name}/skip_bin"),
    ]
    double, boolean = TensorProto.DOUBLE, TensorProto.BOOL
    inputs = [helper.make_tensor_value_info(n, double, []) for n in (mu1, q1, p_i, ip_i)]
    outs = [helper.make_tensor_value_info(n, t, []) for n, t in zip(outputs, (double, double, double, double, boolean))]
    return helper.make_graph(b.nodes, name.replace("/", "_"), inputs, outs, initializer=b.initializers)


def _skipped(b: GraphBuilder, q1: str, q2: str, name: str) -> str:
    """bool: min(q1, q2) < FLT_EPSILON || max(q1, q2) > 1. - FLT_EPSILON (the C `continue`)."""
    low = b.op("Less", [b.op("Min", [q1, q2], f"{name}/qmin"), b.scalar(f"{name}/eps", FLT_EPSILON, np.float64)], f"{name}/too_small")
    high = b.op("Greater", [b.op("Max", [q1, q2], f"{name}/qmax"), b.scalar(f"{name}/one_minus_eps", 1.0 - FLT_EPSILON, np.float64)], f"{name}/too_large")
    return b.op("Or", [low, high], f"{name}/skip")
