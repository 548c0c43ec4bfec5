"""The package's `arrays.center_on_canvas` as ONNX nodes: ink box, center of mass, placement.

Given a uint8 gray image [H, W] (H, W dynamic) and a bool ink mask of the same shape, the
package (both signature styles) does, per axis (rows, then columns):

- box = [first ink line, last ink line) -- the LAST line is excluded (`gray[min:max]`), so
  ink on a single row or column gives an empty box, which the package refuses;
- center = int(mean(ink indices) - first). numpy's mean of int64 indices is the float64 sum S
  (exact: every partial sum is an integer < 2**53) divided by the count n, correctly rounded.
  An image side is < 2**26 (the package refuses more than 5e7 pixels), so the quotient's
  rounding error is < 2**26 * 2**-53 = 2**-27 ~ 7.5e-9, while a non-integer S / n lies at least
  1 / n >= 2e-8 from every integer: the rounding never crosses one. Subtracting the integer
  `first` (<= the mean, same binade or lower) is exact. So
  int(mean - first) == (S - first * n) // n, which is computed here in int64 (no rounding);
- a box longer than the canvas keeps its middle: from (L - C) // 2, C lines, placed at 0;
  otherwise start = C // 2 - center, moved back by the overflow (start = min(start, C - L)) and
  clamped at 0. Both cases are start = max(min(C // 2 - center, C - L), 0) with
  kept = min(L, C) lines read from first + max(L - C, 0) // 2.

The canvas is then one Slice (the kept part of the box, dynamic starts and ends) and one Pad
with white paper (255, dynamic pads): memory is O(canvas) whatever the image size. Lines are
counted with ReduceSum of the int32 mask.

Also here: `paper_above` (pixels brighter than a threshold become 255, the last step of
`center_on_canvas` and all of `remove_background`) and `blank_unless` (all-zero output for a
refused image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder

PAPER = 255  # white paper in the package's gray images


@dataclass(frozen=True)
class AxisExtent:
    """Where the ink lies along one axis (all int64 scalars).

    first: index of the first line holding ink (0 when there is none).
    length: last ink line - first (0 for no ink or ink on a single line).
    center: (sum of the ink pixels' indices - first * count) // count (0 when there is no ink).
    size: the image's length along this axis.
    """

    first: str
    length: str
    center: str
    size: str


@dataclass(frozen=True)
class AxisPlacement:
    """How one canvas axis shows the box (all int64 [1] tensors, ready to Concat for Slice/Pad).

    begin, end: the image lines [begin, end) pasted on the canvas.
    before, after: paper lines before and after them (before + (end - begin) + after = C).
    nonempty: bool scalar, True when the box has at least one line on this axis.
    """

    begin: str
    end: str
    before: str
    after: str
    nonempty: str


@dataclass(frozen=True)
class Canvas:
    """image: uint8 [canvas rows, canvas cols], white 255 outside the box.
    valid: bool scalar, False when the ink box is empty on either axis (no ink, one line).
    """

    image: str
    valid: str


def axis_extent(g: GraphBuilder, ink: str, axis: int, name: str) -> AxisExtent:
    """First ink line, box length and center of mass of a bool [H, W] ink mask along `axis` (0 rows, 1 cols)."""
    as_int = g.op("Cast", [ink], f"{name}/AsInt", to=TensorProto.INT32)
    per_line32 = g.op("ReduceSum", [as_int, g.ints(f"{name}/other_axis", [1 - axis])], f"{name}/PerLine", keepdims=0)
    per_line = g.op("Cast", [per_line32], f"{name}/PerLine64", to=TensorProto.INT64)  # [n]
    present = g.op(
        "Cast",
        [g.op("Greater", [per_line, g.scalar(f"{name}/zero", 0, np.int64)], f"{name}/HasInk")],
        f"{name}/HasInkInt",
        to=TensorProto.INT32,
    )
    # ArgMax returns the first (select_last_index=0) or last (=1) index of the max, 1 = "has ink".
    first = g.op("ArgMax", [present], f"{name}/First", axis=0, keepdims=0, select_last_index=0)
    last = g.op("ArgMax", [present], f"{name}/Last", axis=0, keepdims=0, select_last_index=1)
    # On a mask without ink both ArgMax see only zeros (first 0, last n - 1): the span is
    # multiplied by "any ink" (0 or 1) so an empty mask has length 0.
    any_ink = g.op(
        "Cast", [g.reduce_max(present, [0], f"{name}/AnyInk")], f"{name}/AnyInk64", to=TensorProto.INT64
    )  # [1]
    span = g.op("Sub", [last, first], f"{name}/Span")
    length = g.op("Mul", [span, g.op("Squeeze", [any_ink], f"{name}/AnyInkScalar")], f"{name}/Length")
    size = g.op("Squeeze", [g.op("Shape", [per_line], f"{name}/Shape")], f"{name}/Size")
    center = _center_of_mass(g, per_line, first, size, name)
    return AxisExtent(first=first, length=length, center=center, size=size)


def _center_of_mass(g: GraphBuilder, per_line: str, first: str, size: str, name: str) -> str:
    """(sum_i i * per_line[i] - first * count) // count, int64; the count is floored at 1 so an
    empty mask divides by 1, not 0 (integer division by zero would abort the runtime)."""
    # Range needs 0-d start and step (a [1] constant is refused by ONNX's reference runtime).
    index = g.op(
        "Range",
        [g.scalar(f"{name}/range_start", 0, np.int64), size, g.scalar(f"{name}/range_step", 1, np.int64)],
        f"{name}/Index",
    )
    weighted = g.op("ReduceSum", [g.op("Mul", [per_line, index], f"{name}/Weighted")], f"{name}/IndexSum", keepdims=0)
    count = g.op("ReduceSum", [per_line], f"{name}/Count", keepdims=0)
    offset = g.op("Sub", [weighted, g.op("Mul", [first, count], f"{name}/FirstTimesCount")], f"{name}/Offset")
    safe_count = g.op("Max", [count, g.scalar(f"{name}/one", 1, np.int64)], f"{name}/SafeCount")
    return g.op("Div", [offset, safe_count], f"{name}/Center")  # both >= 0: truncation == floor


def place_axis(g: GraphBuilder, extent: AxisExtent, canvas_len: int, name: str) -> AxisPlacement:
    """`arrays.place_on_axis` for a canvas axis of `canvas_len` (a build-time constant).

    start = max(min(C // 2 - center, C - L), 0); kept = min(L, C); the box is read from
    first + max(L - C, 0) // 2 (the middle of a box longer than the canvas). An empty box
    (a refused image, whose output is blanked anyway) is read as 1 line, so that Slice and Pad
    never see an empty or negative size.
    """
    c = canvas_len
    wanted = g.op("Sub", [g.scalar(f"{name}/half", c // 2, np.int64), extent.center], f"{name}/Wanted")
    room = g.op("Sub", [g.scalar(f"{name}/canvas_len", c, np.int64), extent.length], f"{name}/Room")  # C - L
    start = g.op(
        "Max",
        [g.op("Min", [wanted, room], f"{name}/NoOverflow"), g.scalar(f"{name}/zero", 0, np.int64)],
        f"{name}/Start",
    )
    kept = g.op("Min", [extent.length, g.scalar(f"{name}/canvas_len_keep", c, np.int64)], f"{name}/Kept")
    kept = g.op("Max", [kept, g.scalar(f"{name}/one_line", 1, np.int64)], f"{name}/KeptSafe")
    start = g.op(
        "Min",
        [start, g.op("Sub", [g.scalar(f"{name}/canvas_len_start", c, np.int64), kept], f"{name}/LastStart")],
        f"{name}/StartSafe",
    )
    excess = g.op(
        "Max",
        [g.op("Neg", [room], f"{name}/Excess"), g.scalar(f"{name}/zero_excess", 0, np.int64)],
        f"{name}/ExcessPos",
    )
    skip = g.op("Div", [excess, g.scalar(f"{name}/two", 2, np.int64)], f"{name}/Skip")  # (L - C) // 2, >= 0
    begin = g.op("Add", [extent.first, skip], f"{name}/Begin")
    end = g.op("Add", [begin, kept], f"{name}/End")
    after = g.op(
        "Sub",
        [g.op("Sub", [g.scalar(f"{name}/canvas_len_after", c, np.int64), start], f"{name}/AfterStart"), kept],
        f"{name}/After",
    )
    nonempty = g.op("Greater", [extent.length, g.scalar(f"{name}/zero_length", 0, np.int64)], f"{name}/NonEmpty")
    return AxisPlacement(
        begin=as_1d(g, begin, f"{name}/begin"),
        end=as_1d(g, end, f"{name}/end"),
        before=as_1d(g, start, f"{name}/before"),
        after=as_1d(g, after, f"{name}/after"),
        nonempty=nonempty,
    )


def as_1d(g: GraphBuilder, x: str, name: str) -> str:
    """A one-element int64 tensor as shape [1] (whether it was [] or [1])."""
    return g.op("Reshape", [x, g.ints(f"{name}/shape", [1])], f"{name}/Reshape")


def center_on_canvas(g: GraphBuilder, gray: str, ink: str, canvas_size: Sequence[int], name: str) -> Canvas:
    """`arrays.center_on_canvas` without its final threshold step (see `paper_above`).

    Args:
        g: the builder the nodes are added to.
        gray: uint8 [H, W] (H, W >= 1, dynamic), white paper = 255.
        ink: bool [H, W], True on ink pixels.
        canvas_size: (rows, cols) of the canvas, build-time constants.
        name: scope, e.g. "wiwd/canvas".

    Returns:
        `Canvas`: uint8 [rows, cols] image (255 outside the box) and a bool validity scalar
        (False when the box is empty on either axis: no ink, or ink on a single row or column).
        Applying `paper_above(image, threshold)` then gives the package's result.
    """
    rows = place_axis(g, axis_extent(g, ink, 0, f"{name}/rows"), canvas_size[0], f"{name}/rows/place")
    cols = place_axis(g, axis_extent(g, ink, 1, f"{name}/cols"), canvas_size[1], f"{name}/cols/place")
    starts = g.op("Concat", [rows.begin, cols.begin], f"{name}/starts", axis=0)
    ends = g.op("Concat", [rows.end, cols.end], f"{name}/ends", axis=0)
    box = g.op("Slice", [gray, starts, ends, g.ints(f"{name}/axes", [0, 1])], f"{name}/Box")
    pads = g.op("Concat", [rows.before, cols.before, rows.after, cols.after], f"{name}/pads", axis=0)
    paper = g.scalar(f"{name}/paper", PAPER, np.uint8)  # Pad's constant_value must be 0-d
    image = g.op("Pad", [box, pads, paper], f"{name}/Image", mode="constant")
    valid = g.op("And", [rows.nonempty, cols.nonempty], f"{name}/Valid")
    return Canvas(image=image, valid=valid)


def paper_above(g: GraphBuilder, image: str, threshold: str, name: str) -> str:
    """Pixels strictly brighter than `threshold` become 255 (`img[img > threshold] = 255`).

    Args:
        image: uint8 tensor, any shape.
        threshold: float64 scalar (finite), compared as numpy compares a uint8 array with it.

    For an integer pixel p, p > t <=> p > floor(t); so the comparison is made in uint8 against
    floor(t) clipped to 0..255 (every pixel is brighter than a negative t; none than t >= 255).
    No float copy of the image is made (memory: 1 byte per pixel for the mask).

    Returns:
        uint8 tensor of the same shape.
    """
    floor = g.op("Floor", [threshold], f"{name}/Floor")
    below_zero = g.op("Less", [floor, g.scalar(f"{name}/zero", 0.0, np.float64)], f"{name}/BelowZero")
    clipped = g.op(
        "Min",
        [
            g.op("Max", [floor, g.scalar(f"{name}/low", 0.0, np.float64)], f"{name}/ClipLow"),
            g.scalar(f"{name}/high", 255.0, np.float64),
        ],
        f"{name}/Clip",
    )
    cut = g.op("Cast", [clipped], f"{name}/Cut", to=TensorProto.UINT8)
    brighter = g.op("Or", [g.op("Greater", [image, cut], f"{name}/Greater"), below_zero], f"{name}/Brighter")
    return g.op("Where", [brighter, g.scalar(f"{name}/paper", PAPER, np.uint8), image], f"{name}/Where")


def blank_unless(g: GraphBuilder, image: str, valid: str, name: str) -> str:
    """`image` where the bool scalar `valid` is True, else all zeros (a refused image's output)."""
    return g.op("Where", [valid, image, g.scalar(f"{name}/zero", 0, np.uint8)], f"{name}/Where")
