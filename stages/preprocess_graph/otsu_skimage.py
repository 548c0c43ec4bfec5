"""`skimage.filters.threshold_otsu` of a uint8 image as ONNX nodes, bit for bit (scikit-image 0.26).

What scikit-image 0.26 computes for an integer image (`threshold_otsu(image)`, nbins ignored):

- a uniform image returns its value (the package refuses those before, so the graph's value
  there does not matter, but it must not fail: see below);
- `histogram(image.ravel(), source_range="image")`: one bin per integer from image.min() to
  image.max() (np.bincount), bin centers = those integers (int64);
- counts are cast to float32 (`_validate_image_histogram`), then
  weight1 = cumsum(counts)                      float32, sequential
  weight2 = cumsum(counts[::-1])[::-1]          float32, sequential from the top bin
  mean1   = cumsum(counts * centers) / weight1  float64 (float32 * int64 -> float64)
  mean2   = (cumsum((counts * centers)[::-1]) / weight2[::-1])[::-1]   float64
  variance12 = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    evaluated left to right: the weight product in FLOAT32 (rounded), then times the
    float64 square (numpy's `** 2` is `x * x`);
  threshold = centers[argmax(variance12)]  (first maximum).

The graph uses all 256 bins (a fixed shape) and reproduces the same numbers on the bins
min..max: bins below min and above max are empty, and adding 0 to a cumulative sum changes
nothing, so every cumulative value inside the range is the same as over the trimmed
histogram. Outside the range (and at the top bin, which variance12 has not) the candidate is
replaced by -inf before ArgMax, so the first maximum is the same index. (Class weights are
floored at 1 before dividing: no 0 / 0 outside the range, nothing changed inside it.)
The result is an integer, returned as a float64 scalar (every comparison with it in the
package is made in float64).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.histogram import BINS, histogram_256


def otsu_threshold(g: GraphBuilder, gray: str, name: str) -> str:
    """`threshold_otsu(gray)` of a uint8 [H, W] tensor.

    Returns:
        a float64 scalar holding an integer 0..254 (the threshold of a non-uniform image;
        for a uniform image some value 0..255 -- the package refuses those, nothing fails).
    """
    counts = histogram_256(g, gray, f"{name}/hist")  # int64 [256]
    return otsu_from_counts(g, counts, name)


def otsu_from_counts(g: GraphBuilder, counts: str, name: str) -> str:
    """scikit-image's Otsu rule on int64 [256] `counts` (bins 0..255); float64 scalar result."""
    counts32 = g.op("Cast", [counts], f"{name}/Counts32", to=TensorProto.FLOAT)
    centers = g.const(f"{name}/centers", np.arange(BINS, dtype=np.float64))
    weight1 = g.op("CumSum", [counts32, g.scalar(f"{name}/axis", 0, np.int64)], f"{name}/Weight1")
    weight2 = g.op("CumSum", [counts32, g.scalar(f"{name}/axis_rev", 0, np.int64)], f"{name}/Weight2", reverse=1)
    moments = g.op(
        "Mul", [g.op("Cast", [counts32], f"{name}/Counts64", to=TensorProto.DOUBLE), centers], f"{name}/Moments"
    )
    mean1 = g.op(
        "Div",
        [
            g.op("CumSum", [moments, g.scalar(f"{name}/axis_m1", 0, np.int64)], f"{name}/Moment1"),
            _denominator(g, weight1, f"{name}/W1d"),
        ],
        f"{name}/Mean1",
    )
    moment2 = g.op("CumSum", [moments, g.scalar(f"{name}/axis_m2", 0, np.int64)], f"{name}/Moment2", reverse=1)
    mean2 = g.op("Div", [moment2, _denominator(g, weight2, f"{name}/W2d")], f"{name}/Mean2")
    # Candidate i pairs class 1 = bins 0..i with class 2 = bins i+1..255.
    w1, m1 = _head(g, weight1, f"{name}/w1"), _head(g, mean1, f"{name}/m1")
    w2, m2 = _tail(g, weight2, f"{name}/w2"), _tail(g, mean2, f"{name}/m2")
    weights = g.op("Mul", [w1, w2], f"{name}/WeightProduct")  # float32, rounded as numpy does
    diff = g.op("Sub", [m1, m2], f"{name}/MeanDiff")
    square = g.op("Mul", [diff, diff], f"{name}/Square")
    variance = g.op("Mul", [_as_double(g, weights, f"{name}/Wd"), square], f"{name}/Variance")  # [255]
    in_range = _candidate_mask(g, counts, name)
    masked = g.op("Where", [in_range, variance, g.scalar(f"{name}/minus_inf", -np.inf, np.float64)], f"{name}/Masked")
    index = g.op("ArgMax", [masked], f"{name}/ArgMax", axis=0, keepdims=0, select_last_index=0)
    return g.op("Cast", [index], f"{name}/Threshold", to=TensorProto.DOUBLE)


def _candidate_mask(g: GraphBuilder, counts: str, name: str) -> str:
    """bool [255]: True for the candidates scikit-image has, bins min .. max - 1 of the image.

    min = first non-empty bin, max = last non-empty bin (ArgMax of "count > 0", first / last).
    """
    present = g.op(
        "Cast",
        [g.op("Greater", [counts, g.scalar(f"{name}/zero", 0, np.int64)], f"{name}/Present")],
        f"{name}/PresentInt",
        to=TensorProto.INT32,
    )
    low = g.op("ArgMax", [present], f"{name}/Min", axis=0, keepdims=0, select_last_index=0)
    high = g.op("ArgMax", [present], f"{name}/Max", axis=0, keepdims=0, select_last_index=1)
    index = g.const(f"{name}/candidates", np.arange(BINS - 1, dtype=np.int64))
    return g.op(
        "And",
        [g.op("GreaterOrEqual", [index, low], f"{name}/FromMin"), g.op("Less", [index, high], f"{name}/BelowMax")],
        f"{name}/InRange",
    )


def _as_double(g: GraphBuilder, x: str, name: str) -> str:
    return g.op("Cast", [x], f"{name}/Cast", to=TensorProto.DOUBLE)


def _denominator(g: GraphBuilder, weight: str, name: str) -> str:
    """A float32 class weight as a float64 divisor, floored at 1.

    Inside the image's range a class weight counts at least one pixel (>= 1), so the floor
    changes nothing there; outside it, it turns 0 / 0 (NaN, masked anyway) into 0 / 1.
    """
    floored = g.op("Max", [weight, g.const(f"{name}/one", np.array([1.0], dtype=np.float32))], f"{name}/Floor")
    return _as_double(g, floored, name)


def _head(g: GraphBuilder, x: str, name: str) -> str:
    """x[:-1] of a [256] tensor."""
    return g.op("Slice", [x, g.ints(f"{name}/starts", [0]), g.ints(f"{name}/ends", [BINS - 1])], f"{name}/Slice")


def _tail(g: GraphBuilder, x: str, name: str) -> str:
    """x[1:] of a [256] tensor."""
    return g.op("Slice", [x, g.ints(f"{name}/starts", [1]), g.ints(f"{name}/ends", [BINS])], f"{name}/Slice")
