"""What both preprocessing styles share: array checks, the canvas placement and the center crop.

Every function refuses bad input with an `ImageError` naming the image (its file, or the
`source` the caller passes) and saying what was expected.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from signature_onnx.errors import ImageError, shown

Source = str | os.PathLike[str] | None


def center_on_canvas(
    gray: np.ndarray,
    threshold: float,
    ink_rows: np.ndarray,
    ink_cols: np.ndarray,
    size: tuple[int, int],
    source: Source,
) -> np.ndarray:
    """Paste the tight ink box of `gray` on a white canvas, its ink's center of mass centered.

    Both styles (sigver_wiwd and sigver) do exactly this once they know the ink pixels and the
    threshold: offsets of the center of mass truncated to int, the box slice excluding its last
    row and column (kept for identical output), a box larger than the canvas keeps its middle
    part at 0 with a `UserWarning`, otherwise it is shifted back so it does not overflow and
    clamped at 0; finally every pixel brighter than `threshold` becomes 255.

    Args:
        gray: uint8 (rows, cols), white paper = 255.
        threshold: pixels above it are paper.
        ink_rows, ink_cols: int arrays, the row and column indices of the ink pixels (non-empty).
        size: (rows, cols) of the canvas, already checked.
        source: file name used in messages.

    Returns:
        uint8 array of shape `size`, values 0..255, white paper = 255.
    """
    max_r, max_c = size
    r_center = int(ink_rows.mean() - ink_rows.min())
    c_center = int(ink_cols.mean() - ink_cols.min())
    cropped = gray[ink_rows.min() : ink_rows.max(), ink_cols.min() : ink_cols.max()]
    if cropped.size == 0:
        raise ImageError(f"{name(source)}: the ink is a single row or column ({cropped.shape}); expected a signature")
    if cropped.shape[0] > max_r or cropped.shape[1] > max_c:
        warnings.warn(
            f"{name(source)}: the signature ({cropped.shape[0]}x{cropped.shape[1]}) is larger "
            f"than the canvas ({max_r}x{max_c}); cropping its middle part. The signature should "
            "be smaller than the canvas size",
            UserWarning,
            stacklevel=3,
        )
    cropped, r_start = place_on_axis(cropped, 0, max_r // 2 - r_center, max_r)
    cropped, c_start = place_on_axis(cropped, 1, max_c // 2 - c_center, max_c)
    normalized = np.full((max_r, max_c), 255, dtype=np.uint8)
    normalized[r_start : r_start + cropped.shape[0], c_start : c_start + cropped.shape[1]] = cropped
    # Remove noise: anything lighter than the threshold is paper. The ink stays grayscale.
    normalized[normalized > threshold] = 255
    return normalized


def resize_target(shape: tuple[int, ...], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The original code's `resize_image` arithmetic: (resize_rows, resize_cols, crop_axis, crop_start).

    Scale so that one side matches `size` and the other is at least as long; the longer side
    (`crop_axis`: 0 rows, 1 cols) is later cut from `crop_start`, rounded as the original code did.
    """
    height, width = size
    width_ratio = float(shape[1]) / width
    height_ratio = float(shape[0]) / height
    if width_ratio > height_ratio:
        resize_width = int(round(shape[1] / height_ratio))
        return height, resize_width, 1, int(round((resize_width - width) / 2.0))
    resize_height = int(round(shape[0] / width_ratio))
    return resize_height, width, 0, int(round((resize_height - height) / 2.0))


def keep_middle(resized: np.ndarray, size: tuple[int, int], crop_axis: int, start: int) -> np.ndarray:
    """Cut `size` out of `resized` along `crop_axis` from `start` (the original code's final slice)."""
    height, width = size
    if crop_axis == 1:
        return resized[:, start : start + width]
    return resized[start : start + height, :]


