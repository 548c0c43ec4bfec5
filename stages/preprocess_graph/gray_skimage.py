"""The "sigver" style's loading step as ONNX nodes: RGB uint8 -> `img_as_ubyte(rgb2gray(rgb))`.

What scikit-image 0.26 computes for a uint8 RGB array (`skimage.io.imread(path, as_gray=True)`
then `img_as_ubyte`, the package's `sigver.load_signature`):

- `img_as_float64`: f = u * (1.0 / 255)  (a multiplication by the float64 reciprocal);
- `rgb2gray`: gray = f @ [0.2125, 0.7154, 0.0721]  (float64 matmul);
- `img_as_ubyte`: rint(gray * 255) (round half to even), clipped to 0..255, cast to uint8.

The matmul goes through numpy's BLAS (OpenBLAS dgemv), whose kernel is chosen by CPU: on an
FMA-capable CPU it computes fma(b, c2, fma(r, c0, g * c1)), elsewhere the plain sum. The graph,
like the package (`signature_onnx.preprocessing.sigver.luminance`), computes the plain sum
(separate Mul and Add nodes: (r c0 + g c1) + b c2), the same IEEE operations on every machine,
so its bytes and its results never depend on the CPU. It equals
scikit-image for every triple where the two orders round alike: on the FMA machine this was
measured on, all but 146 of the 2**24 triples, each of those one gray level off (their gray * 255
lies within an ulp of a half-integer); tests/test_preprocess_graph_sigver.py counts them. A gray
pixel (R = G = B) is never one of them.

Caveat (measured): an image ONE pixel wide goes through another numpy loop (no BLAS) whose
result differs on some of those triples; such an image is always refused by the package
(its ink is a single column), so its output is blank either way.

A gray file (mode L) is not converted by the package (its pixels are taken as they are); an app
passes it as R = G = B, and img_as_ubyte(rgb2gray(v, v, v)) == v for every v in 0..255
(checked by the tests), so both give the same gray image.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from signature_onnx.preprocessing.sigver import LUMINANCE  # the package's rule, one copy
from stages.core.graph_builder import GraphBuilder


def gray_graph(g: GraphBuilder, rgb: str, name: str) -> str:
    """uint8 [H, W, 3] RGB -> uint8 [H, W], `signature_onnx.preprocessing.sigver.luminance` (see module doc)."""
    return plain_gray_nodes(g, rgb, name)


def plain_gray_nodes(g: GraphBuilder, rgb: str, name: str) -> str:
    """`luminance` as nodes: float64 f = u * (1/255); (f0 c0 + f1 c1) + f2 c2; rint(x 255); clip; uint8.

    The channels are split while still uint8 (1 byte per value moved, not 8).
    """
    channels = g.ops("Split", [rgb, g.ints(f"{name}/split", [1, 1, 1])], f"{name}/Split", 3, axis=2)
    terms = []
    for i, channel in enumerate(channels):
        plane = g.op("Squeeze", [channel, g.ints(f"{name}/c{i}/axis", [2])], f"{name}/c{i}/Squeeze")  # uint8 [H, W]
        f = g.op(
            "Mul",
            [
                g.op("Cast", [plane], f"{name}/c{i}/AsDouble", to=TensorProto.DOUBLE),
                g.scalar(f"{name}/c{i}/inv255", 1.0 / 255, np.float64),
            ],
            f"{name}/c{i}/AsFloat",
        )
        terms.append(g.op("Mul", [f, g.scalar(f"{name}/c{i}/weight", LUMINANCE[i], np.float64)], f"{name}/c{i}/Term"))
    gray = g.op("Add", [g.op("Add", [terms[0], terms[1]], f"{name}/rg"), terms[2]], f"{name}/rgb")
    scaled = g.op("Mul", [gray, g.scalar(f"{name}/255", 255.0, np.float64)], f"{name}/Scale")
    rounded = g.op("Round", [scaled], f"{name}/Round")  # half to even, as np.rint
    clipped = g.op(
        "Clip",
        [rounded, g.scalar(f"{name}/lo", 0.0, np.float64), g.scalar(f"{name}/hi", 255.0, np.float64)],
        f"{name}/Clip",
    )
    return g.op("Cast", [clipped], f"{name}/AsUint8", to=TensorProto.UINT8)
