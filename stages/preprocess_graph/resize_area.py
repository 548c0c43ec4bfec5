"""OpenCV's `cv2.resize(src, (cols, rows), interpolation=cv2.INTER_AREA)` of a uint8 image as
standard ONNX nodes, bit-exact, for a dynamic source size.

OpenCV facts this relies on (modules/imgproc/src/resize.cpp, checked against the installed
opencv-python-headless 5.0 on random and real pages, see tests/test_preprocess_graph_rgb.py):

- `inv_scale = (double)dst / src` and `scale = 1. / inv_scale`, per axis, in double.
- A same-size resize is a copy. It is also what the "fast" path below gives for factors 1 x 1.
- Only when `scale_x >= 1 and scale_y >= 1` is "true area" used; then
  * `is_area_fast` (`|scale - cvRound(scale)| < DBL_EPSILON` on both axes, i.e. integer factors
    kx, ky): each output is the integer sum of its kx * ky source values; for 2 x 2 it is
    `(sum + 2) >> 2` (ResizeAreaFastVec, rounds halves up), otherwise
    `saturate_cast<uchar>(sum * (1.f / (kx * ky)))`, a float32 product rounded half to even;
  * otherwise the area tables (`computeResizeAreaTab`, all in double, weights cast to float):
    per output index d, cell = min(scale, src - d * scale), taps at consecutive source
    indices: a partial lead tap (weight (ceil(d*scale) - d*scale) / cell, when > 1e-3), full
    taps (weight 1 / cell) and a partial trail tap; the row pass accumulates
    `buf += S * alpha` in float32, tap by tap in index order, then the column pass
    `sum += beta * buf` in float32, row by row in index order, and
    `saturate_cast<uchar>(sum)` rounds half to even.
- Otherwise (some axis enlarges; OpenCV: "emulated using some variant of bilinear
  interpolation") the generic 2-tap linear resize runs with area-mode coefficients, per axis:
  `s = floor(d * scale)`, `f = (float)((d + 1) - (s + 1) * inv_scale)`, `f = f <= 0 ? 0 :
  f - floor(f)`; columns only: `s >= src - 1` gives s = src - 1, f = 0. Weights are fixed
  point: `saturate_cast<short>((1 - f) * 2048)` and `saturate_cast<short>(f * 2048)` (float32,
  half to even). The row pass is the exact integer `S[s] * a0 + S[s + 1] * a1`; the column
  pass (rows s, s + 1 clipped to the image) is
  `(((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2` (VResizeLinear and its
  SIMD twin VResizeLinearVec_32s8u compute the same).
- The IPP HAL resize is skipped for INTER_AREA (it is not exact, `useIPP_NotExact` is off):
  results are the same with `cv2.ipp.setUseIPP(False)` and `cv2.setUseOptimized(False)`.

Every float32 step is one IEEE operation in ONNX (Mul, then Add: never fused), so the graph
makes the same roundings in the same order. The sequential sums run in `Scan` loops whose
bodies use only their own inputs (no outer-scope names), over a tap table padded with
zero-weight taps: `x + 0 * v == x` exactly, so padding never changes a sum. The path OpenCV
takes is the one that runs: an `If` whose branches read the outer graph's tensors (the
renamings of `preprocess_model` and `onnx.compose` follow names into subgraphs).

Cost, for a page of N = H x W x 3 bytes: the area path moves the columns first (a uint8
Transpose, N), gathers (taps x cols) columns of H x 3 values (about N) and sums them in float
per tap, then moves and gathers the cols x H x 3 sums once more for the vertical taps; the
linear path does its horizontal pass on all rows when H <= rows, else on the 2 x rows picked
rows (at most 2 N values). Everything else is output-sized times the taps. Peak RSS for a
4000 x 3000 page: about 250 MB above the runtime's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stages.core.graph_builder import GraphBuilder

# cv::resize: a partial tap is kept only when its share of a source pixel exceeds this.
AREA_TAP_MIN = 1e-3
# INTER_RESIZE_COEF_SCALE: fixed-point weights of the linear path are multiples of 1/2048.
COEF_SCALE = 2048.0
# DBL_EPSILON: OpenCV's tolerance for "the factor is an integer".
DBL_EPSILON = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Axis:
    """One axis of the resize (all tensors named in the graph).

    src_i / src_d: the source length, int64 / float64 scalars (>= 1).
    dst: the output length (a build-time constant).
    inv_scale / scale: float64 scalars, dst / src and 1 / (dst / src), as OpenCV computes them.
    """

    src_i: str
    src_d: str
    dst: int
    inv_scale: str
    scale: str


@dataclass(frozen=True)
class TapTable:
    """Taps of one axis for the area path: output d reads source index[t, d] with weight[t, d].

    index: int64 [T, dst], in 0..src-1. weight: float32 [T, dst] (0 on padding taps).
    T is dynamic: the largest tap count of any output index.
    """

    index: str
    weight: str


def resize_area(g: GraphBuilder, image: str, rows: int, cols: int, scope: str) -> str:
    """uint8 [H, W, C] (H, W >= 1, C static or not) -> uint8 [rows, cols, C], equal to
    `cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)`."""
    y, x = _axes(g, image, rows, cols, scope)
    downscale = g.op(
        "And", [_at_least_one(g, y, f"{scope}/rows"), _at_least_one(g, x, f"{scope}/cols")], f"{scope}/downscale/And"
    )
    # One path runs. Each branch reads only `image` from the outer graph and computes its own
    # sizes (onnxruntime warns when an optimization would rename a subgraph's outer read).
    area, linear = g.branch(), g.branch()
    area_out = area_path(area, image, *_axes(area, image, rows, cols, f"{scope}/area/source"), f"{scope}/area")
    linear_out = linear_path(
        linear, image, *_axes(linear, image, rows, cols, f"{scope}/linear/source"), f"{scope}/linear"
    )
    return g.if_else(downscale, (area, area_out), (linear, linear_out), TensorProto.UINT8, f"{scope}/If")


# ---- sizes and scales ------------------------------------------------------------------------


def _axes(g: GraphBuilder, image: str, rows: int, cols: int, scope: str) -> tuple[Axis, Axis]:
    """(rows axis, columns axis) of a uint8 [H, W, C] image resized to [rows, cols, C]."""
    shape = g.op("Shape", [image], f"{scope}/Shape")
    return _axis(g, shape, 0, rows, f"{scope}/rows"), _axis(g, shape, 1, cols, f"{scope}/cols")


def _axis(g: GraphBuilder, shape: str, dim: int, dst: int, scope: str) -> Axis:
    """The source length of dimension `dim` and OpenCV's double scales for output length `dst`."""
    src_i = g.op("Gather", [shape, g.scalar(f"{scope}/dim", dim, np.int64)], f"{scope}/src/Gather", axis=0)
    src_d = g.op("Cast", [src_i], f"{scope}/src/Cast", to=TensorProto.DOUBLE)
    inv_scale = g.op("Div", [g.scalar(f"{scope}/dst", dst, np.float64), src_d], f"{scope}/inv_scale/Div")
    # Reciprocal, not Div(1, x): onnxruntime's DivMulFusion rewrites Div(1, x) -> Mul(y, .) into
    # Div(y, x) when the Div has one consumer, which rounds differently (y * (1 / x) != y / x).
    scale = g.op("Reciprocal", [inv_scale], f"{scope}/scale/Reciprocal")
    return Axis(src_i, src_d, dst, inv_scale, scale)


