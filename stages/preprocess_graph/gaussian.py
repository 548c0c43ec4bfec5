"""`scipy.ndimage.gaussian_filter` of a 2-D image as ONNX nodes, bit for bit.

Facts this relies on (SciPy 1.17, checked by tests/test_preprocess_graph_sigver.py):

- `gaussian_filter(x, sigma, mode, cval=0, truncate=4.0)` filters axis 0, then axis 1, each with
  `gaussian_filter1d`; an axis whose sigma is <= 1e-15 is skipped (not filtered at all).
- The 1-D kernel has radius `int(truncate * sigma + 0.5)` and weights `_gaussian_kernel1d`:
  `phi = exp(-0.5 / sigma**2 * x**2)` for x = -radius..radius, divided by `phi.sum()`
  (float64). It is exactly symmetric.
- For a symmetric kernel SciPy's C `NI_Correlate1D` computes, per output pixel i,
  `t = x[i] * w[0]; for j = radius, radius-1, ..., 1: t += (x[i-j] + x[i+j]) * w[j]`
  in float64 -- the OUTERMOST pair first (its loop runs `jj = -radius .. -1`). Adding the
  pairs in the other order differs in the last bit for about half the pixels.
- Each pass reads its input line as float64 and stores its result in the OUTPUT dtype: for a
  uint8 output the float64 value is converted by a C cast, i.e. truncated toward zero (the
  values are never negative: a Gaussian of non-negative pixels), and the second pass reads
  those truncated uint8 values. ONNX `Cast` double -> uint8 truncates the same way.
- Borders: "reflect" = d c b a | a b c d (numpy's "symmetric", repeated with period 2n when the
  line is shorter than the radius), "nearest" = a a a a | a b c d, "constant" = 0 0 0 0 | a b c d.

Every pixel therefore goes through the same float64 operations in the same order as in SciPy:
one padding per axis, then 2 * radius + 1 shifted Slices of the padded tensor combined by Add
and Mul nodes (separate nodes: no fused multiply-add can change the rounding).

The column pass is done on the transpose, as a row pass (onnxruntime copies and sums whole
contiguous rows faster than strided columns, and gathers whole rows far faster than single
elements). When the caller needs the result only on some lines (a zoom reads about two input
lines per output line), `positions` computes just those: the shifted copies are Gathers of
line indices instead of Slices. The arithmetic per pixel is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder

MODES = ("reflect", "nearest", "constant")
TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default, and what every caller uses
SKIP_SIGMA = 1e-15  # gaussian_filter leaves an axis with sigma <= this untouched
ONNX_TYPES = {np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.uint8): TensorProto.UINT8}


def kernel_radius(sigma: float, truncate: float = TRUNCATE) -> int:
    """SciPy's `gaussian_filter1d` radius: `int(truncate * sigma + 0.5)`."""
    return int(truncate * float(sigma) + 0.5)


def gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    """SciPy's `_gaussian_kernel1d(sigma, 0, radius)`: float64 [2 * radius + 1], sums to ~1.

    Same expression, same operation order, so the same bits (test: against SciPy's private
    function).
    """
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi_x = np.exp(-0.5 / sigma2 * x**2)
    return phi_x / phi_x.sum()


