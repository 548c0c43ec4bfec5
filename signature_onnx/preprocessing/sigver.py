"""Style "sigver": the scikit-image signature preprocessing of luizgh/sigver (and the Siamese notebook).

Origin: luizgh/sigver, `sigver/preprocessing/normalize.py`, and the loading step of its example,
`img_as_ubyte(imread(path, as_gray=True))`. The sigver PyTorch SigNets (`.pth`) and the Siamese
verifier were trained on images made this way. Same function names, arguments and steps as the
"wiwd" style (`signature_onnx.preprocessing.wiwd`), with these differences:

- loading: scikit-image's luminance 0.2125 R + 0.7154 G + 0.0721 B (transparent pixels blended
  onto white by `rgba2rgb`), converted to uint8 by `img_as_ubyte`; wiwd keeps Pillow's float
  0.299 R + 0.587 G + 0.114 B;
- `normalize_image`: the Otsu threshold (`skimage.filters.threshold_otsu`) of the image itself,
  not of the blurred one; the blur (`skimage.filters.gaussian`, sigma 2) stays float and is
  binarized with `blurred > threshold`;
- `resize_image`: `skimage.transform.resize(..., anti_aliasing=True, preserve_range=True)` then
  truncation to uint8, without wiwd's byte-scaling (min -> 0, max -> 255) and Pillow bilinear;
- `remove_background`: scikit-image's Otsu threshold (wiwd: OpenCV's);
- `preprocess_signature` crops only when `input_size` differs from `img_size`.

Conventions and refusals are those of the wiwd style: 2-D gray arrays, paper 255, ink dark;
every problem raises `ImageError` naming the file or `source`; the files are opened with the
same checks (missing, empty, not an image, truncated, decompression bomb) before scikit-image
decodes them.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from scipy import ndimage
from skimage import color, filters, img_as_ubyte, io, transform

from signature_onnx.errors import ImageError, shown
from signature_onnx.preprocessing.arrays import (
    Source,
    as_2d_real,
    as_uint8_image,
    center_on_canvas,
    check_size,
    crop_center,
    keep_middle,
    name,
    resize_target,
)
from signature_onnx.preprocessing.files import decoded_image

__all__ = [
    "load_signature",
    "gray_from_rgb",
    "normalize_image",
    "remove_background",
    "resize_image",
    "crop_center",
    "preprocess_signature",
]


def load_signature(path: str | os.PathLike[str], *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Load an image file as sigver does: `img_as_ubyte(skimage.io.imread(path, as_gray=True))`.

    The file is first opened and fully decoded by Pillow with the checks of
    `signature_onnx.preprocessing.files` (so a broken or hostile file is refused by name), then
    read by scikit-image. Color: 0.2125 R + 0.7154 G + 0.0721 B, transparency blended onto white;
    16-bit gray keeps its 8 high bits (`img_as_ubyte`).

    Returns:
        uint8 array (rows, cols), values 0..255 (white paper = 255).

    Raises:
        ImageError: the file is missing, empty, not an image, truncated, too large, or
            scikit-image cannot read it as a 2-D gray image; the message names the file.
    """
    with decoded_image(path, max_pixels) as (image, file):
        # What scikit-image's reader (imageio's Pillow plugin) returns for these formats and modes
        # is the decoded array itself: take it rather than decode the file a second time.
        same = (
            image.format in SAME_DECODE_FORMATS
            and image.mode in SAME_DECODE_MODES
            and not getattr(image, "is_animated", False)
        )
        pixels = np.array(image) if same else None  # a writable copy, as scikit-image's reader returns
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # img_as_ubyte's "lossy conversion" note
            gray = img_as_ubyte(io.imread(file, as_gray=True) if pixels is None else _as_gray(pixels))
    except (OSError, ValueError, TypeError, SyntaxError, MemoryError) as exc:
        raise ImageError(
            f"{shown(file)}: scikit-image cannot read it as a gray image ({exc}); expected a signature image"
        ) from exc
    if gray.ndim != 2:
        raise ImageError(f"{shown(file)}: decoded to shape {gray.shape}; expected a 2-D grayscale image")
    return gray


# Single-frame formats and modes whose Pillow array is exactly what `skimage.io.imread` reads
# (imageio converts palette images, stacks the frames of a GIF or an animated PNG and rescales
# 16-bit PNGs: those go to it).
SAME_DECODE_FORMATS = ("PNG", "JPEG")
SAME_DECODE_MODES = ("L", "RGB", "RGBA")