def _at_least_one(g: GraphBuilder, axis: Axis, scope: str) -> str:
    """bool scalar: scale >= 1 (this axis shrinks or keeps its length)."""
    return g.op(
        "GreaterOrEqual",
        [axis.scale, g.scalar(f"{scope}/scale_one", 1.0, np.float64)],
        f"{scope}/shrinks/GreaterOrEqual",
    )


def _integer_factor(g: GraphBuilder, axis: Axis, scope: str) -> tuple[str, str]:
    """(bool scalar |scale - cvRound(scale)| < DBL_EPSILON, float64 scalar cvRound(scale)).

    cvRound of a double rounds half to even, as ONNX Round does."""
    rounded = g.op("Round", [axis.scale], f"{scope}/iscale/Round")
    error = g.op("Abs", [g.op("Sub", [axis.scale, rounded], f"{scope}/iscale/Sub")], f"{scope}/iscale/Abs")
    exact = g.op("Less", [error, g.scalar(f"{scope}/dbl_epsilon", DBL_EPSILON, np.float64)], f"{scope}/iscale/Less")
    return exact, rounded


def _positions(g: GraphBuilder, axis: Axis, scope: str) -> str:
    """float64 [dst]: the output indices 0..dst-1 (exact in double)."""
    return g.const(f"{scope}/positions", np.arange(axis.dst, dtype=np.float64))


