"""Style "sigver" as ONNX nodes: RGB pixels -> `pre.image(pre.load(file))` of the package, bit for bit.

The package's steps (`signature_onnx.preprocessing.sigver`) and the nodes that make each one:

1. load: `img_as_ubyte(imread(path, as_gray=True))` -> `gray_skimage.gray_graph` (uint8 [H, W]);
2. `normalize_image`: refused when the image is uniform; threshold = scikit-image's Otsu of the
   UNblurred gray image (`otsu_skimage`); ink = NOT(gaussian(gray, 2, mode "nearest",
   float64) > threshold) (`gaussian.gaussian_blur`); refused when there is no ink or the
   ink lies on a single row or column; the box is centered on the canvas (`canvas`) and
   every pixel above the threshold becomes 255;
3. invert: 255 - image;
4. `resize_image` to img_size: scikit-image's anti-aliased resize truncated to uint8, its
   middle kept (`resize_skimage`);
5. the center crop to input_size when it differs from img_size (`crop`).

A refused image gives an all-zero image and valid = False (never a runtime error: every
Gather index is clipped, every division guarded). Only the "centered" form is built here
(canvas and img_size given); SigNet-SPP models use style "sigver" with spp = True, which this
builder refuses at build time.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from signature_onnx.preprocessing import Preprocessing
from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph import canvas as canvas_nodes
from stages.preprocess_graph.crop import crop_center
from stages.preprocess_graph.gaussian import gaussian_blur
from stages.preprocess_graph.gray_skimage import gray_graph
from stages.preprocess_graph.otsu_skimage import otsu_threshold
from stages.preprocess_graph.resize_skimage import resize_image

SCOPE = "sigver"
BLUR_SIGMA = 2.0  # normalize_image: skimage.filters.gaussian(img, 2, preserve_range=True)
BLUR_MODE = "nearest"  # skimage.filters.gaussian's default mode


def image_graph(g: GraphBuilder, rgb: str, pre: Preprocessing, blur_sigma: float = BLUR_SIGMA) -> tuple[str, str]:
    """The contract's builder (see `stages.preprocess_graph`): uint8 [H, W, 3] -> (uint8 [rows, cols], bool []).

    Args:
        g: the builder the nodes are added to.
        rgb: name of the uint8 [H, W, 3] RGB tensor (H, W >= 1, dynamic).
        pre: the model's preprocessing (style "sigver", canvas and img_size set, not SPP).
        blur_sigma: the normalization blur's sigma (2, the package's); a parameter only so that
            a test can show a wrong value is caught.

    Returns:
        (image, valid): uint8 [input_size] ink bright (0 = paper), and a bool scalar, False where
        the package refuses the image (the image is then all zeros).
    """
    if pre.style != "sigver" or pre.spp or pre.canvas is None or pre.img_size is None:
        raise ValueError(f"sigver.image_graph builds the centered sigver style, got {pre}")
    gray = gray_graph(g, rgb, f"{SCOPE}/gray")
    centered, valid = normalize_image(g, gray, pre.canvas, blur_sigma, f"{SCOPE}/normalize")
    inverted = g.op("Sub", [g.scalar(f"{SCOPE}/invert/white", 255, np.uint8), centered], f"{SCOPE}/invert/Sub")
    resized = resize_image(g, inverted, pre.canvas, pre.img_size, f"{SCOPE}/resize")
    if tuple(pre.input_size) != tuple(pre.img_size):
        resized = crop_center(g, resized, pre.img_size, pre.input_size, f"{SCOPE}/crop")
    image = canvas_nodes.blank_unless(g, resized, valid, f"{SCOPE}/blank")
    # The contract's flag is a 0-d bool. GraphBuilder.const stores a 0-d constant as shape [1]
    # (np.ascontiguousarray returns at least 1-d), which broadcasting carries into the flag:
    # reshape it to [] so the output has the declared rank whichever form the constants take.
    flag = g.op("Reshape", [valid, g.ints(f"{SCOPE}/valid/scalar_shape", [])], f"{SCOPE}/valid/Reshape")
    return image, flag


def normalize_image(
    g: GraphBuilder, gray: str, canvas_size: tuple[int, int], blur_sigma: float, name: str
) -> tuple[str, str]:
    """`sigver.normalize_image(gray, canvas_size)`: uint8 [H, W] -> (uint8 [canvas], bool scalar).

    valid is False for a uniform image (min == max), no ink after the blur, or ink on a single
    row or column -- the package's three refusals (ImageError).
    """
    threshold = otsu_threshold(g, gray, f"{name}/otsu")  # float64 scalar, an integer
    source = g.op("Cast", [gray], f"{name}/AsDouble", to=TensorProto.DOUBLE)  # preserve_range: float64 copy
    blurred = gaussian_blur(g, source, blur_sigma, BLUR_MODE, np.float64, f"{name}/blur")
    ink = g.op("Not", [g.op("Greater", [blurred, threshold], f"{name}/Paper")], f"{name}/Ink")
    placed = canvas_nodes.center_on_canvas(g, gray, ink, canvas_size, f"{name}/canvas")
    cleaned = canvas_nodes.paper_above(g, placed.image, threshold, f"{name}/paper")
    return cleaned, g.op("And", [not_uniform(g, source, name), placed.valid], f"{name}/Valid")


def not_uniform(g: GraphBuilder, image: str, name: str) -> str:
    """bool scalar: image.min() != image.max() (the package refuses a uniform image)."""
    low = g.op("ReduceMin", [image], f"{name}/Min", keepdims=0)
    high = g.op("ReduceMax", [image], f"{name}/Max", keepdims=0)
    return g.op("Less", [low, high], f"{name}/NotUniform")
