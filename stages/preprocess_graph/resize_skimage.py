"""The "sigver" style's `resize_image` as ONNX nodes: scikit-image's anti-aliased resize, bit for bit.

The package's `sigver.resize_image(img, size)` on the inverted canvas (uint8, a build-time
shape) is `skimage.transform.resize(img, shape, mode="constant", anti_aliasing=True,
preserve_range=True).astype(np.uint8)` (its `antialiased_resize` is the same computation on a
smaller window) followed by `arrays.keep_middle`. scikit-image 0.26 / SciPy 1.17 compute:

1. float64 image (preserve_range);
2. factors = in_shape / out_shape; sigma = max(0, (factors - 1) / 2);
   `scipy.ndimage.gaussian_filter(image, sigma, mode="grid-constant", cval=0)` -- the same as
   mode "constant" (see `gaussian.py`);
3. `scipy.ndimage.zoom(blurred, 1 / factors, order=1, mode="grid-constant", cval=0,
   grid_mode=True)`: output shape round(in * (1 / factor)); per axis zoom = in / out and for
   output index k the input coordinate cc = (k + 0.5) * zoom - 0.5 (float64, in that order),
   start = floor(cc), x = cc - start, weights w0 = 1 - x, w1 = 1 - w0 (SciPy sets the last
   spline weight to 1 minus the others; here 1 - (1 - x) == x on every grid measured anyway).
   SciPy's C loop then sums the 2 x 2 neighbours in the order (start_r, start_c),
   (start_r, start_c + 1), (start_r + 1, start_c), (start_r + 1, start_c + 1), each term
   (value * w_row) * w_col, into t = 0.0; a neighbour outside the image is cval = 0
   (grid-constant), i.e. the image padded with one 0 on each side;
4. `_clip_warp_output`: clip to [image.min(), image.max()], where the low end becomes cval = 0
   when 0 lies outside the image's range but inside the output's (mode "constant");
5. `.astype(np.uint8)`: truncation toward zero (ONNX Cast does the same for values >= 0);
6. keep_middle: a constant window along the longer axis.

Every index and weight is a build-time constant (the canvas and img_size are params).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from signature_onnx.preprocessing.arrays import resize_target
from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.crop import crop_window
from stages.preprocess_graph.gaussian import gaussian_blur


@dataclass(frozen=True)
class AxisSampling:
    """SciPy's order-1 zoom along one axis, in the coordinates of the input padded by one 0.

    first: int64 [out], padded index of the lower neighbour (start + 1, clipped into the padding).
    second: int64 [out], padded index of the upper neighbour.
    w0, w1: float64 [out], the weights of the lower and upper neighbour.
    """

    first: np.ndarray
    second: np.ndarray
    w0: np.ndarray
    w1: np.ndarray


def zoom_output_length(length_in: int, length_out: int) -> int:
    """scipy.ndimage.zoom's output length for scikit-image's zoom factor 1 / (in / out)."""
    return int(round(length_in * (1 / (length_in / length_out))))


def axis_sampling(length_in: int, length_out: int) -> AxisSampling:
    """Indices and weights of SciPy's grid_mode order-1 zoom from `length_in` to `length_out`."""
    zoom = np.divide(length_in, length_out)  # float64, as scipy.ndimage.zoom computes it
    k = np.arange(length_out, dtype=np.float64)
    cc = (k + 0.5) * zoom - 0.5
    start = np.floor(cc)
    x = cc - start
    w0 = 1.0 - x
    w1 = 1.0 - w0
    # Padded coordinates: index i of the image is i + 1; 0 and length_in + 1 are the cval 0.
    first = np.clip(start.astype(np.int64) + 1, 0, length_in + 1)
    second = np.clip(start.astype(np.int64) + 2, 0, length_in + 1)
    return AxisSampling(first=first, second=second, w0=w0, w1=w1)


def antialiased_resize(g: GraphBuilder, image: str, in_shape: Sequence[int], out_shape: Sequence[int], name: str) -> str:
    """scikit-image's anti-aliased resize of a uint8 [rows, cols] tensor of constant `in_shape`.

    The blur is computed only on the rows and columns the zoom reads (about 2 per output line
    instead of all input lines): each of those pixels goes through exactly the operations of
    the full filter, so the result has the same bits at a third of the cost.

    Returns:
        float64 [out rows, out cols], clipped as scikit-image clips (not yet cast to uint8).
    """
    factors = np.divide(in_shape, out_shape)
    sigma = np.maximum(0, (factors - 1) / 2)
    shape = [zoom_output_length(i, o) for i, o in zip(in_shape, out_shape)]
    rows, cols = axis_sampling(in_shape[0], shape[0]), axis_sampling(in_shape[1], shape[1])
    row_lines, rows = read_lines(rows, in_shape[0])
    col_lines, cols = read_lines(cols, in_shape[1])
    source = g.op("Cast", [image], f"{name}/AsDouble", to=TensorProto.DOUBLE)
    blurred = gaussian_blur(g, source, [float(s) for s in sigma], "constant", np.float64, f"{name}/blur", positions=(row_lines, col_lines))
    zoomed = zoom_linear(g, blurred, rows, cols, f"{name}/zoom")
    return clip_warp_output(g, source, zoomed, f"{name}/clip")