# ---- the area path (scale >= 1 on both axes) -------------------------------------------------


def area_path(g: GraphBuilder, image: str, y: Axis, x: Axis, scope: str) -> str:
    """uint8 [H, W, C] -> uint8 [rows, cols, C]: OpenCV's area resize (fast or with tables),
    for scales >= 1 on both axes.

    As OpenCV: first the horizontal sums (per source row, over the column taps), then the
    vertical sums of those rows (over the row taps). Each pass gathers whole blocks along the
    outer axis of a 2-D transposed copy (columns, then rows, first: onnxruntime transposes a
    matrix fast, an [H, W, C] image's two outer axes slowly), so every Gather copies runs of
    C x H or cols x C values and each tap's weight broadcasts over a whole row of the slice the
    Scan adds."""
    fast_y, iscale_y = _integer_factor(g, y, f"{scope}/rows")
    fast_x, iscale_x = _integer_factor(g, x, f"{scope}/cols")
    fast = g.op("And", [fast_y, fast_x], f"{scope}/fast/And")
    row_taps = area_taps(g, y, fast, f"{scope}/rows")
    col_taps = area_taps(g, x, fast, f"{scope}/cols")
    columns = columns_outer(g, image, x, f"{scope}/cols")  # [W, C*H]
    picked = g.op("Gather", [columns, col_taps.index], f"{scope}/cols/Gather", axis=0)  # [T, cols, C*H]
    row_sums = weighted_scan(g, picked, TensorProto.UINT8, col_taps.weight, f"{scope}/cols/scan")  # [cols, C*H]
    height = g.op("Reshape", [y.src_i, g.ints(f"{scope}/rows/height_shape", [1])], f"{scope}/rows/height")
    source_rows = rows_outer(g, row_sums, height, f"{scope}/rows")  # [H, cols*C]
    stacked = g.op("Gather", [source_rows, row_taps.index], f"{scope}/rows/Gather", axis=0)  # [T, rows, cols*C]
    sums = weighted_scan(g, stacked, TensorProto.FLOAT, row_taps.weight, f"{scope}/rows/scan")  # [rows, cols*C]
    sums = g.op("Reshape", [sums, g.ints(f"{scope}/rows/image", [y.dst, x.dst, -1])], f"{scope}/rows/Image")
    return _area_to_uint8(g, sums, fast, iscale_y, iscale_x, scope)


def columns_outer(g: GraphBuilder, image: str, x: Axis, scope: str) -> str:
    """uint8 [n, W, C] -> [W, C*n]: column w holds its C planes of n values (a 2-D Transpose)."""
    scope = f"{scope}/columns_outer"
    minus_one = g.ints(f"{scope}/minus_one", [-1])
    matrix = g.op("Reshape", [image, g.ints(f"{scope}/matrix", [0, -1])], f"{scope}/Matrix")  # [n, W*C]
    columns = g.op("Transpose", [matrix], f"{scope}/Transpose", perm=[1, 0])  # [W*C, n]
    width = g.op("Reshape", [x.src_i, minus_one], f"{scope}/width")
    shape = g.op("Concat", [width, minus_one], f"{scope}/shape", axis=0)
    return g.op("Reshape", [columns, shape], f"{scope}/Columns")


def rows_outer(g: GraphBuilder, sums: str, count: str, scope: str) -> str:
    """[cols, C*n] (as `columns_outer` lays out) -> [n, cols*C], i.e. [n, cols, C] (a 2-D Transpose).

    count: int64 [1] holding n."""
    scope = f"{scope}/rows_outer"
    shape = g.op("Concat", [g.ints(f"{scope}/minus_one", [-1]), count], f"{scope}/shape", axis=0)
    matrix = g.op("Reshape", [sums, shape], f"{scope}/Matrix")  # [cols*C, n]
    return g.op("Transpose", [matrix], f"{scope}/Transpose", perm=[1, 0])