def gaussian_blur(
    g: GraphBuilder,
    x: str,
    sigma: float | Sequence[float],
    mode: str,
    out_dtype: type | np.dtype,
    name: str,
    positions: Sequence[np.ndarray | str | None] = (None, None),
    x_dtype: type | np.dtype | None = None,
) -> str:
    """`scipy.ndimage.gaussian_filter(x, sigma, mode=mode, cval=0, truncate=4.0, output=out_dtype)`.

    Args:
        g: the builder the nodes are added to.
        x: a [H, W] tensor (H, W dynamic, any size >= 1), float64 or uint8 (read as float64,
            exactly as SciPy reads its input lines).
        sigma: one sigma for both axes or a (rows, cols) pair; an axis with sigma <= 1e-15 is
            not filtered (SciPy's rule).
        mode: "reflect", "nearest" or "constant" (cval 0).
        out_dtype: np.float64 or np.uint8: the dtype of the result AND of the intermediate
            between the two passes (SciPy stores the first pass in the output array).
        name: scope of the nodes, e.g. "sigver/blur".
        positions: per axis, None (every line) or the int64 indices of the lines wanted, a
            constant array or the name of an int64 [n] tensor (values in 0..length - 1): the
            result is then only computed at those rows / columns (same arithmetic per pixel,
            so the same bits as the full filter sampled there), e.g. where a zoom reads.
        x_dtype: np.uint8 when x is known to be uint8 (else its dtype is not assumed). A pass
            over uint8 lines (x, or the uint8 intermediate) shifts and pairs them as int32, each
            sum of two pixels exact there as in float64, and widens only those sums: the same bits
            with less memory traffic (`correlate_symmetric`'s `integer_lines`).

    Returns:
        the name of the result tensor of `out_dtype`: [H, W], or [len(rows), len(cols)] for
        the axes sampled at `positions`.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out_type = ONNX_TYPES[np.dtype(out_dtype)]
    sigmas = [float(s) for s in np.ravel(sigma)] * (2 if np.ndim(sigma) == 0 else 1)
    if len(sigmas) != 2 or any(not s >= 0 for s in sigmas):
        raise ValueError(f"sigma must be one non-negative number or a (rows, cols) pair, got {sigma!r}")
    result = x
    uint8_lines = x_dtype is not None and np.dtype(x_dtype) == np.uint8
    for axis, axis_sigma in enumerate(sigmas):
        scope = f"{name}/{'row' if axis == 0 else 'col'}"
        wanted = (
            positions[axis]
            if positions[axis] is None or isinstance(positions[axis], str)
            else np.asarray(positions[axis], dtype=np.int64)
        )
        if axis_sigma <= SKIP_SIGMA:
            if wanted is not None:
                index = wanted if isinstance(wanted, str) else g.const(f"{scope}/positions", wanted)
                result = g.op("Gather", [result, index], f"{scope}/Sample", axis=axis)
            continue
        is_float64 = result != x and out_type == TensorProto.DOUBLE  # x's dtype is unknown here
        # The column pass runs on the transpose, as a row pass: in onnxruntime the shifted
        # copies and sums of whole contiguous rows are faster than along the inner axis (~20%
        # for the whole filter), and a uint8 intermediate is transposed before widening.
        lines = result if axis == 0 else g.op("Transpose", [result], f"{scope}/Transpose", perm=[1, 0])
        radius = kernel_radius(axis_sigma)
        if uint8_lines:  # read as int32; widened to float64 after each pair is summed (exact either way)
            line = g.op("Cast", [lines], f"{scope}/Int32", to=TensorProto.INT32)
        else:  # SciPy reads every line as float64 (a no-op cast after a float64 pass is skipped).
            line = lines if is_float64 else g.op("Cast", [lines], f"{scope}/Cast", to=TensorProto.DOUBLE)
        filtered = correlate_symmetric(
            g, line, 0, gaussian_kernel(axis_sigma, radius), mode, scope, wanted, integer_lines=uint8_lines
        )
        # ... and stores it in the output dtype (uint8: truncated, the next pass reads that).
        stored = filtered if out_type == TensorProto.DOUBLE else g.op("Cast", [filtered], f"{scope}/Store", to=out_type)
        uint8_lines = out_type == TensorProto.UINT8
        result = stored if axis == 0 else g.op("Transpose", [stored], f"{scope}/TransposeBack", perm=[1, 0])
    # Both sigmas ~0: SciPy copies the input into the output dtype.
    return g.op("Cast", [result], f"{name}/Store", to=out_type) if all(s <= SKIP_SIGMA for s in sigmas) else result


def correlate_symmetric(
    g: GraphBuilder,
    x: str,
    axis: int,
    weights: np.ndarray,
    mode: str,
    name: str,
    positions: np.ndarray | str | None = None,
    integer_lines: bool = False,
) -> str:
    """SciPy's `correlate1d` of a float64 [H, W] tensor with a symmetric float64 kernel along `axis`.

    Operation order (SciPy's symmetric branch, outermost pair first):
    `t = x[i] * w[r]; for j = r .. 1: t = t + (x[i-j] + x[i+j]) * w[r-j]`, w indexed 0..2r.
    Returns a float64 tensor of x's shape, or only the lines `positions` of it (int64: a
    constant array or the name of an [n] tensor).

    integer_lines: x is int32 holding uint8 values. Each `x[i-j] + x[i+j]` (at most 510) is then
    summed in int32 and cast to float64: the float64 SciPy adds, exactly, so the same bits, while
    the shifted copies are half as wide (the filter is bound by memory traffic on large pages).
    """
    radius = (len(weights) - 1) // 2
    if not np.array_equal(weights, weights[::-1]):
        raise ValueError("correlate_symmetric needs an exactly symmetric kernel")
    padded = pad_axis(g, x, axis, radius, mode, f"{name}/pad")

    def shifted(offset: int) -> str:
        if positions is None:
            return tap(g, padded, axis, offset, radius, name)
        if isinstance(positions, str):  # padded index of line i - r + offset
            index = g.op(
                "Add",
                [positions, g.scalar(f"{name}/tap{offset}/offset", offset, np.int64)],
                f"{name}/tap{offset}/index",
            )
        else:
            index = g.const(f"{name}/tap{offset}/index", positions + offset)
        return g.op("Gather", [padded, index], f"{name}/tap{offset}/Gather", axis=axis)

    def as_float64(value: str, scope: str) -> str:
        return g.op("Cast", [value], f"{scope}/Float64", to=TensorProto.DOUBLE) if integer_lines else value

    center = as_float64(shifted(radius), f"{name}/w0")
    total = g.op("Mul", [center, g.scalar(f"{name}/w0", weights[radius], np.float64)], f"{name}/w0/Mul")
    for j in range(radius, 0, -1):
        pair = as_float64(g.op("Add", [shifted(radius - j), shifted(radius + j)], f"{name}/w{j}/pair"), f"{name}/w{j}")
        weighted = g.op("Mul", [pair, g.scalar(f"{name}/w{j}", weights[radius - j], np.float64)], f"{name}/w{j}/Mul")
        total = g.op("Add", [total, weighted], f"{name}/w{j}/Add")
    return total


def tap(g: GraphBuilder, padded: str, axis: int, offset: int, radius: int, name: str) -> str:
    """The padded tensor shifted by `offset` along `axis`: elements offset .. offset + n - 1.

    The padded axis has n + 2 * radius elements, so the end is `offset - 2 * radius` counted from
    the end (or the very end for the last tap): constant starts/ends whatever n is.
    """
    end = offset - 2 * radius if offset < 2 * radius else np.iinfo(np.int64).max
    scope = f"{name}/tap{offset}"
    return g.op(
        "Slice",
        [padded, g.ints(f"{scope}/starts", [offset]), g.ints(f"{scope}/ends", [end]), g.ints(f"{scope}/axes", [axis])],
        f"{scope}/Slice",
    )


def pad_axis(g: GraphBuilder, x: str, axis: int, radius: int, mode: str, name: str) -> str:
    """x extended by `radius` elements on both ends of `axis`, as SciPy extends a line.

    "constant": ONNX Pad with 0. "nearest" and "reflect": a Gather of computed source indices
    (ONNX Pad's "reflect" is numpy's d c b | a b c d, not SciPy's, and fails when the line is
    shorter than the padding): index k in -radius .. n + radius - 1 reads
    nearest: clip(k, 0, n - 1); reflect: m = k mod 2n, then m if m < n else 2n - 1 - m.
    """
    if radius == 0:
        return x
    if mode == "constant":
        pads = [0, 0, 0, 0]
        pads[axis], pads[axis + 2] = radius, radius
        return g.op("Pad", [x, g.ints(f"{name}/pads", pads)], f"{name}/Pad", mode="constant")
    length = g.op("Shape", [x], f"{name}/Shape", start=axis, end=axis + 1)  # [n], int64
    n = g.op("Squeeze", [length, g.ints(f"{name}/squeeze_axes", [0])], f"{name}/n")
    end = g.op("Add", [n, g.scalar(f"{name}/radius", radius, np.int64)], f"{name}/end")
    index = g.op(
        "Range",
        [g.scalar(f"{name}/start", -radius, np.int64), end, g.scalar(f"{name}/step", 1, np.int64)],
        f"{name}/Range",
    )
    if mode == "nearest":
        last = g.op("Sub", [n, g.scalar(f"{name}/one", 1, np.int64)], f"{name}/last")
        source = g.op("Clip", [index, g.scalar(f"{name}/zero", 0, np.int64), last], f"{name}/Clip")
    else:
        source = reflect_index(g, index, n, name)
    return g.op("Gather", [x, source], f"{name}/Gather", axis=axis)


def reflect_index(g: GraphBuilder, index: str, n: str, name: str) -> str:
    """SciPy's "reflect" source index of int64 `index` on a line of `n` (int64 scalar) elements.

    Period 2n: m = index mod 2n (ONNX integer Mod with fmod=0 takes the divisor's sign, so
    0 <= m < 2n), then m on the way out and 2n - 1 - m on the way back.
    """
    period = g.op("Mul", [n, g.scalar(f"{name}/two", 2, np.int64)], f"{name}/period")
    m = g.op("Mod", [index, period], f"{name}/Mod", fmod=0)
    back = g.op(
        "Sub",
        [g.op("Sub", [period, g.scalar(f"{name}/one", 1, np.int64)], f"{name}/period_minus_one"), m],
        f"{name}/back",
    )
    forward = g.op("Less", [m, n], f"{name}/forward")
    return g.op("Where", [forward, m, back], f"{name}/Where")