def read_lines(sampling: AxisSampling, length: int) -> tuple[np.ndarray, AxisSampling]:
    """The image lines a zoom axis reads, and the sampling re-indexed onto just those lines.

    Returns:
        lines: int64 [n], sorted image indices read by `sampling` (padding excluded);
        the same sampling whose indices point into those n lines padded by one 0 on each side.
    """
    padded = np.concatenate([sampling.first, sampling.second])
    lines = np.unique(padded[(padded >= 1) & (padded <= length)]) - 1
    remap = np.zeros(length + 2, dtype=np.int64)  # padded image index -> padded reduced index
    remap[lines + 1] = np.arange(1, len(lines) + 1)
    remap[length + 1] = len(lines) + 1
    return lines, AxisSampling(first=remap[sampling.first], second=remap[sampling.second], w0=sampling.w0, w1=sampling.w1)


def zoom_linear(g: GraphBuilder, x: str, rows: AxisSampling, cols: AxisSampling, name: str) -> str:
    """SciPy's order-1, grid-constant zoom of float64 [H, W] `x` with constant sampling plans.

    t = 0.0 + (v00 wr0) wc0 + (v01 wr0) wc1 + (v10 wr1) wc0 + (v11 wr1) wc1, left to right.
    """
    padded = g.op("Pad", [x, g.ints(f"{name}/pads", [1, 1, 1, 1])], f"{name}/Pad", mode="constant")
    wr = [g.const(f"{name}/wr{i}", w[:, None]) for i, w in enumerate((rows.w0, rows.w1))]
    wc = [g.const(f"{name}/wc{i}", w[None, :]) for i, w in enumerate((cols.w0, cols.w1))]
    row_lines = [g.op("Gather", [padded, g.const(f"{name}/rows{i}", idx)], f"{name}/rows{i}/Gather", axis=0) for i, idx in enumerate((rows.first, rows.second))]
    col_index = [g.const(f"{name}/cols{i}", idx) for i, idx in enumerate((cols.first, cols.second))]
    total = g.scalar(f"{name}/zero", 0.0, np.float64)
    for a in range(2):
        for b in range(2):
            scope = f"{name}/t{a}{b}"
            value = g.op("Gather", [row_lines[a], col_index[b]], f"{scope}/Gather", axis=1)
            term = g.op("Mul", [g.op("Mul", [value, wr[a]], f"{scope}/MulRow"), wc[b]], f"{scope}/MulCol")
            total = g.op("Add", [total, term], f"{scope}/Add")
    return total


def clip_warp_output(g: GraphBuilder, source: str, out: str, name: str) -> str:
    """scikit-image's `_clip_warp_output` for mode "constant", cval 0 (float64 tensors).

    lo, hi = source.min(), source.max(); when 0 < lo and out.min() <= 0 <= out.max(), lo = 0.
    """
    lo = g.op("ReduceMin", [source], f"{name}/ImageMin", keepdims=0)
    hi = g.op("ReduceMax", [source], f"{name}/ImageMax", keepdims=0)
    zero = g.scalar(f"{name}/cval", 0.0, np.float64)
    cval_outside = g.op("Less", [zero, lo], f"{name}/CvalOutside")
    out_lo = g.op("ReduceMin", [out], f"{name}/OutMin", keepdims=0)
    out_hi = g.op("ReduceMax", [out], f"{name}/OutMax", keepdims=0)
    cval_inside_out = g.op("And", [g.op("LessOrEqual", [out_lo, zero], f"{name}/OutLow"), g.op("LessOrEqual", [zero, out_hi], f"{name}/OutHigh")], f"{name}/CvalInOut")
    preserve = g.op("And", [cval_outside, cval_inside_out], f"{name}/PreserveCval")
    low = g.op("Where", [preserve, zero, lo], f"{name}/Low")
    return g.op("Clip", [out, low, hi], f"{name}/Clip")


def resize_image(g: GraphBuilder, image: str, in_shape: Sequence[int], size: Sequence[int], name: str) -> str:
    """`sigver.resize_image(image, size)` of a uint8 [rows, cols] tensor of constant `in_shape`.

    Returns:
        uint8 [size[0], size[1]]: the resized image truncated to uint8, its middle kept.
    """
    resize_rows, resize_cols, crop_axis, start = resize_target(tuple(in_shape), tuple(size))
    resized = antialiased_resize(g, image, in_shape, (resize_rows, resize_cols), name)
    as_uint8 = g.op("Cast", [resized], f"{name}/AsUint8", to=TensorProto.UINT8)  # truncation, values >= 0
    starts = [start, 0] if crop_axis == 0 else [0, start]
    return crop_window(g, as_uint8, starts, list(size), f"{name}/keep_middle")
