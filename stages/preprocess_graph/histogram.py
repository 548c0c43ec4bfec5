"""The 256-bin histogram of a uint8 tensor as ONNX nodes, exact.

Method: `ScatterElements(zeros[256], indices=pixels, updates=ones, reduction="add")` (opset 16+).
Every pixel adds exactly 1 to the bin of its value, so the counts are exact integers whatever
order the runtime adds them in. Memory is 8 bytes per pixel (an int32 index and an int32 one),
independent of the number of bins: no [pixels, 256] one-hot tensor is ever made, so a
3000 x 4000 scan costs ~96 MB, not 3 GB.

Counts are int32 while the scatter runs (at most 2**31 - 1 pixels: far above the package's
50 M-pixel `max_pixels`) and returned as int64.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from stages.core.graph_builder import GraphBuilder

BINS = 256


def histogram_256(g: GraphBuilder, x: str, name: str) -> str:
    """Counts of each value 0..255 in `x`.

    Args:
        g: the builder the nodes are added to.
        x: a uint8 tensor of any shape (dynamic dims allowed, may hold a single pixel).
        name: scope of the nodes, e.g. "wiwd/otsu/hist".

    Returns:
        the name of an int64 [256] tensor: element v = number of pixels equal to v; the counts
        sum to the number of elements of `x`.
    """
    flat = g.op("Reshape", [x, g.ints(f"{name}/flat_shape", [-1])], f"{name}/Flatten")
    index = g.op("Cast", [flat], f"{name}/Index", to=TensorProto.INT32)
    count_shape = g.op("Shape", [index], f"{name}/Shape")
    # ConstantOfShape: one int32 1 per pixel, the update each pixel adds to its bin.
    ones = g.op("ConstantOfShape", [count_shape], f"{name}/Ones", value=_int32_one())
    zeros = g.const(f"{name}/zeros", np.zeros(BINS, dtype=np.int32))
    counts = g.op("ScatterElements", [zeros, index, ones], f"{name}/ScatterAdd", axis=0, reduction="add")
    return g.op("Cast", [counts], f"{name}/Counts", to=TensorProto.INT64)


def _int32_one():
    """The 1-element int32 tensor `ConstantOfShape` repeats (its `value` attribute)."""
    return numpy_helper.from_array(np.array([1], dtype=np.int32), "one")
