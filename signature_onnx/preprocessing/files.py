"""Reading image files safely with Pillow: every refusal is an `ImageError` naming the file.

Shared by both preprocessing styles and the cleaning model: a missing, empty, non-image,
truncated or corrupt file, a decompression bomb (a small file declaring a huge size) or an
unsupported mode is refused before or while decoding, never half-loaded.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from signature_onnx.errors import ImageError, shown
from signature_onnx.preprocessing.arrays import is_positive_int

# File endings that image folders are searched for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Pillow's modes for 16-bit grayscale samples (0..65535); 65535 / 257 == 255 exactly.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes that carry an alpha band; they are composited onto white paper before flattening.
_GRAY_ALPHA_MODES = frozenset({"LA", "La"})
_COLOR_ALPHA_MODES = frozenset({"RGBA", "RGBa", "PA"})
# Modes that Pillow flattens to "F" directly, exactly as scipy.misc.imread(flatten=1) did.
_DIRECT_MODES = frozenset({"1", "L", "RGB"})


@contextlib.contextmanager
def decoded_image(path: str | os.PathLike[str], max_pixels: int) -> Iterator[tuple[Image.Image, Path]]:
    """Open, size-check and decode an image file, refusing anything unsafe or broken by name."""
    if not is_positive_int(max_pixels):
        raise ValueError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    file = Path(path)
    _check_readable_file(file)
    # Pillow signals its own decompression-bomb limit with a warning (and an error above twice
    # the limit); turn the warning into an error so a bomb is refused, never half-loaded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open_image(file)
        try:
            _check_pixel_count(image, file, max_pixels)
            _decode(image, file)
            yield image, file
        finally:
            image.close()


def load_rgb(path: str | os.PathLike[str], *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Load an image file as RGB, for models that take color (the cleaning autoencoder).

    Same checks and refusals as `load_signature` (missing, empty, not an image, truncated,
    decompression bomb). Transparent pixels become white paper; 16-bit and other gray modes
    are gray in all three channels.

    Returns:
        uint8 array of shape (rows, cols, 3), values 0..255.
    """
    with decoded_image(path, max_pixels) as (image, file):
        if image.mode in _SIXTEEN_BIT_MODES or image.mode in {"I", "F"}:
            gray = flatten_to_gray(image, file).round().astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        rgba = np.array(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:] / 255.0
    return (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def _check_readable_file(file: Path) -> None:
    """Fail early, with a plain message, on a path that cannot hold an image at all."""
    if not file.exists():
        raise ImageError(f"{shown(file)}: no such file; expected a signature image (PNG, JPEG, TIFF, ...)")
    if not file.is_file():
        raise ImageError(f"{shown(file)}: is not a regular file; expected a signature image file")
    if file.stat().st_size == 0:
        raise ImageError(f"{shown(file)}: the file is empty (0 bytes); expected a signature image")


def _open_image(file: Path) -> Image.Image:
    """Open (read the header of) an image file; nothing is decoded yet."""
    try:
        return Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{shown(file)}: refused to decode, the image is too large for Pillow's limit "
            f"({exc}); expected a signature scan of at most a few megapixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{shown(file)}: not a recognised image file; expected a signature image (PNG, JPEG, TIFF, BMP, ...)"
        ) from exc
    except OSError as exc:  # permission denied, I/O error, broken header
        raise ImageError(f"{shown(file)}: cannot be read as an image ({exc})") from exc
    except (
        ValueError,
        SyntaxError,
        EOFError,
        MemoryError,
    ) as exc:  # a PNG text-chunk bomb ("Decompressed Data Too Large"), odd headers
        raise ImageError(
            f"{shown(file)}: refused while reading its header ({exc}); expected a signature image with ordinary metadata"
        ) from exc