def area_taps(g: GraphBuilder, axis: Axis, fast: str, scope: str) -> TapTable:
    """`computeResizeAreaTab` for one axis as a padded [T, dst] table (double math, float weights).

    For d in 0..dst-1: fsx1 = d * scale, fsx2 = fsx1 + scale, cell = min(scale, src - fsx1),
    sx2 = min(floor(fsx2), src - 1), sx1 = min(ceil(fsx1), sx2); taps: sx1 - 1 (when
    sx1 - fsx1 > 1e-3, weight (sx1 - fsx1) / cell), sx1..sx2-1 (weight 1 / cell), sx2 (when
    fsx2 - sx2 > 1e-3, weight min(fsx2 - sx2, 1, cell) / cell). On the fast path (integer
    factors) the full taps weigh exactly 1 (an integer sum) and the scale comes at the end.
    """
    f64 = np.float64
    positions = _positions(g, axis, scope)
    fsx1 = g.op("Mul", [positions, axis.scale], f"{scope}/fsx1/Mul")
    fsx2 = g.op("Add", [fsx1, axis.scale], f"{scope}/fsx2/Add")
    remaining = g.op("Sub", [axis.src_d, fsx1], f"{scope}/remaining/Sub")
    cell = g.op("Min", [axis.scale, remaining], f"{scope}/cell/Min")
    last = g.op("Sub", [axis.src_d, g.scalar(f"{scope}/one", 1.0, f64)], f"{scope}/last/Sub")
    sx2 = g.op("Min", [g.op("Floor", [fsx2], f"{scope}/sx2/Floor"), last], f"{scope}/sx2/Min")
    sx1 = g.op("Min", [g.op("Ceil", [fsx1], f"{scope}/sx1/Ceil"), sx2], f"{scope}/sx1/Min")
    lead_gap = g.op("Sub", [sx1, fsx1], f"{scope}/lead/Sub")
    trail_gap = g.op("Sub", [fsx2, sx2], f"{scope}/trail/Sub")
    tiny = g.scalar(f"{scope}/tap_min", AREA_TAP_MIN, f64)
    has_lead = g.op("Greater", [lead_gap, tiny], f"{scope}/lead/Greater")
    has_trail = g.op("Greater", [trail_gap, tiny], f"{scope}/trail/Greater")
    weights = area_weights(g, cell, lead_gap, trail_gap, fast, scope)
    counts = _tap_counts(g, has_lead, has_trail, sx1, sx2, scope)
    return _tap_table(g, axis, counts, weights, scope)


def area_weights(
    g: GraphBuilder, cell: str, lead_gap: str, trail_gap: str, fast: str, scope: str
) -> tuple[str, str, str]:
    """float32 [dst] x 3: (lead, full, trail) weights, computed in double and cast as OpenCV does.

    lead = (float)(lead_gap / cell), full = float(1.0 / cell),
    trail = (float)(min(min(trail_gap, 1.), cell) / cell); all exactly 1 on the fast path."""
    f64, f32 = np.float64, TensorProto.FLOAT
    one = g.scalar(f"{scope}/weights/one", 1.0, f64)
    lead = g.op("Cast", [g.op("Div", [lead_gap, cell], f"{scope}/lead/Div")], f"{scope}/lead/Cast", to=f32)
    full = g.op("Cast", [g.op("Reciprocal", [cell], f"{scope}/full/Reciprocal")], f"{scope}/full/Cast", to=f32)
    clipped = g.op("Min", [trail_gap, one, cell], f"{scope}/trail/Min")
    trail = g.op("Cast", [g.op("Div", [clipped, cell], f"{scope}/trail/Div")], f"{scope}/trail/Cast", to=f32)
    # Integer factor k: no lead tap, k full taps, except the last output index whose last tap
    # (sx2 clipped to src - 1) is a "trail" of a whole pixel; the fast path weighs every tap 1.
    unit = g.scalar(f"{scope}/weights/fast", 1.0, np.float32)
    return tuple(
        g.op("Where", [fast, unit, w], f"{scope}/{part}/fast")
        for part, w in (("lead", lead), ("full", full), ("trail", trail))
    )


@dataclass(frozen=True)
class _Counts:
    """int64 [dst] tap counts of one axis: lead (0/1), lead + full, total; start index; max T."""

    lead: str
    lead_full: str
    total: str
    start: str
    taps: str


def _tap_counts(g: GraphBuilder, has_lead: str, has_trail: str, sx1: str, sx2: str, scope: str) -> _Counts:
    """How many taps each output index has, where they start, and the largest count (scalar)."""
    i64 = TensorProto.INT64
    lead = g.op("Cast", [has_lead], f"{scope}/lead/Cast_count", to=i64)
    trail = g.op("Cast", [has_trail], f"{scope}/trail/Cast_count", to=i64)
    full = g.op("Cast", [g.op("Sub", [sx2, sx1], f"{scope}/full/Sub")], f"{scope}/full/Cast_count", to=i64)
    lead_full = g.op("Add", [lead, full], f"{scope}/lead_full/Add")
    total = g.op("Add", [lead_full, trail], f"{scope}/total/Add")
    start = g.op("Sub", [g.op("Cast", [sx1], f"{scope}/start/Cast", to=i64), lead], f"{scope}/start/Sub")
    taps = g.op("ReduceMax", [total], f"{scope}/taps/ReduceMax", keepdims=0)
    return _Counts(lead, lead_full, total, start, taps)


