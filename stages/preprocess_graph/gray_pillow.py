"""Pillow's RGB -> "F" gray conversion, truncated to uint8, as ONNX nodes (exact integers).

Pillow (libImaging/Convert.c, `rgb2f`) computes, per pixel, the int sum
S = 299 R + 587 G + 114 B (0 .. 255000) and then the float32 quotient S / 1000.0F. The package
truncates that float32 to uint8 (`as_uint8_image`: `astype(np.uint8)`). Claim:
trunc(fl32(S / 1000)) == S // 1000 for every S. Proof: if 1000 divides S the quotient is an
integer <= 255, exact in float32; otherwise S / 1000 lies at least 0.001 above floor(S / 1000)
and 0.001 below the next integer, while float32 rounding moves a value below 256 by at most
2**-17 < 0.001, so the truncation is unchanged. Checked exhaustively on all 2**24 colors
against Pillow 13 (tests/test_preprocess_graph_wiwd.py, `test_gray_conversion_all_colors`).

So the graph uses int32 arithmetic only: Cast, Mul by the weights, the three planes added
and an integer Div by 1000 (truncation == floor for non-negative values).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder

WEIGHTS = (299, 587, 114)  # Pillow's ITU-R 601-2 luma weights, in thousandths
DIVISOR = 1000


def pillow_gray_uint8(g: GraphBuilder, rgb: str, name: str) -> str:
    """uint8 [H, W, 3] RGB -> uint8 [H, W] gray = (299 R + 587 G + 114 B) // 1000.

    Equal to `np.array(Image.fromarray(rgb).convert("F")).astype(np.uint8)` (see the module
    docstring). The channels are moved first ([3, H, W], a uint8 Transpose) so that the
    weighting broadcasts over whole planes and the planes are Split and added: in
    onnxruntime this is ~9x faster than weighting the innermost axis of length 3, and adding
    the planes ~3x faster than a ReduceSum over the channel axis.
    Memory: int32 [3, H, W] twice at the peak (the weighted planes and their split copies, 24 bytes
    per pixel).
    """
    planes = g.op("Transpose", [rgb], f"{name}/Planes", perm=[2, 0, 1])  # uint8 [3, H, W]
    wide = g.op("Cast", [planes], f"{name}/Cast", to=TensorProto.INT32)
    weights = g.const(f"{name}/weights", np.array(WEIGHTS, dtype=np.int32).reshape(3, 1, 1))
    weighted = g.op("Mul", [wide, weights], f"{name}/Weigh")
    red, green, blue = g.ops("Split", [weighted], f"{name}/Split", outputs=3, axis=0)  # [1, H, W] each
    total = g.op("Add", [g.op("Add", [red, green], f"{name}/Sum_rg"), blue], f"{name}/Sum")  # 0..255000
    gray = g.op(
        "Div", [total, g.const(f"{name}/divisor", np.array(DIVISOR, dtype=np.int32))], f"{name}/Div"
    )  # floor: total >= 0
    gray = g.op("Cast", [gray], f"{name}/ToUint8", to=TensorProto.UINT8)
    return g.op("Squeeze", [gray, g.ints(f"{name}/plane_axis", [0])], f"{name}/Squeeze")
