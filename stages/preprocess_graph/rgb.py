"""Style "rgb" (the cleaning autoencoder) as ONNX nodes: an RGB page resized to the network size.

The package (`Preprocessing.image` for style "rgb", `_resize_rgb`) does only
`cv2.resize(rgb, (cols, rows), interpolation=cv2.INTER_AREA)` with (rows, cols) =
`pre.input_size`; `resize_area.resize_area` reproduces it bit for bit. The package refuses
only an image without pixels (H or W == 0): the graph then says valid = false and returns
all zeros (an If: the resize never sees an empty axis).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

from signature_onnx.preprocessing import Preprocessing
from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.resize_area import resize_area


def image_graph(g: GraphBuilder, rgb: str, pre: Preprocessing) -> tuple[str, str]:
    """uint8 [H, W, 3] named `rgb` (H, W >= 0, dynamic) -> (uint8 [rows, cols, 3], bool scalar).

    The image equals `pre.image(pixels)`; the flag is false only for an empty image, whose
    output is then all zeros."""
    if pre.style != "rgb":
        raise ValueError(f"rgb.image_graph builds style 'rgb', not {pre.style!r}")
    rows, cols = pre.input_size
    sides = g.op(
        "Slice",
        [g.op("Shape", [rgb], "rgb/Shape"), g.ints("rgb/sides/starts", [0]), g.ints("rgb/sides/ends", [2])],
        "rgb/sides/Slice",
    )
    valid = _has_pixels(g, sides, "rgb/valid")
    page, blank = g.branch(), g.branch()
    resized = resize_area(page, rgb, rows, cols, "rgb/resize")
    zeros = blank.op(
        "ConstantOfShape",
        [blank.ints("rgb/blank/shape", [rows, cols, 3])],
        "rgb/blank/ConstantOfShape",
        value=numpy_helper.from_array(np.zeros(1, np.uint8)),
    )
    image = g.if_else(valid, (page, resized), (blank, zeros), TensorProto.UINT8, "rgb/If")
    return image, valid


def _has_pixels(g: GraphBuilder, sides: str, scope: str) -> str:
    """bool scalar: both sides (int64 [2]) are at least 1."""
    smallest = g.op("ReduceMin", [sides], f"{scope}/ReduceMin", keepdims=0)
    return g.op("Greater", [smallest, g.scalar(f"{scope}/zero", 0, np.int64)], f"{scope}/Greater")