def _tap_table(g: GraphBuilder, axis: Axis, counts: _Counts, weights: tuple[str, str, str], scope: str) -> TapTable:
    """[T, dst] source indices (start + t, clipped into the image) and weights (0 past the count)."""
    i64 = np.int64
    t = g.op(
        "Range",
        [g.scalar(f"{scope}/t/start", 0, i64), counts.taps, g.scalar(f"{scope}/t/step", 1, i64)],
        f"{scope}/t/Range",
    )
    t = g.op("Unsqueeze", [t, g.ints(f"{scope}/t/axes", [1])], f"{scope}/t/Unsqueeze")  # [T, 1]
    last = g.op("Sub", [axis.src_i, g.scalar(f"{scope}/index/one", 1, i64)], f"{scope}/index/last")
    raw = g.op("Add", [counts.start, t], f"{scope}/index/Add")
    index = g.op("Clip", [raw, g.scalar(f"{scope}/index/zero", 0, i64), last], f"{scope}/index/Clip")
    lead, full, trail = weights
    zero = g.scalar(f"{scope}/weight/zero", 0.0, np.float32)
    tail = g.op(
        "Where", [g.op("Less", [t, counts.total], f"{scope}/weight/in_total"), trail, zero], f"{scope}/weight/trail"
    )
    body = g.op(
        "Where", [g.op("Less", [t, counts.lead_full], f"{scope}/weight/in_full"), full, tail], f"{scope}/weight/full"
    )
    weight = g.op(
        "Where", [g.op("Less", [t, counts.lead], f"{scope}/weight/in_lead"), lead, body], f"{scope}/weight/lead"
    )
    return TapTable(index, weight)


def _area_to_uint8(g: GraphBuilder, sums: str, fast: str, iscale_y: str, iscale_x: str, scope: str) -> str:
    """float32 [rows, cols, C] sums -> uint8, by the rounding of the path OpenCV takes (only that
    rounding runs: an If).

    Area tables: saturate_cast<uchar>(sum) (half to even). Fast, 2 x 2: (sum + 2) >> 2 (halves
    up; sum + 2 is an exact small integer, times 0.25 exact, then floor). Fast, other factors:
    cvRound(sum * (1.f / area)) with area = kx * ky and a float32 division and product."""
    table = g.branch()
    table_value = table.op("Round", [sums], f"{scope}/table/Round")
    integer = g.branch()
    two = integer.scalar(f"{scope}/two", 2.0, np.float64)
    is_two = integer.op(
        "And",
        [
            integer.op("Equal", [iscale_y, two], f"{scope}/two_rows/Equal"),
            integer.op("Equal", [iscale_x, two], f"{scope}/two_cols/Equal"),
        ],
        f"{scope}/two/And",
    )
    half = integer.branch()
    half_value = quarter_half_up(half, sums, f"{scope}/half_up")
    other = integer.branch()
    area = other.op(
        "Cast", [other.op("Mul", [iscale_y, iscale_x], f"{scope}/area/Mul")], f"{scope}/area/Cast", to=TensorProto.FLOAT
    )
    inverse = other.op("Reciprocal", [area], f"{scope}/area/Reciprocal")  # 1.f / area (see _axis: no Div(1, x))
    scaled = other.op("Round", [other.op("Mul", [sums, inverse], f"{scope}/fast/Mul")], f"{scope}/fast/Round")
    f32 = TensorProto.FLOAT
    fast_value = integer.if_else(is_two, (half, half_value), (other, scaled), f32, f"{scope}/two_by_two/If")
    value = g.if_else(fast, (integer, fast_value), (table, table_value), f32, f"{scope}/rounding/If")
    return _saturate_uint8(g, value, scope)


def quarter_half_up(g: GraphBuilder, sums: str, scope: str) -> str:
    """float32 integral sums (>= 0, < 2**22) -> (sum + 2) >> 2, i.e. sum / 4 rounded half up.

    Exact: sum + 2 is a small integer, times 0.25 is exact, Floor is the shift."""
    f32 = np.float32
    shifted = g.op("Add", [sums, g.scalar(f"{scope}/two", 2.0, f32)], f"{scope}/Add")
    return g.op(
        "Floor", [g.op("Mul", [shifted, g.scalar(f"{scope}/quarter", 0.25, f32)], f"{scope}/Mul")], f"{scope}/Floor"
    )