def place_on_axis(cropped: np.ndarray, axis: int, start: int, canvas_len: int) -> tuple[np.ndarray, int]:
    """Where the box starts on one canvas axis; a box longer than the canvas keeps its middle.

    Returns the (possibly cropped) box and its start index, so that it lies inside
    [0, canvas_len) -- the original code's cases 1 and 2, per axis.
    """
    length = cropped.shape[axis]
    if length > canvas_len:
        crop_start = (length - canvas_len) // 2
        keep = slice(crop_start, crop_start + canvas_len)
        cropped = cropped[keep, :] if axis == 0 else cropped[:, keep]
        return cropped, 0
    overflow = start + length - canvas_len
    if overflow > 0:  # exact centering would run off the canvas: relax it
        start -= overflow
    return cropped, max(start, 0)


def crop_center(img: np.ndarray, size: tuple[int, int], *, source: Source = None) -> np.ndarray:
    """Cut the central `size` window of an image (start = (shape - size) // 2 on each axis).

    Args:
        img: 2-D array (rows, cols), any dtype.
        size: (rows, cols) of the window; must fit inside the image.
        source: optional file name used in error messages.

    Returns:
        array of shape `size` and the dtype of `img`: a view of `img`, as in the original code.

    Raises:
        ImageError: `img` is not 2-D or is smaller than `size`.
        ValueError: `size` is not a pair of positive integers.
    """
    height, width = check_size(size, "size")
    image = np.asarray(img)
    if image.ndim != 2:
        raise ImageError(f"{name(source)}: expected a 2-D image (rows, cols), got an array of shape {image.shape}")
    if height > image.shape[0] or width > image.shape[1]:
        raise ImageError(
            f"{name(source)}: cannot crop {height}x{width} from an image of "
            f"{image.shape[0]}x{image.shape[1]}; expected a crop size no larger than the image"
        )
    start_y = (image.shape[0] - height) // 2
    start_x = (image.shape[1] - width) // 2
    return image[start_y : start_y + height, start_x : start_x + width]


def name(source: Source) -> str:
    """How error messages refer to the image: its file name, or 'input image'."""
    return shown(source) if source is not None else "input image"


def check_size(size: Any, what: str) -> tuple[int, int]:
    """A (rows, cols) pair of positive integers, as plain ints."""
    message = f"{what} must be a (rows, cols) pair of positive integers, got {size!r}"
    try:
        rows, cols = size
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (is_positive_int(rows) and is_positive_int(cols)):
        raise ValueError(message)
    return int(rows), int(cols)


def is_positive_int(value: Any) -> bool:
    """True for a Python or numpy integer > 0 (bool excluded: True is not a size)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value > 0


def as_2d_real(img: Any, source: Source) -> np.ndarray:
    """The input as a non-empty 2-D array of finite real numbers (bool counts as 0/1)."""
    image = np.asarray(img)
    if image.ndim != 2:
        raise ImageError(
            f"{name(source)}: expected a 2-D grayscale image (rows, cols), got an array of shape {image.shape}"
        )
    if image.size == 0:
        raise ImageError(f"{name(source)}: the image is empty (shape {image.shape})")
    real = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if not (real or image.dtype == np.bool_):
        raise ImageError(
            f"{name(source)}: pixel dtype {image.dtype} is not a real number type; expected uint8 or float gray values"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ImageError(f"{name(source)}: contains NaN or infinite pixel values")
    return image


def as_uint8_image(img: Any, source: Source) -> np.ndarray:
    """The input checked to be a 2-D gray image in 0..255, cast to uint8 like the original code.

    Floats are truncated (`astype(np.uint8)`), as in the original code; out-of-range values would wrap
    around silently there, so they are refused here.
    """
    image = as_2d_real(img, source)
    if image.dtype == np.uint8:
        return image
    low, high = image.min(), image.max()
    if low < 0 or high > 255:
        raise ImageError(
            f"{name(source)}: pixel values {low}..{high} are outside 0..255; expected an 8-bit grayscale image"
        )
    return image.astype(np.uint8)
