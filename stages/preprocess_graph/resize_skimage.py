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

Every index and weight is a build-time constant (the canvas and img_size are params); only
the window where the blur can differ from 0 (around the ink) is found at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from signature_onnx.preprocessing.arrays import resize_target
from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.crop import crop_window
from stages.preprocess_graph.gaussian import SKIP_SIGMA, gaussian_blur, kernel_radius


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


def antialiased_resize(
    g: GraphBuilder, image: str, in_shape: Sequence[int], out_shape: Sequence[int], name: str
) -> str:
    """scikit-image's anti-aliased resize of a uint8 [rows, cols] tensor of constant `in_shape`.

    The blur is computed only where it can differ from 0 and the zoom reads it (`blur_ink_window`):
    each of those pixels goes through exactly the operations of the full filter, so the result
    has the same bits.

    Returns:
        float64 [out rows, out cols], clipped as scikit-image clips (not yet cast to uint8).
    """
    factors = np.divide(in_shape, out_shape)
    sigma = [float(s) for s in np.maximum(0, (factors - 1) / 2)]
    shape = [zoom_output_length(i, o) for i, o in zip(in_shape, out_shape)]
    rows, cols = axis_sampling(in_shape[0], shape[0]), axis_sampling(in_shape[1], shape[1])
    row_lines, rows = read_lines(rows, in_shape[0])
    col_lines, cols = read_lines(cols, in_shape[1])
    blurred = blur_ink_window(g, image, in_shape, sigma, row_lines, col_lines, f"{name}/blur")
    zoomed = zoom_linear(g, blurred, rows, cols, f"{name}/zoom")
    return clip_warp_output(g, image, zoomed, f"{name}/clip")


def blur_ink_window(
    g: GraphBuilder,
    image: str,
    in_shape: Sequence[int],
    sigma: Sequence[float],
    row_lines: np.ndarray,
    col_lines: np.ndarray,
    name: str,
) -> str:
    """`gaussian_filter(image as float64, sigma, mode="constant")[row_lines][:, col_lines]`, cheaply.

    image: uint8 [rows, cols] of constant `in_shape`, 0 = no ink; row_lines, col_lines: sorted
    int64 constants. Returns float64 [len(row_lines), len(col_lines)].

    WHY it is exact and cheap: a pass along one axis never mixes lines of the other axis and
    maps a line of zeros to zeros (+0.0, as Pad writes); the constant mode pads with 0. So:
    - only the sampled rows within the row kernel's radius of an ink row can be nonzero
      (`reached_rows`); the others are Padded back as 0;
    - the row pass at those rows reads only the image rows within its radius of them: a Slice
      of those rows, whose zero padding stands for rows that are 0 anyway or lie outside;
    - and only on the columns holding ink (a Slice, Padded back with 0 to full width);
    - the column pass runs on the result at the sampled columns, as `gaussian_blur` does.
    Every computed pixel sees the same neighbours in the same order as in the full filter
    (`gaussian.py`); on a blank image the spans are the whole image.
    """
    radius = kernel_radius(sigma[0]) if sigma[0] > SKIP_SIGMA else 0
    first, end, sampled = reached_rows(g, image, row_lines, radius, f"{name}/reached")
    # The image rows [low, high) the row pass reads at `sampled`, clipped to the image.
    low = g.op(
        "Max",
        [
            g.op(
                "Sub",
                [
                    g.op(
                        "Slice",
                        [sampled, g.ints(f"{name}/first_start", [0]), g.ints(f"{name}/first_end", [1])],
                        f"{name}/FirstLine",
                    ),
                    g.ints(f"{name}/radius_low", [radius]),
                ],
                f"{name}/ReadFrom",
            ),
            g.ints(f"{name}/zero_low", [0]),
        ],
        f"{name}/Low",
    )
    high = g.op(
        "Min",
        [
            g.op(
                "Add",
                [
                    g.op(
                        "Slice",
                        [
                            sampled,
                            g.ints(f"{name}/last_start", [-1]),
                            g.ints(f"{name}/last_end", [np.iinfo(np.int64).max]),
                        ],
                        f"{name}/LastLine",
                    ),
                    g.ints(f"{name}/radius_high", [radius + 1]),
                ],
                f"{name}/ReadTo",
            ),
            g.ints(f"{name}/height", [in_shape[0]]),
        ],
        f"{name}/High",
    )
    col_begin, col_end = ink_span(g, image, 1, f"{name}/ink_cols")
    window = g.op(
        "Slice",
        [
            image,
            g.op("Concat", [low, col_begin], f"{name}/Starts", axis=0),
            g.op("Concat", [high, col_end], f"{name}/Ends", axis=0),
        ],
        f"{name}/Window",
    )
    source = g.op("Cast", [window], f"{name}/AsDouble", to=TensorProto.DOUBLE)  # preserve_range: float64
    in_window = g.op("Sub", [sampled, low], f"{name}/InWindow")  # the sampled rows' indices in the window
    row_pass = gaussian_blur(
        g, source, (sigma[0], 0.0), "constant", np.float64, f"{name}/row_pass", positions=(in_window, None)
    )
    zero = g.ints(f"{name}/zero", [0])
    width_after = g.op("Sub", [g.ints(f"{name}/width", [in_shape[1]]), col_end], f"{name}/WidthAfter")
    full_width = pad_2d(g, row_pass, [zero, col_begin, zero, width_after], f"{name}/full_width")  # [end - first, cols]
    col_pass = gaussian_blur(
        g, full_width, (0.0, sigma[1]), "constant", np.float64, f"{name}/col_pass", positions=(None, col_lines)
    )
    lines_after = g.op("Sub", [g.ints(f"{name}/line_count", [len(row_lines)]), end], f"{name}/LinesAfter")
    return pad_2d(g, col_pass, [first, zero, lines_after, zero], f"{name}/all_rows")