def _saturate_uint8(g: GraphBuilder, value: str, scope: str) -> str:
    """float32 integral values -> uint8, clamped to 0..255 (saturate_cast)."""
    f32 = np.float32
    clipped = g.op(
        "Clip",
        [value, g.scalar(f"{scope}/u8/lo", 0.0, f32), g.scalar(f"{scope}/u8/hi", 255.0, f32)],
        f"{scope}/u8/Clip",
    )
    return g.op("Cast", [clipped], f"{scope}/u8/Cast", to=TensorProto.UINT8)


def weighted_scan(g: GraphBuilder, stacked: str, dtype: int, weight: str, scope: str) -> str:
    """float32 [n, m] sum over taps, in tap order: acc = acc + float(stacked[t]) * weight[t] for t = 0..T-1.

    stacked: [T, n, m] of `dtype` (TensorProto.UINT8 or FLOAT); weight: float32 [T, n], one
    weight per tap and row, broadcast over the row's m values. A Scan keeps the order (one Mul
    rounding, then one Add rounding per tap), with a body that reads only its own inputs. The
    accumulator starts at 0 (0 + x == x, as OpenCV's first `buf += ...`)."""
    first = g.op("Gather", [stacked, g.scalar(f"{scope}/first/index", 0, np.int64)], f"{scope}/first/Gather", axis=0)
    per_row = g.op("Unsqueeze", [weight, g.ints(f"{scope}/weight/axes", [2])], f"{scope}/weight/Unsqueeze")  # [T, n, 1]
    # The accumulator has one slice's shape; a zero-tap table cannot occur (T >= 1: the last
    # output index always has a tap).
    zeros = g.op(
        "ConstantOfShape",
        [g.op("Shape", [first], f"{scope}/slice/Shape")],
        f"{scope}/zeros/ConstantOfShape",
        value=numpy_helper.from_array(np.zeros(1, np.float32)),
    )
    body = _scan_body(g.opset, dtype, f"{scope}/body")
    return g.op("Scan", [zeros, stacked, per_row], f"{scope}/Scan", body=body, num_scan_inputs=2)


def _scan_body(opset: int, dtype: int, scope: str) -> onnx.GraphProto:
    """The Scan body: (acc float32, slice of `dtype`, weight float32) -> acc + float(slice) * weight."""
    body = GraphBuilder(opset)
    acc, pixels, weight = f"{scope}/acc", f"{scope}/pixels", f"{scope}/weight"
    values = body.op("Cast", [pixels], f"{scope}/Cast", to=TensorProto.FLOAT)
    product = body.op("Mul", [values, weight], f"{scope}/Mul")
    body.op("Add", [acc, product], f"{scope}/Add", output=f"{scope}/acc_out")
    inputs = [
        helper.make_tensor_value_info(acc, TensorProto.FLOAT, None),
        helper.make_tensor_value_info(pixels, dtype, None),
        helper.make_tensor_value_info(weight, TensorProto.FLOAT, None),
    ]
    outputs = [helper.make_tensor_value_info(f"{scope}/acc_out", TensorProto.FLOAT, None)]
    return helper.make_graph(body.nodes, scope, inputs, outputs)


# ---- the linear path (some scale < 1) --------------------------------------------------------


@dataclass(frozen=True)
class LinearTaps:
    """Two taps per output index: int64 [dst] source indices (clipped), uint32 [dst] weights
    (fixed point, a0 + a1 == 2048 up to rounding). Every value of this path is >= 0, so it runs
    in uint32, where ONNX's BitShift is OpenCV's arithmetic shift."""

    index0: str
    index1: str
    weight0: str
    weight1: str