def _check_pixel_count(image: Image.Image, file: Path, max_pixels: int) -> None:
    """Refuse an image whose declared size exceeds `max_pixels`, before any decoding."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{shown(file)}: declares {width}x{height} = {width * height} pixels, more than "
            f"max_pixels={max_pixels}; refused to decode (possible decompression bomb); "
            "expected a signature scan"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{shown(file)}: has no pixels ({width}x{height}); expected a signature image")


def _decode(image: Image.Image, file: Path) -> None:
    """Decode the pixel data now, so a truncated or corrupt file fails here with its name."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{shown(file)}: refused to decode, the image is too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageError(
            f"{shown(file)}: the image data is truncated or corrupt ({exc}); expected a complete image"
        ) from exc


def flatten_to_gray(image: Image.Image, file: Path) -> np.ndarray:
    """Turn a decoded Pillow image of any supported mode into float32 gray 0..255 (2-D)."""
    mode = image.mode
    try:
        if mode in _SIXTEEN_BIT_MODES or mode == "I":
            gray = _sixteen_bit_to_gray(image, file)
        elif mode == "F":
            gray = np.array(image, dtype=np.float32)
        elif mode in _GRAY_ALPHA_MODES | _COLOR_ALPHA_MODES or "transparency" in image.info:
            gray = _composite_on_white(image)
        elif mode in _DIRECT_MODES:
            gray = np.array(image.convert("F"), dtype=np.float32)
        else:  # "P" without transparency (as scipy did), CMYK, YCbCr, LAB, HSV, RGBX, ...
            gray = np.array(image.convert("RGB").convert("F"), dtype=np.float32)
    except ValueError as exc:  # Pillow cannot convert this mode
        raise ImageError(
            f"{shown(file)}: unsupported image mode {mode!r} ({exc}); expected a grayscale or color image"
        ) from exc
    _check_gray_range(gray, file)
    return gray


def _sixteen_bit_to_gray(image: Image.Image, file: Path) -> np.ndarray:
    """Scale 16-bit samples (0..65535) to 0..255 by dividing by 257, so 65535 maps to 255."""
    samples = np.array(image, dtype=np.float64)
    if samples.size and (samples.min() < 0 or samples.max() > 65535):
        raise ImageError(
            f"{shown(file)}: 32-bit integer image with values {samples.min():.0f}..{samples.max():.0f}; "
            "expected 8-bit or 16-bit samples (0..65535)"
        )
    return (samples / 257.0).astype(np.float32)


def _composite_on_white(image: Image.Image) -> np.ndarray:
    """Flatten an image with alpha as if printed on white paper: L*a + 255*(1 - a).

    Luminance is linear in R, G, B, so flattening first and compositing after gives the gray of
    the composited color image. A fully opaque pixel keeps exactly its flattened value.
    """
    if image.mode in _GRAY_ALPHA_MODES or (image.mode == "L" and "transparency" in image.info):
        with_alpha = image.convert("LA")
        gray = np.array(with_alpha.getchannel("L").convert("F"), dtype=np.float64)
    else:
        with_alpha = image.convert("RGBA")
        gray = np.array(with_alpha.convert("RGB").convert("F"), dtype=np.float64)
    alpha = np.array(with_alpha.getchannel("A"), dtype=np.float64) / 255.0
    return (gray * alpha + 255.0 * (1.0 - alpha)).astype(np.float32)


def _check_gray_range(gray: np.ndarray, file: Path) -> None:
    """A loaded image must be 2-D, finite and within 0..255 (only "F" files can break this)."""
    if gray.ndim != 2:
        raise ImageError(f"{shown(file)}: decoded to shape {gray.shape}; expected a 2-D grayscale image")
    if not np.isfinite(gray).all():
        raise ImageError(f"{shown(file)}: contains NaN or infinite pixel values; expected 0..255")
    if gray.min() < 0 or gray.max() > 255:
        raise ImageError(
            f"{shown(file)}: pixel values {gray.min():g}..{gray.max():g} are outside 0..255; "
            "expected an 8-bit range grayscale image"
        )