def reached_rows(g: GraphBuilder, image: str, row_lines: np.ndarray, radius: int, name: str) -> tuple[str, str, str]:
    """The sampled rows k whose row-pass value can be nonzero: ink_begin - radius <= row_lines[k] < ink_end + radius.

    Returns (first, end, sampled): int64 [1] bounds of that run of k (row_lines is sorted), and
    int64 [end - first] row_lines[first:end]. Never empty (Slice, Pad and the blur's nodes then
    always see at least one line): an extra row is computed like any other, exactly.
    """
    ink_begin, ink_end = ink_span(g, image, 0, f"{name}/ink_rows")
    lines = g.const(f"{name}/row_lines", row_lines)
    first = _count(
        g, lines, g.op("Sub", [ink_begin, g.ints(f"{name}/radius_low", [radius])], f"{name}/From"), f"{name}/first"
    )
    end = _count(g, lines, g.op("Add", [ink_end, g.ints(f"{name}/radius_high", [radius])], f"{name}/To"), f"{name}/end")
    first = g.op("Min", [first, g.ints(f"{name}/last_line", [len(row_lines) - 1])], f"{name}/First")
    end = g.op("Max", [end, g.op("Add", [first, g.ints(f"{name}/one", [1])], f"{name}/FirstPlusOne")], f"{name}/End")
    sampled = g.op("Slice", [lines, first, end], f"{name}/Sampled")
    return first, end, sampled


def ink_span(g: GraphBuilder, image: str, axis: int, name: str) -> tuple[str, str]:
    """[begin, end) of the lines along `axis` of uint8 [H, W] `image` holding a nonzero pixel.

    Both int64 [1] (Slice/Pad-ready). An image without a nonzero pixel gives the whole axis
    (ArgMax of all zeros: first 0, last n - 1).
    """
    line_max = g.reduce_max(image, [1 - axis], f"{name}/LineMax")  # keepdims: [H, 1] or [1, W]
    present = g.op(
        "Cast",
        [g.op("Greater", [line_max, g.scalar(f"{name}/zero", 0, np.uint8)], f"{name}/Present")],
        f"{name}/PresentInt",
        to=TensorProto.INT32,
    )
    flat = g.op("Reshape", [present, g.ints(f"{name}/flat", [-1])], f"{name}/Flat")
    begin = g.op("ArgMax", [flat], f"{name}/Begin", axis=0, keepdims=1, select_last_index=0)
    last = g.op("ArgMax", [flat], f"{name}/Last", axis=0, keepdims=1, select_last_index=1)
    return begin, g.op("Add", [last, g.ints(f"{name}/one", [1])], f"{name}/End")