def _as_gray(pixels: np.ndarray) -> np.ndarray:
    """`skimage.io.imread(..., as_gray=True)` + `img_as_ubyte` of a decoded array: RGBA onto white,
    then `luminance`; a 2-D array is taken as it is (as scikit-image does)."""
    if pixels.ndim == 2:
        return pixels
    return luminance(color.rgba2rgb(pixels) if pixels.shape[2] == 4 else pixels)


LUMINANCE = (0.2125, 0.7154, 0.0721)  # skimage.color.rgb2gray's weights of R, G, B


def luminance(rgb: np.ndarray) -> np.ndarray:
    """`img_as_ubyte(skimage.color.rgb2gray(rgb))` with the same IEEE operations on every CPU.

    scikit-image computes `img_as_float(rgb) @ LUMINANCE` (uint8 scaled by multiplying with
    1 / 255), a BLAS product whose kernel, and so its rounding, depends on the CPU: with fused
    multiply-adds it differs from the plain sum on 146 of the 2**24 RGB triples, by one gray
    level each. Here the sum is written out, (r c0 + g c1) + b c2, then rint(gray * 255) clipped
    to 0..255, as `img_as_ubyte` rounds: the package, its preprocess.onnx graph and every
    machine agree (no real scan of the tests holds one of those triples; a gray pixel never is one).

    Args:
        rgb: uint8 (rows, cols, 3), or float (rows, cols, 3) in 0..1 (after `rgba2rgb`).

    Returns:
        uint8 (rows, cols), 0..255.
    """
    if rgb.dtype == np.uint8:
        # (v * (1/255)) * c for the 256 levels: the same two roundings as per pixel, read from a
        # table (one float64 plane at a time instead of three).
        terms = (np.arange(256, dtype=np.float64) * (1.0 / 255))[None, :] * np.array(LUMINANCE)[:, None]
        gray = np.take(terms[0], rgb[..., 0]) + np.take(terms[1], rgb[..., 1])
        gray += np.take(terms[2], rgb[..., 2])
    else:
        f = np.asarray(rgb, dtype=np.float64)
        gray = (f[..., 0] * LUMINANCE[0] + f[..., 1] * LUMINANCE[1]) + f[..., 2] * LUMINANCE[2]
    gray *= 255
    return np.clip(np.rint(gray, out=gray), 0, 255, out=gray).astype(np.uint8)


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """`load_signature` of a file that decodes to `rgb` (uint8 (rows, cols, 3)): uint8 (rows, cols)."""
    return luminance(np.asarray(rgb, dtype=np.uint8))


def preprocess_signature(
    img: np.ndarray,
    canvas_size: tuple[int, int],
    img_size: tuple[int, int] = (170, 242),
    input_size: tuple[int, int] = (150, 220),
    *,
    source: Source = None,
) -> np.ndarray:
    """Turn a grayscale signature into the network input: center, clean, invert, resize, crop.

    Args:
        img: 2-D array (rows, cols), values 0..255 (white paper = 255); cast to uint8 as sigver
            does (floats truncated).
        canvas_size: (rows, cols) of the white canvas; sigver and the Siamese notebook use (952, 1360).
        img_size: (rows, cols) the canvas is resized to, keeping the aspect ratio (the Siamese
            model was trained with (256, 256)).
        input_size: (rows, cols) of the final center crop; skipped when equal to `img_size`.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `input_size`, values 0..255, INVERTED: background 0, ink > 0.

    Raises:
        ImageError: not a 2-D image in 0..255, no ink, or `input_size` larger than `img_size`.
        ValueError: a size argument that is not a pair of positive integers.
    """
    gray = as_uint8_image(img, source)
    centered = normalize_image(gray, canvas_size, source=source)
    inverted = 255 - centered
    resized = resize_image(inverted, img_size, source=source)
    if tuple(input_size) != tuple(img_size):
        return crop_center(resized, input_size, source=source)
    return resized


