"""Pillow's RGB -> "F" gray conversion, truncated to uint8, as ONNX nodes (bit for bit).

Pillow (libImaging/Convert.c, `rgb2f`) computes, per pixel, the int sum
S = 299 R + 587 G + 114 B (0 .. 255000) and then the float32 quotient S / 1000.0F. The package
truncates that float32 to uint8 (`as_uint8_image`: `astype(np.uint8)`). Claim:
trunc(fl32(S / 1000)) == S // 1000 for every S. Proof: if 1000 divides S the quotient is an
integer <= 255, exact in float32; otherwise S / 1000 lies at least 0.001 above floor(S / 1000)
and 0.001 below the next integer, while float32 rounding moves a value below 256 by at most
2**-17 < 0.001, so the truncation is unchanged. Checked exhaustively on all 2**24 colors
against Pillow 13 (tests/test_preprocess_graph_wiwd.py, `test_gray_conversion_all_colors`).

So the graph computes Pillow's own float32 arithmetic, exactly: the pixels as float32, a MatMul
by the weights [299, 587, 114] (every product and partial sum is an integer below 2**24, exact in
float32 whatever order or fused multiply-add the runtime uses), a float32 Div by 1000 (IEEE
division, correctly rounded: fl32(S / 1000)) and a Cast to uint8 (ONNX Cast truncates toward
zero, as the package's `astype` does).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from stages.core.graph_builder import GraphBuilder

WEIGHTS = (299, 587, 114)  # Pillow's ITU-R 601-2 luma weights, in thousandths
DIVISOR = 1000


def pillow_gray_uint8(g: GraphBuilder, rgb: str, name: str) -> str:
    """uint8 [H, W, 3] RGB -> uint8 [H, W] gray = trunc(fl32((299 R + 587 G + 114 B) / 1000)).

    Equal to `np.array(Image.fromarray(rgb).convert("F")).astype(np.uint8)` (see the module
    docstring), which is (299 R + 587 G + 114 B) // 1000. The channel axis is contracted by one
    MatMul ([H, W, 3] x [3, 1]): in onnxruntime 1.31 it is 1.3x faster than weighting three
    planes in int32 and dividing them as integers on a 359 x 725 scan, 2.5x on a 2400 x 3200
    page (benchmarks/bench_preprocess.py times the whole graphs).
    Memory: float32 [H, W, 3] and [H, W, 1] (16 bytes per pixel at the peak).
    """
    wide = g.op("Cast", [rgb], f"{name}/Cast", to=TensorProto.FLOAT)
    weights = g.const(f"{name}/weights", np.array(WEIGHTS, dtype=np.float32).reshape(3, 1))
    total = g.op("MatMul", [wide, weights], f"{name}/Weigh")  # [H, W, 1], 0..255000, exact
    gray = g.op("Div", [total, g.const(f"{name}/divisor", np.array(DIVISOR, dtype=np.float32))], f"{name}/Div")
    gray = g.op("Cast", [gray], f"{name}/ToUint8", to=TensorProto.UINT8)  # truncation: Pillow's value
    return g.op("Squeeze", [gray, g.ints(f"{name}/channel_axis", [2])], f"{name}/Squeeze")
