"""Style "wiwd": the signature preprocessing of the original notebook, ported from sigver_wiwd `preprocess/normalize.py`.

Origin: luizgh/sigver_wiwd, `preprocess/normalize.py` (Hafemann, Sabourin and Oliveira), plus
the loading step of its examples, `scipy.misc.imread(path, flatten=1)`. The SigNet models were
trained on images made exactly this way, so every step here reproduces the original pixel for
pixel (the tests compare with the golden outputs of the sigver_wiwd repository). `scipy.misc` no longer exists; its
`imread`, `imresize` and `bytescale` are re-implemented below with numpy and Pillow, following
the scipy 1.x source.

Conventions (as in sigver): a "signature image" is a 2-D array, rows x cols, grayscale 0..255
with white paper = 255 and dark ink near 0. `preprocess_signature` returns the network input:
uint8, (150, 220) by default, INVERTED (background 0, ink up to 255).

Differences from the original code, for inputs the original code did not handle (none of them changes the output
for a valid 8-bit scan):
- every problem with the input raises `ImageError` (a `ValueError`), whose message names the
  file (or the `source` given by the caller) and says what was expected, instead of a numpy,
  OpenCV or Pillow traceback or a silently wrong result;
- `load_signature` refuses images of more than `max_pixels` pixels before decoding them, scales
  16-bit images to 0..255 and composites transparent images onto white paper;
- the warning for a signature larger than the canvas uses `warnings.warn`, not `print`.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from signature_onnx.errors import ImageError
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
from signature_onnx.preprocessing.files import decoded_image, flatten_to_gray

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
    """Load an image file as a grayscale float image, like `scipy.misc.imread(path, flatten=1)`.

    Color is flattened with Pillow's "F" conversion, L = 0.299 R + 0.587 G + 0.114 B, so an
    8-bit grayscale or RGB file gives exactly the values the original code got.

    Other kinds of file (documented behaviour, the original code did not handle them):
    - palette ("P") images are expanded to RGB first, as scipy did;
    - images with transparency ("RGBA", "LA", "PA", or a palette/gray/RGB image with a
      transparency key) are composited onto white paper (255): transparent = blank paper;
    - 16-bit grayscale ("I;16*") is scaled to 0..255 by dividing by 257 (65535 -> 255);
      32-bit integer ("I") images are read as 16-bit samples and refused outside 0..65535;
    - float ("F") images are taken as they are and must lie in 0..255;
    - CMYK, YCbCr, LAB, HSV and other color modes are converted to RGB first;
    - of a multi-frame file (GIF, TIFF) only the first frame is read; EXIF orientation is
      ignored, as in the original code.

    Args:
        path: the image file (any format Pillow reads: PNG, JPEG, TIFF, BMP, ...).
        max_pixels: refuse, before decoding, images with more pixels (width x height) than this,
            so a small file declaring a huge size (a decompression bomb) cannot exhaust memory.
            Pillow's own global limit (`Image.MAX_IMAGE_PIXELS`) applies as well.

    Returns:
        float32 array of shape (rows, cols), values in 0..255 (white paper = 255).

    Raises:
        ImageError: the file is missing, empty, not an image, truncated or corrupt, too large,
            or of an unsupported mode; the message names the file.
        ValueError: `max_pixels` is not a positive integer.
    """
    with decoded_image(path, max_pixels) as (image, file):
        return flatten_to_gray(image, file)


def gray_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """`load_signature` of a file that decodes to `rgb` (uint8 (rows, cols, 3)): Pillow's "F"
    conversion, float32 (rows, cols), L = 0.299 R + 0.587 G + 0.114 B."""
    return np.array(Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").convert("F"), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Preprocessing (sigver_wiwd preprocess/normalize.py)
# --------------------------------------------------------------------------------------------


def preprocess_signature(
    img: np.ndarray,
    canvas_size: tuple[int, int],
    img_size: tuple[int, int] = (170, 242),
    input_size: tuple[int, int] = (150, 220),
    *,
    source: Source = None,
) -> np.ndarray:
    """Turn a grayscale signature into the SigNet input: center, clean, invert, resize, crop.

    Args:
        img: 2-D array (rows, cols), values 0..255 (white paper = 255), any real dtype; floats
            are truncated to uint8 as in the original code (`img.astype(np.uint8)`).
        canvas_size: (rows, cols) of the blank canvas the signature is centered on; the original code's
            models use (952, 1360). A signature larger than the canvas is cropped to its middle
            part with a warning (see `normalize_image`).
        img_size: (rows, cols) the canvas is resized to, keeping the aspect ratio.
        input_size: (rows, cols) of the final center crop; must fit inside `img_size`.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `input_size`, values 0..255, INVERTED: background 0, ink > 0.

    Raises:
        ImageError: not a 2-D image, non-finite values or values outside 0..255, no ink
            (blank or uniform page), or `input_size` larger than `img_size`.
        ValueError: a size argument that is not a pair of positive integers.
    """
    gray = as_uint8_image(img, source)
    centered = normalize_image(gray, canvas_size, source=source)
    inverted = 255 - centered  # the networks expect ink high, paper 0
    resized = resize_image(inverted, img_size, source=source)
    return crop_center(resized, input_size, source=source)


def normalize_image(img: np.ndarray, size: tuple[int, int] = (840, 1360), *, source: Source = None) -> np.ndarray:
    """Center the signature on a white canvas of `size` and remove background noise (Otsu).

    The ink is located on a Gaussian-blurred copy (sigma 2) binarized with Otsu's threshold;
    the tight box around it is pasted so that the ink's center of mass lands at the canvas
    center (shifted back when it would overflow, clamped at 0). Finally every pixel brighter
    than the Otsu threshold becomes 255.

    A signature whose ink box is taller (wider) than the canvas keeps only its middle `size`
    rows (columns) and is placed at row (column) 0; a `UserWarning` says so (the original code printed a
    warning). A blank page with scanner noise is not detectable: the noise is taken as ink.

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255. Non-uint8 input is
            truncated to uint8 (the original code was always called with uint8).
        size: (rows, cols) of the canvas.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `size`, values 0..255, white paper = 255.

    Raises:
        ImageError: not a 2-D image, non-finite values or values outside 0..255, or no ink to
            find (uniform image, e.g. a blank white page), or an ink box one pixel thin.
        ValueError: `size` is not a pair of positive integers.
    """
    max_r, max_c = check_size(size, "size")
    gray = as_uint8_image(img, source)

    threshold, ink_rows, ink_cols = _find_ink(gray, source)
    return center_on_canvas(gray, threshold, ink_rows, ink_cols, (max_r, max_c), source)


def _find_ink(gray: np.ndarray, source: Source) -> tuple[float, np.ndarray, np.ndarray]:
    """Otsu threshold of the blurred image and the row/column indices of its ink pixels.

    The blur (sigma 2, scipy.ndimage on uint8, uint8 result) only serves to find the box and
    the threshold, so isolated specks do not stretch the box.
    """
    if gray.min() == gray.max():
        raise ImageError(
            f"{name(source)}: the image is uniform (every pixel is {gray.min()}), it has no "
            "ink/foreground; expected a signature on paper"
        )
    blurred = ndimage.gaussian_filter(gray, 2)
    threshold, binarized = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink_rows, ink_cols = np.where(binarized == 0)
    if ink_rows.size == 0 or ink_rows.size == binarized.size:
        raise ImageError(
            f"{name(source)}: no ink/foreground found (Otsu threshold {threshold:g} separates "
            "nothing); expected a signature on paper"
        )
    return threshold, ink_rows, ink_cols


def remove_background(img: np.ndarray, *, source: Source = None) -> np.ndarray:
    """Set to white (255) every pixel lighter than the image's own Otsu threshold.

    Used by the SPP models, which take the whole image without centering. A uniform image
    (e.g. a blank page) has nothing to separate: OpenCV's threshold is then 0 and every pixel
    above 0 becomes 255 (documented, as the original code).

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255; truncated to uint8.
        source: optional file name used in error messages.

    Returns:
        uint8 array of the same shape (a new array; the input is not modified), values 0..255,
        white paper = 255, ink keeps its gray levels.

    Raises:
        ImageError: not a 2-D image, non-finite values or values outside 0..255.
    """
    gray = as_uint8_image(img, source).copy()  # never write into the caller's array
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    gray[gray > threshold] = 255
    return gray


def resize_image(img: np.ndarray, size: tuple[int, int], *, source: Source = None) -> np.ndarray:
    """Resize to `size` without stretching: scale to cover it, then keep the middle.

    The image is scaled (bilinear) so that one side matches `size` and the other is at least as
    long, then the longer side is cropped to its middle. As `scipy.misc.imresize` did, the
    values are first byte-scaled to 0..255 (min -> 0, max -> 255), so the output always spans
    the full range whatever the input range.

    Args:
        img: 2-D array (rows, cols), any real dtype, finite values (any range).
        size: (rows, cols) of the output; may be larger than the image (upsampling).
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `size`, values 0..255.

    Raises:
        ImageError: not a non-empty 2-D array of finite real values.
        ValueError: `size` is not a pair of positive integers.
    """
    height, width = check_size(size, "size")
    image = as_2d_real(img, source)

    resize_rows, resize_cols, crop_axis, start = resize_target(image.shape, (height, width))
    # Will still be larger than `size` along one axis.
    resized = _imresize(image.astype(np.float32), (resize_rows, resize_cols))
    return keep_middle(resized, (height, width), crop_axis, start)


def _bytescale(data: np.ndarray) -> np.ndarray:
    """`scipy.misc.bytescale(data)` for float data: min -> 0, max -> 255, rounded half up.

    Follows scipy 1.x: cscale = max - min (1 when the image is constant), scale = 255 / cscale,
    then (data - min) * scale, clipped to 0..255, + 0.5 and truncated to uint8. The arithmetic
    stays in float32 for a float32 input, as it did there.
    """
    cmin = data.min()
    cmax = data.max()
    cscale = cmax - cmin
    if cscale == 0:  # constant image: scipy used a scale of 255 / 1, giving all zeros
        cscale = 1
    scale = float(255 - 0) / cscale
    bytedata = (data - cmin) * scale + 0
    return (bytedata.clip(0, 255) + 0.5).astype(np.uint8)


def _imresize(data: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`scipy.misc.imresize(data, (rows, cols))`: byte-scale, then Pillow bilinear resize.

    Returns a new, writable uint8 array of shape `size`.
    """
    rows, cols = size
    image = Image.fromarray(_bytescale(data))  # mode "L", as scipy's toimage made it
    return np.array(image.resize((cols, rows), resample=Image.Resampling.BILINEAR))