def normalize_image(
    img: np.ndarray, canvas_size: tuple[int, int] = (840, 1360), *, source: Source = None
) -> np.ndarray:
    """Center the signature on a white canvas and remove background noise (scikit-image Otsu).

    threshold = `threshold_otsu(img)`; ink = pixels where `gaussian(img, 2) <= threshold`; the
    tight box is placed as in the wiwd style (`arrays.center_on_canvas`); pixels above the
    threshold become 255.

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255 (cast to uint8).
        canvas_size: (rows, cols) of the canvas.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `canvas_size`, values 0..255, white paper = 255.

    Raises:
        ImageError: not a 2-D image in 0..255, a uniform image or one whose blur leaves no ink.
        ValueError: `canvas_size` is not a pair of positive integers.
    """
    size = check_size(canvas_size, "canvas_size")
    gray = as_uint8_image(img, source)
    if gray.min() == gray.max():
        raise ImageError(
            f"{name(source)}: the image is uniform (every pixel is {gray.min()}), it has no "
            "ink/foreground; expected a signature on paper"
        )
    blurred = filters.gaussian(gray, 2, preserve_range=True)
    threshold = filters.threshold_otsu(gray)
    ink_rows, ink_cols = np.where(~(blurred > threshold))
    if ink_rows.size == 0:
        raise ImageError(
            f"{name(source)}: no ink/foreground left after the blur (Otsu threshold {threshold:g}); "
            "expected a signature on paper"
        )
    return center_on_canvas(gray, threshold, ink_rows, ink_cols, size, source)


def remove_background(img: np.ndarray, *, source: Source = None) -> np.ndarray:
    """Set to white (255) every pixel lighter than the image's scikit-image Otsu threshold.

    A uniform image has nothing to separate and is returned unchanged (scikit-image's Otsu of a
    single gray level is that level, and no pixel is above it).

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255; cast to uint8.
        source: optional file name used in error messages.

    Returns:
        uint8 array of the same shape (a new array), white paper = 255, ink keeps its gray levels.
    """
    gray = as_uint8_image(img, source).copy()  # never write into the caller's array
    if gray.min() == gray.max():
        return gray
    threshold = filters.threshold_otsu(gray)
    gray[gray > threshold] = 255
    return gray


def resize_image(img: np.ndarray, size: tuple[int, int], *, source: Source = None) -> np.ndarray:
    """Resize to `size` without stretching: anti-aliased scikit-image resize, then keep the middle.

    Args:
        img: 2-D array (rows, cols), finite values in 0..255.
        size: (rows, cols) of the output; may be larger than the image.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `size` (values truncated, not rounded, as sigver did).
    """
    height, width = check_size(size, "size")
    image = as_2d_real(img, source)
    resize_rows, resize_cols, crop_axis, start = resize_target(image.shape, (height, width))
    resized = antialiased_resize(image, (resize_rows, resize_cols)).astype(np.uint8)
    return keep_middle(resized, (height, width), crop_axis, start)


def antialiased_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`skimage.transform.resize(image, shape, mode="constant", anti_aliasing=True, preserve_range=True)`,
    bit for bit, about three times faster on a centred signature.

    The resize blurs the whole canvas (`scipy.ndimage.gaussian_filter`, constant 0 outside) and
    then interpolates it (`scipy.ndimage.zoom`, order 1). A signature fills a fifth of its canvas
    and the inverted paper is 0, so the blur is computed only on the ink's box widened by the
    kernel's radius (int(4 sigma + 0.5), SciPy's truncation) on each axis: every pixel of that
    window sees the same neighbours as in the whole canvas (what lies beyond is 0, as the
    padding is), and every pixel outside it is exactly 0. The zoom (scikit-image's arguments:
    order 1, "grid-constant", grid_mode) and the final clip to the input's range are scikit-image's,
    on the whole blurred canvas. Any other input (not uint8, no 0 pixel, no ink at all) goes to
    scikit-image itself.

    Args:
        image: 2-D array (rows, cols), finite values.
        shape: (rows, cols) of the result.

    Returns:
        float64 array of `shape`, values within the input's range.
    """
    factors = np.divide(image.shape, shape)
    if image.dtype != np.uint8 or image.min() != 0 or image.max() == 0 or not np.any(factors > 1):
        return transform.resize(image, shape, mode="constant", anti_aliasing=True, preserve_range=True)
    source = image.astype(np.float64)  # scikit-image's float conversion with preserve_range
    sigma = np.maximum(0, (factors - 1) / 2)
    radius = [int(4.0 * s + 0.5) for s in sigma]  # scipy.ndimage.gaussian_filter1d, truncate=4.0
    rows, cols = np.nonzero(image)
    window = (
        slice(max(int(rows.min()) - radius[0], 0), int(rows.max()) + radius[0] + 1),
        slice(max(int(cols.min()) - radius[1], 0), int(cols.max()) + radius[1] + 1),
    )
    blurred = np.zeros_like(source)
    blurred[window] = ndimage.gaussian_filter(source[window], sigma, cval=0, mode="constant")
    out = ndimage.zoom(blurred, [1 / f for f in factors], order=1, mode="grid-constant", cval=0, grid_mode=True)
    return np.clip(out, 0, int(image.max()), out=out)  # scikit-image clips to the input's range
