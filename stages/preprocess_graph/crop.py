"""Static crops as ONNX nodes: windows whose position and size are build-time constants.

The package's `arrays.crop_center` (start = (shape - size) // 2 on each axis) and
`arrays.keep_middle` (a window of `size` from `start` along one axis) both cut a window out
of an image whose size is fixed by the params (img_size), so each is one `Slice` with
constant starts and ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.core.graph_builder import GraphBuilder


def crop_window(g: GraphBuilder, x: str, starts: Sequence[int], sizes: Sequence[int], name: str) -> str:
    """x[starts[0] : starts[0] + sizes[0], starts[1] : starts[1] + sizes[1], ...].

    Args:
        g: the builder the nodes are added to.
        x: a tensor of rank >= len(starts), any dtype; its leading axes are cut.
        starts: non-negative first index per leading axis.
        sizes: window length per leading axis (the caller guarantees start + size <= length).
        name: scope of the nodes, e.g. "wiwd/crop".

    Returns:
        the name of the window tensor, x's dtype, shape `sizes` on the leading axes.
    """
    if len(starts) != len(sizes) or any(s < 0 for s in starts) or any(n < 1 for n in sizes):
        raise ValueError(f"crop_window needs non-negative starts and positive sizes, got {starts}, {sizes}")
    ends = [start + size for start, size in zip(starts, sizes)]
    return g.op(
        "Slice",
        [x, g.ints(f"{name}/starts", starts), g.ints(f"{name}/ends", ends), g.ints(f"{name}/axes", range(len(starts)))],
        f"{name}/Slice",
    )


def center_start(length: int, size: int) -> int:
    """`arrays.crop_center`'s start on one axis: (length - size) // 2 (floor, extra on the far side)."""
    if not 1 <= size <= length:
        raise ValueError(f"cannot center a window of {size} in {length}")
    return (length - size) // 2


def crop_center(g: GraphBuilder, x: str, shape: Sequence[int], size: Sequence[int], name: str) -> str:
    """`arrays.crop_center(x, size)` of a tensor whose leading `shape` is a build-time constant.

    Args:
        x: [rows, cols, ...] tensor, any dtype, with (rows, cols) == `shape`.
        shape: (rows, cols) of x, known when the graph is built (e.g. img_size).
        size: (rows, cols) of the window, each no larger than `shape`.

    Returns:
        the name of the [size[0], size[1], ...] window, x's dtype.
    """
    starts = [center_start(length, window) for length, window in zip(shape, size)]
    return crop_window(g, x, starts, size, name)
