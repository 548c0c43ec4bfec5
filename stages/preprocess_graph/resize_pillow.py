"""Pillow's BILINEAR resize of a uint8 ("L") image as ONNX nodes, bit for bit.

Pillow >= 7 (libImaging/Resample.c, `ImagingResample` with box = the whole image) resizes
with a convolution, one pass per axis (order below); each pass is:

- `precompute_coeffs(in, 0, in, out, bilinear)`: scale = in / out; filterscale = max(scale, 1);
  support = 1.0 * filterscale; ksize = ceil(support) * 2 + 1; for output index xx:
  center = (xx + 0.5) * scale; ss = 1 / filterscale;
  xmin = max((int)(center - support + 0.5), 0); xmax = min((int)(center + support + 0.5), in)
  - xmin; w[x] = filter((x + xmin - center + 0.5) * ss) for x < xmax, with
  filter(t) = 1 - |t| for |t| < 1 else 0; then w[x] /= sum(w) (when the sum is not 0);
- `normalize_coeffs_8bpc`: k = (int)(0.5 + w * 2**22) (w >= 0; (int)(-0.5 + w * 2**22) for
  w < 0), PRECISION_BITS = 32 - 8 - 2 = 22;
- `ImagingResample{Horizontal,Vertical}_8bpc`: ss = 2**21 + sum_x in[xmin + x] * k[x] in int,
  stored as clip8(ss): 0 if ss <= 0, 255 if ss >= 2**30, else ss >> 22. The first pass's
  result is a uint8 image, read by the second pass.
- Pass order (Pillow 13; older Pillow always ran horizontal first): the VERTICAL pass runs
  first iff the height shrinks and in_rows - out_rows > 2 * (in_cols - out_cols), otherwise
  horizontal first. This rule was found by measurement, not read in Pillow's source: it
  matches Pillow 13.0 on every one of 1159 grid shapes (square and 1:2, 2:1, 1:3, 3:1, 5:7
  images, both sides of the boundary, ties included: the comparison is strict) and 398 random
  shapes up to 400 x 400 (the order is told apart by comparing both orders with Pillow on
  random 8-bit images); tests/test_preprocess_graph_wiwd.py checks it on shapes on both sides.
  The SigNet resize (952, 1360) -> (170, 243) runs horizontal first.

The coefficients (plain Python float64, the same C expressions in the same order) and the
source indices are computed at build time: the sizes are build-time constants. The graph
applies them with Gather ([out, ksize, W] taps; the horizontal pass on the transposed image),
int32 Mul and ReduceSum (integers: exact in any summation order; |ss| < 2**31 since the
weights are >= 0 and sum to ~2**22), then
Max(0) / Min(2**30 - 1) and an integer Div by 2**22, which is clip8.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder

PRECISION_BITS = 32 - 8 - 2
BILINEAR_SUPPORT = 1.0


def bilinear_filter(x: float) -> float:
    """Pillow's `bilinear_filter`: 1 - |x| on (-1, 1), else 0."""
    x = -x if x < 0.0 else x
    return 1.0 - x if x < 1.0 else 0.0


def precompute_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's `precompute_coeffs` (box 0..in_size) for BILINEAR.

    Returns:
        xmin: int64 [out_size], first input index of each output's window;
        weights: float64 [out_size, ksize], zeros past each window's end (Pillow's layout).
    """
    scale = float(in_size - 0) / out_size
    filterscale = max(scale, 1.0)
    support = BILINEAR_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    xmins = np.zeros(out_size, dtype=np.int64)
    weights = np.zeros((out_size, ksize), dtype=np.float64)
    for xx in range(out_size):
        center = 0 + (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) and Python's int() both truncate toward 0
        xmax = min(int(center + support + 0.5), in_size) - xmin
        row = [bilinear_filter((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in row:  # C adds them one by one, in this order
            total += w
        for x, w in enumerate(row):
            weights[xx, x] = w / total if total != 0.0 else w
        xmins[xx] = xmin
    return xmins, weights


def normalize_coeffs_8bpc(weights: np.ndarray) -> np.ndarray:
    """Pillow's `normalize_coeffs_8bpc`: float64 weights -> int32 fixed point with 22 bits."""
    out = np.zeros(weights.shape, dtype=np.int32)
    for index, w in np.ndenumerate(weights):
        out[index] = int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS))
    return out


def taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices int64 [out, ksize] (clipped into the input; their weight is 0 past a
    window's end) and int32 fixed-point weights [out, ksize] of one axis."""
    xmins, weights = precompute_coeffs(in_size, out_size)
    index = np.minimum(xmins[:, None] + np.arange(weights.shape[1])[None, :], in_size - 1)
    return index.astype(np.int64), normalize_coeffs_8bpc(weights)


def resize_axis(g: GraphBuilder, x: str, axis: int, in_size: int, out_size: int, name: str) -> str:
    """One 8bpc pass of a uint8 [H, W] tensor along `axis` (1 horizontal, 0 vertical) -> uint8.

    The horizontal pass runs as a vertical pass of the transposed image: its taps then sit on
    the middle axis, so the weighting and the sum run over long contiguous rows (in onnxruntime
    ~2.5x faster than summing an innermost axis of ksize elements). Integer sums: the order of
    the additions cannot change the result.
    """
    if axis == 1:
        columns = g.op("Transpose", [x], f"{name}/Columns", perm=[1, 0])
        filtered = resize_rows(g, columns, in_size, out_size, name)
        return g.op("Transpose", [filtered], f"{name}/Back", perm=[1, 0])
    return resize_rows(g, x, in_size, out_size, name)


def resize_rows(g: GraphBuilder, x: str, in_size: int, out_size: int, name: str) -> str:
    """Pillow's 8bpc pass along axis 0 of a uint8 [in_size, W] tensor -> uint8 [out_size, W]."""
    index, fixed = taps(in_size, out_size)
    gathered = g.op("Gather", [x, g.const(f"{name}/index", index)], f"{name}/Gather", axis=0)  # [out, ksize, W]
    wide = g.op("Cast", [gathered], f"{name}/Cast", to=TensorProto.INT32)
    products = g.op("Mul", [wide, g.const(f"{name}/weights", fixed[:, :, None])], f"{name}/Mul")
    summed = g.op("ReduceSum", [products, g.ints(f"{name}/tap_axis", [1])], f"{name}/Sum", keepdims=0)
    rounded = g.op(
        "Add", [summed, g.const(f"{name}/half", np.array(1 << (PRECISION_BITS - 1), dtype=np.int32))], f"{name}/Round"
    )
    # Max/Min rather than Clip: Clip wants 0-d bounds and the builder's constants are [1].
    low = g.op("Max", [rounded, g.const(f"{name}/low", np.array(0, dtype=np.int32))], f"{name}/ClipLow")
    clipped = g.op(
        "Min",
        [low, g.const(f"{name}/high", np.array((1 << (PRECISION_BITS + 8)) - 1, dtype=np.int32))],
        f"{name}/Clip8",
    )
    shifted = g.op(
        "Div", [clipped, g.const(f"{name}/unit", np.array(1 << PRECISION_BITS, dtype=np.int32))], f"{name}/Shift"
    )  # >= 0: == >> 22
    return g.op("Cast", [shifted], f"{name}/ToUint8", to=TensorProto.UINT8)


def resize_bilinear(g: GraphBuilder, x: str, in_size: Sequence[int], out_size: Sequence[int], name: str) -> str:
    """`Image.fromarray(x).resize((out_cols, out_rows), Image.BILINEAR)` of a uint8 [rows, cols] tensor.

    Args:
        g: the builder the nodes are added to.
        x: uint8 [in_size[0], in_size[1]] (a build-time size).
        in_size, out_size: (rows, cols).
        name: scope, e.g. "wiwd/resize".

    Returns:
        the name of the uint8 [out_size[0], out_size[1]] result. A pass whose size does not
        change is skipped, as Pillow skips it (its coefficients would be the identity anyway).
    """
    passes = [(1, f"{name}/horizontal"), (0, f"{name}/vertical")]
    if vertical_first(in_size, out_size):
        passes.reverse()
    result = x
    for axis, scope in passes:
        if in_size[axis] != out_size[axis]:
            result = resize_axis(g, result, axis, in_size[axis], out_size[axis], scope)
    return result


def vertical_first(in_size: Sequence[int], out_size: Sequence[int]) -> bool:
    """Pillow 13's pass order (module docstring): vertical first iff the height shrinks and
    in_rows - out_rows > 2 * (in_cols - out_cols)."""
    shrink_rows = in_size[0] - out_size[0]
    return shrink_rows > 0 and shrink_rows > 2 * (in_size[1] - out_size[1])