def _count(g: GraphBuilder, lines: str, bound: str, name: str) -> str:
    """int64 [1]: how many of the sorted int64 [n] `lines` are < the int64 [1] `bound`."""
    below = g.op("Cast", [g.op("Less", [lines, bound], f"{name}/Below")], f"{name}/BelowInt", to=TensorProto.INT64)
    return g.op("ReduceSum", [below], f"{name}/Count", keepdims=1)


def pad_2d(g: GraphBuilder, x: str, pads: Sequence[str], name: str) -> str:
    """x padded with 0 by four int64 [1] tensors (rows before, cols before, rows after, cols after)."""
    return g.op("Pad", [x, g.op("Concat", list(pads), f"{name}/Pads", axis=0)], f"{name}/Pad", mode="constant")


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
    return lines, AxisSampling(
        first=remap[sampling.first], second=remap[sampling.second], w0=sampling.w0, w1=sampling.w1
    )


def zoom_linear(g: GraphBuilder, x: str, rows: AxisSampling, cols: AxisSampling, name: str) -> str:
    """SciPy's order-1, grid-constant zoom of float64 [H, W] `x` with constant sampling plans.

    t = 0.0 + (v00 wr0) wc0 + (v01 wr0) wc1 + (v10 wr1) wc0 + (v11 wr1) wc1, left to right.
    """
    padded = g.op("Pad", [x, g.ints(f"{name}/pads", [1, 1, 1, 1])], f"{name}/Pad", mode="constant")
    wr = [g.const(f"{name}/wr{i}", w[:, None]) for i, w in enumerate((rows.w0, rows.w1))]
    wc = [g.const(f"{name}/wc{i}", w[None, :]) for i, w in enumerate((cols.w0, cols.w1))]
    row_lines = [
        g.op("Gather", [padded, g.const(f"{name}/rows{i}", idx)], f"{name}/rows{i}/Gather", axis=0)
        for i, idx in enumerate((rows.first, rows.second))
    ]
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
    """scikit-image's `_clip_warp_output` for mode "constant", cval 0: uint8 `source`, float64 `out`.

    lo, hi = source.min(), source.max(); when 0 < lo and out.min() <= 0 <= out.max(), lo = 0.
    """
    # The range of the uint8 image, then as float64: the same values as its float64 copy's.
    lo = g.op(
        "Cast",
        [g.op("ReduceMin", [source], f"{name}/ImageMinUint8", keepdims=0)],
        f"{name}/ImageMin",
        to=TensorProto.DOUBLE,
    )
    hi = g.op(
        "Cast",
        [g.op("ReduceMax", [source], f"{name}/ImageMaxUint8", keepdims=0)],
        f"{name}/ImageMax",
        to=TensorProto.DOUBLE,
    )
    zero = g.scalar(f"{name}/cval", 0.0, np.float64)
    cval_outside = g.op("Less", [zero, lo], f"{name}/CvalOutside")
    out_lo = g.op("ReduceMin", [out], f"{name}/OutMin", keepdims=0)
    out_hi = g.op("ReduceMax", [out], f"{name}/OutMax", keepdims=0)
    cval_inside_out = g.op(
        "And",
        [g.op("LessOrEqual", [out_lo, zero], f"{name}/OutLow"), g.op("LessOrEqual", [zero, out_hi], f"{name}/OutHigh")],
        f"{name}/CvalInOut",
    )
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