def linear_taps(g: GraphBuilder, axis: Axis, clamp_last: bool, scope: str) -> LinearTaps:
    """OpenCV's area-mode coefficients of the generic linear resize, for one axis.

    s = floor(d * scale); f = (float)((d + 1) - (s + 1) * inv_scale); f = f <= 0 ? 0 : f - floor(f);
    columns (`clamp_last`): s >= src - 1 -> s = src - 1, f = 0 (rows keep s and f, their rows
    are clipped instead). Weights: round_half_even((1.f - f) * 2048.f), round_half_even(f * 2048.f).
    """
    f64, f32 = np.float64, np.float32
    positions = _positions(g, axis, scope)
    one = g.scalar(f"{scope}/one", 1.0, f64)
    s = g.op("Floor", [g.op("Mul", [positions, axis.scale], f"{scope}/s/Mul")], f"{scope}/s/Floor")
    reach = g.op("Mul", [g.op("Add", [s, one], f"{scope}/f/s_plus_one"), axis.inv_scale], f"{scope}/f/Mul")
    f = g.op(
        "Cast",
        [g.op("Sub", [g.op("Add", [positions, one], f"{scope}/f/d_plus_one"), reach], f"{scope}/f/Sub")],
        f"{scope}/f/Cast",
        to=TensorProto.FLOAT,
    )
    zero = g.scalar(f"{scope}/f/zero", 0.0, f32)
    frac = g.op("Sub", [f, g.op("Floor", [f], f"{scope}/f/Floor")], f"{scope}/f/frac")
    f = g.op("Where", [g.op("LessOrEqual", [f, zero], f"{scope}/f/LessOrEqual"), zero, frac], f"{scope}/f/Where")
    last = g.op("Sub", [axis.src_d, one], f"{scope}/last")
    if clamp_last:
        at_end = g.op("GreaterOrEqual", [s, last], f"{scope}/end/GreaterOrEqual")
        s = g.op("Where", [at_end, last, s], f"{scope}/end/s")
        f = g.op("Where", [at_end, zero, f], f"{scope}/end/f")
    s1 = g.op("Min", [g.op("Add", [s, one], f"{scope}/s1/Add"), last], f"{scope}/s1/Min")
    s0 = g.op("Min", [s, last], f"{scope}/s0/Min")
    index0 = g.op("Cast", [s0], f"{scope}/index0/Cast", to=TensorProto.INT64)
    index1 = g.op("Cast", [s1], f"{scope}/index1/Cast", to=TensorProto.INT64)
    weight0, weight1 = fixed_point_weights(g, f, scope)
    return LinearTaps(index0, index1, weight0, weight1)


def fixed_point_weights(g: GraphBuilder, f: str, scope: str) -> tuple[str, str]:
    """float32 [dst] fractions -> uint32 [dst] (saturate_cast<short>((1.f - f) * 2048), ... (f * 2048))."""
    f32 = np.float32
    scale = g.scalar(f"{scope}/coef_scale", COEF_SCALE, f32)
    rest = g.op("Sub", [g.scalar(f"{scope}/coef_one", 1.0, f32), f], f"{scope}/w0/Sub")
    w0 = g.op("Round", [g.op("Mul", [rest, scale], f"{scope}/w0/Mul")], f"{scope}/w0/Round")
    w1 = g.op("Round", [g.op("Mul", [f, scale], f"{scope}/w1/Mul")], f"{scope}/w1/Round")
    u32 = TensorProto.UINT32
    return g.op("Cast", [w0], f"{scope}/w0/Cast", to=u32), g.op("Cast", [w1], f"{scope}/w1/Cast", to=u32)


def linear_path(g: GraphBuilder, image: str, y: Axis, x: Axis, scope: str) -> str:
    """uint8 [H, W, C] -> uint8 [rows, cols, C]: OpenCV's INTER_AREA when some axis enlarges.

    The horizontal pass is exact integer math, so it may run before or after picking the two
    source rows of each output row; the cheaper order runs (an If): on all H rows when
    H <= rows (work H x cols), on the 2 x rows picked rows otherwise (work rows x W <= the page)."""
    ty = linear_taps(g, y, clamp_last=False, scope=f"{scope}/rows")
    tx = linear_taps(g, x, clamp_last=True, scope=f"{scope}/cols")
    few_rows = g.op("LessOrEqual", [y.src_i, g.scalar(f"{scope}/rows/count", y.dst, np.int64)], f"{scope}/few_rows")
    orders = {}
    for order, rows_first in (("columns_first", False), ("rows_first", True)):
        branch = g.branch()
        top, bottom = (
            _rows_first(branch, image, x, ty, tx, f"{scope}/{order}")
            if rows_first
            else _columns_first(branch, image, x, ty, tx, f"{scope}/{order}")
        )
        orders[order] = (branch, _linear_column_pass(branch, top, bottom, ty, y, x, f"{scope}/{order}"))
    return g.if_else(few_rows, orders["columns_first"], orders["rows_first"], TensorProto.UINT8, f"{scope}/If")


