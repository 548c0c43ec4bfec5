"""Style "wiwd" (sigver_wiwd's preprocessing, the Lasagne SigNets) as ONNX nodes, bit for bit.

`image_graph(g, rgb, pre)` reproduces `pre.image(pre.load(file))` of
`signature_onnx.preprocessing` for a file that decodes to the uint8 RGB pixels `rgb`:

Centered models (`pre.spp` false), `wiwd.preprocess_signature`:
 1. load: Pillow "F" gray, truncated to uint8 (`gray_pillow`, integer arithmetic, exact);
 2. refuse a uniform image (min == max);
 3. blur: `scipy.ndimage.gaussian_filter(gray, 2)` with uint8 output (`gaussian`, reflect
    border, the uint8 intermediate truncated between the two passes);
 4. OpenCV's Otsu threshold of the blurred image (`otsu_opencv`); ink = blurred <= threshold;
    refuse no ink or all ink;
 5. ink box, center of mass, placement on the canvas (`canvas.center_on_canvas`; refuse a box
    one line thin), then pixels > threshold -> 255 (`canvas.paper_above`);
 6. invert (255 - x) and byte-scale as `scipy.misc.bytescale` in float32 (`bytescale`);
 7. Pillow BILINEAR resize to `resize_target(canvas, img_size)` (`resize_pillow`), cut
    `img_size` out of it (`keep_middle`), then the center crop to `input_size` (`crop`).
 Steps 6-7 work on the canvas, whose size is a build-time constant, so every size, start and
 coefficient there is computed at build time.

SPP models (`pre.spp`): `255 - remove_background(gray)` at the image's own size: OpenCV's Otsu
threshold of the UNBLURRED gray, pixels > threshold -> 255, inverted; refused (valid false)
when the image is smaller than `input_size`. A uniform image is not refused there (OpenCV's
threshold is then 0), as in the package.

A refused image gives an all-zero image (blank paper once inverted) and valid = false; no
step can fail at run time (divisions are guarded, Gather indices clipped).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from signature_onnx.preprocessing import Preprocessing
from signature_onnx.preprocessing.arrays import resize_target
from stages.core.graph_builder import GraphBuilder
from stages.preprocess_graph.canvas import blank_unless, center_on_canvas, paper_above
from stages.preprocess_graph.crop import crop_center, crop_window
from stages.preprocess_graph.gaussian import gaussian_blur
from stages.preprocess_graph.gray_pillow import pillow_gray_uint8
from stages.preprocess_graph.otsu_opencv import otsu_threshold
from stages.preprocess_graph.resize_pillow import resize_bilinear

BLUR_SIGMA = 2.0  # sigver_wiwd's `ndimage.gaussian_filter(img, 2)`
BLUR_MODE = "reflect"  # scipy.ndimage's default mode


def image_graph(g: GraphBuilder, rgb: str, pre: Preprocessing, *, blur_sigma: float = BLUR_SIGMA) -> tuple[str, str]:
    """The wiwd preprocessing of the uint8 [H, W, 3] tensor `rgb` (H, W dynamic, >= 1).

    Args:
        g: the builder the nodes are added to (names scoped "wiwd/...").
        rgb: name of the uint8 [H, W, 3] RGB input.
        pre: the model's preprocessing (style "wiwd").
        blur_sigma: the blur's sigma; only a test changes it (to show the comparison fails).

    Returns:
        (image, valid): uint8 [input_size] (centered) or uint8 [H, W] (SPP), ink bright, all
        zeros when refused; bool scalar, false where the package refuses the image.
    """
    if pre.style != "wiwd":
        raise ValueError(f"wiwd.image_graph builds style 'wiwd', got {pre.style!r}")
    gray = pillow_gray_uint8(g, rgb, "wiwd/gray")
    if pre.spp:
        return spp_graph(g, gray, pre.input_size, "wiwd/spp")
    return centered_graph(g, gray, pre, blur_sigma, "wiwd")


def centered_graph(g: GraphBuilder, gray: str, pre: Preprocessing, blur_sigma: float, name: str) -> tuple[str, str]:
    """`preprocess_signature(gray, canvas, img_size, input_size)` of a uint8 [H, W] tensor."""
    canvas_size, img_size, input_size = pre.canvas, pre.img_size, pre.input_size
    if canvas_size is None or img_size is None:  # Preprocessing refuses this for a centered style
        raise ValueError("a centered wiwd preprocessing needs canvas and img_size")
    blurred = gaussian_blur(g, gray, blur_sigma, BLUR_MODE, np.uint8, f"{name}/blur", x_dtype=np.uint8)
    threshold = otsu_threshold(g, blurred, f"{name}/otsu")
    # cv2.threshold(THRESH_BINARY) makes pixels > threshold 255; ink is where it wrote 0. The
    # threshold is an integer 0..255, so the comparison is made in uint8 (no float copy).
    cut = g.op("Cast", [threshold], f"{name}/ink/Cut", to=TensorProto.UINT8)
    ink = g.op("LessOrEqual", [blurred, cut], f"{name}/ink/LessOrEqual")
    placed = center_on_canvas(g, gray, ink, canvas_size, f"{name}/canvas")
    normalized = paper_above(g, placed.image, threshold, f"{name}/paper")
    resized = resize_image(g, invert_float(g, normalized, f"{name}/invert"), canvas_size, img_size, f"{name}/resize")
    image = crop_center(g, resized, img_size, input_size, f"{name}/crop")
    valid = g.op(
        "And",
        [
            g.op(
                "And",
                [not_uniform(g, gray, f"{name}/uniform"), not_all(g, ink, f"{name}/all_ink")],
                f"{name}/valid/Ink",
            ),
            placed.valid,
        ],
        f"{name}/valid/And",
    )
    valid = scalar_bool(g, valid, f"{name}/valid")
    return blank_unless(g, image, valid, f"{name}/blank"), valid


def spp_graph(g: GraphBuilder, gray: str, input_size: tuple[int, int], name: str) -> tuple[str, str]:
    """`255 - remove_background(gray)` of a uint8 [H, W] tensor; valid iff H, W >= input_size."""
    threshold = otsu_threshold(g, gray, f"{name}/otsu")
    cleaned = paper_above(g, gray, threshold, f"{name}/paper")
    inverted = g.op(
        "Sub", [g.scalar(f"{name}/white", 255, np.uint8), cleaned], f"{name}/Invert"
    )  # uint8, never below 0
    shape = g.op("Shape", [gray], f"{name}/Shape")
    large_enough = g.op(
        "GreaterOrEqual", [shape, g.ints(f"{name}/input_size", input_size)], f"{name}/LargeEnough"
    )  # [2]
    valid = g.op(
        "ReduceMin",
        [g.op("Cast", [large_enough], f"{name}/LargeEnoughInt", to=TensorProto.INT32)],
        f"{name}/BothSides",
        keepdims=0,
    )
    valid = scalar_bool(g, g.op("Cast", [valid], f"{name}/ValidBool", to=TensorProto.BOOL), f"{name}/valid")
    return blank_unless(g, inverted, valid, f"{name}/blank"), valid


def not_uniform(g: GraphBuilder, gray: str, name: str) -> str:
    """bool: the image has at least two gray levels (the package refuses a uniform page)."""
    low = g.op("ReduceMin", [gray], f"{name}/Min", keepdims=0)
    high = g.op("ReduceMax", [gray], f"{name}/Max", keepdims=0)
    return g.op("Less", [low, high], f"{name}/Less")


def not_all(g: GraphBuilder, mask: str, name: str) -> str:
    """bool: some element of the bool mask is False (the package refuses an all-ink image)."""
    as_int = g.op("Cast", [mask], f"{name}/AsInt", to=TensorProto.INT32)
    return g.op(
        "Equal",
        [g.op("ReduceMin", [as_int], f"{name}/Min", keepdims=0), g.scalar(f"{name}/zero", 0, np.int32)],
        f"{name}/Equal",
    )


def scalar_bool(g: GraphBuilder, x: str, name: str) -> str:
    """x reshaped to a 0-d tensor (constants from `GraphBuilder.scalar` are [1], which would
    make a broadcast result [1])."""
    return g.op("Reshape", [x, g.ints(f"{name}/scalar_shape", [])], f"{name}/Scalar")


def invert_float(g: GraphBuilder, image: str, name: str) -> str:
    """255 - image as float32 (`(255 - centered).astype(np.float32)` of the package: exact, the
    values are integers 0..255)."""
    as_float = g.op("Cast", [image], f"{name}/Cast", to=TensorProto.FLOAT)
    return g.op("Sub", [g.scalar(f"{name}/white", 255.0, np.float32), as_float], f"{name}/Sub")


def bytescale(g: GraphBuilder, data: str, name: str) -> str:
    """`scipy.misc.bytescale` of a float32 tensor, in float32 as `wiwd._bytescale` computes it.

    cmin, cmax = min, max; cscale = cmax - cmin, or 1 when 0; scale = 255 / cscale (numpy 2:
    a Python float over a float32 scalar stays float32); ((data - cmin) * scale).clip(0, 255)
    + 0.5, truncated to uint8. Every step is one correctly rounded float32 operation, as here.
    Returns uint8, data's shape.
    """
    cmin = g.op("ReduceMin", [data], f"{name}/Min", keepdims=0)
    cmax = g.op("ReduceMax", [data], f"{name}/Max", keepdims=0)
    span = g.op("Sub", [cmax, cmin], f"{name}/Span")
    one = g.scalar(f"{name}/one", 1.0, np.float32)
    cscale = g.op(
        "Where",
        [g.op("Equal", [span, g.scalar(f"{name}/zero", 0.0, np.float32)], f"{name}/Flat"), one, span],
        f"{name}/CScale",
    )
    scale = g.op("Div", [g.scalar(f"{name}/top", 255.0, np.float32), cscale], f"{name}/Scale")
    scaled = g.op("Mul", [g.op("Sub", [data, cmin], f"{name}/Shift"), scale], f"{name}/Mul")
    low = g.op("Max", [scaled, g.scalar(f"{name}/low", 0.0, np.float32)], f"{name}/ClipLow")
    clipped = g.op("Min", [low, g.scalar(f"{name}/high", 255.0, np.float32)], f"{name}/ClipHigh")
    rounded = g.op("Add", [clipped, g.scalar(f"{name}/half", 0.5, np.float32)], f"{name}/Half")
    return g.op("Cast", [rounded], f"{name}/ToUint8", to=TensorProto.UINT8)  # truncates, as astype


def resize_image(g: GraphBuilder, data: str, shape: tuple[int, int], size: tuple[int, int], name: str) -> str:
    """`wiwd.resize_image(data, size)` of a float32 tensor of the build-time `shape` -> uint8 [size].

    `resize_target` (the package's own function, run at build time) gives the resize size, the
    axis to cut and where; then byte-scale, Pillow BILINEAR resize, and the cut.
    """
    rows, cols, crop_axis, start = resize_target(shape, size)
    resized = resize_bilinear(g, bytescale(g, data, f"{name}/bytescale"), shape, (rows, cols), f"{name}/bilinear")
    starts = [start, 0] if crop_axis == 0 else [0, start]
    return crop_window(g, resized, starts, list(size), f"{name}/keep_middle")