def _columns_first(g: GraphBuilder, image: str, x: Axis, ty: LinearTaps, tx: LinearTaps, scope: str) -> tuple[str, str]:
    """uint8 [H, W, C] -> uint32 [rows, cols*C] x 2: horizontal pass on every row, then the
    top / bottom rows picked."""
    sums = _linear_row_pass(g, image, x, tx, f"{scope}/horizontal")
    top = g.op("Gather", [sums, ty.index0], f"{scope}/top/Gather", axis=0)
    bottom = g.op("Gather", [sums, ty.index1], f"{scope}/bottom/Gather", axis=0)
    return top, bottom


def _rows_first(g: GraphBuilder, image: str, x: Axis, ty: LinearTaps, tx: LinearTaps, scope: str) -> tuple[str, str]:
    """uint8 [H, W, C] -> uint32 [rows, cols*C] x 2: the top / bottom rows picked, then the
    horizontal pass."""
    outputs = []
    for part, index in (("top", ty.index0), ("bottom", ty.index1)):
        rows = g.op("Gather", [image, index], f"{scope}/{part}/Gather", axis=0)
        outputs.append(_linear_row_pass(g, rows, x, tx, f"{scope}/{part}"))
    return outputs[0], outputs[1]


def _linear_row_pass(g: GraphBuilder, rows: str, x: Axis, tx: LinearTaps, scope: str) -> str:
    """uint8 [n, W, C] -> uint32 [n, cols*C]: S[s] * a0 + S[s + 1] * a1 (exact, <= 255 * 2048 * 2),
    on the columns moved first (`columns_outer`)."""
    u32 = TensorProto.UINT32
    columns = columns_outer(g, rows, x, scope)  # [W, C*n]
    shape = g.ints(f"{scope}/weight_shape", [-1, 1])
    terms = []
    for part, index, weight in (("left", tx.index0, tx.weight0), ("right", tx.index1, tx.weight1)):
        picked = g.op(
            "Cast", [g.op("Gather", [columns, index], f"{scope}/{part}/Gather", axis=0)], f"{scope}/{part}/Cast", to=u32
        )
        terms.append(
            g.op("Mul", [picked, g.op("Reshape", [weight, shape], f"{scope}/{part}/a")], f"{scope}/{part}/Mul")
        )
    sums = g.op("Add", terms, f"{scope}/Add")  # [cols, C*n]
    return rows_outer(g, sums, g.op("Shape", [rows], f"{scope}/count", start=0, end=1), scope)


def _linear_column_pass(g: GraphBuilder, top: str, bottom: str, ty: LinearTaps, y: Axis, x: Axis, scope: str) -> str:
    """uint32 [rows, cols*C] x 2 -> uint8 [rows, cols, C]:
    ((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2 (every value < 2**28)."""
    shape = g.ints(f"{scope}/beta_shape", [-1, 1])
    b0 = g.op("Reshape", [ty.weight0, shape], f"{scope}/b0/Reshape")
    b1 = g.op("Reshape", [ty.weight1, shape], f"{scope}/b1/Reshape")
    terms = [_shifted_product(g, top, b0, f"{scope}/top"), _shifted_product(g, bottom, b1, f"{scope}/bottom")]
    total = g.op(
        "Add",
        [g.op("Add", terms, f"{scope}/terms/Add"), g.scalar(f"{scope}/round", 2, np.uint32)],
        f"{scope}/round/Add",
    )
    value = _shift_right(g, total, 2, f"{scope}/shift2")
    image = g.op("Reshape", [value, g.ints(f"{scope}/image", [y.dst, x.dst, -1])], f"{scope}/Image")
    return g.op("Cast", [image], f"{scope}/u8/Cast", to=TensorProto.UINT8)


def _shifted_product(g: GraphBuilder, row: str, beta: str, scope: str) -> str:
    """uint32: (beta * (row >> 4)) >> 16, as VResizeLinear (and v_mul_hi of its SIMD twin) does."""
    high = _shift_right(g, row, 4, f"{scope}/shift4")
    return _shift_right(g, g.op("Mul", [beta, high], f"{scope}/Mul"), 16, f"{scope}/shift16")


def _shift_right(g: GraphBuilder, x: str, bits: int, scope: str) -> str:
    """uint32 x >> bits."""
    return g.op("BitShift", [x, g.scalar(f"{scope}/bits", bits, np.uint32)], f"{scope}/BitShift", direction="RIGHT")
