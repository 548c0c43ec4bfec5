"""Signature preprocessing of the seed notebook, ported from sigver_wiwd `preprocess/normalize.py`.

Origin: luizgh/sigver_wiwd, `preprocess/normalize.py` (Hafemann, Sabourin and Oliveira), plus
the loading step of its examples, `scipy.misc.imread(path, flatten=1)`. The SigNet models were
trained on images made exactly this way, so every step here reproduces the original pixel for
pixel (see the golden outputs in `fixtures/sigver_wiwd/`). `scipy.misc` no longer exists; its
`imread`, `imresize` and `bytescale` are re-implemented below with numpy and Pillow, following
the scipy 1.x source.

Conventions (as in sigver): a "signature image" is a 2-D array, rows x cols, grayscale 0..255
with white paper = 255 and dark ink near 0. `preprocess_signature` returns the network input:
uint8, (150, 220) by default, INVERTED (background 0, ink up to 255).

Differences from the seed, for inputs the seed did not handle (none of them changes the output
for a valid 8-bit scan):
- every problem with the input raises `ImageError` (a `ValueError`), whose message names the
  file (or the `source` given by the caller) and says what was expected, instead of a numpy,
  OpenCV or Pillow traceback or a silently wrong result;
- `load_signature` refuses images of more than `max_pixels` pixels before decoding them, scales
  16-bit images to 0..255 and composites transparent images onto white paper;
- the warning for a signature larger than the canvas uses `warnings.warn`, not `print`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from stages.errors import PipelineError

__all__ = [
    "ImageError",
    "load_signature",
    "load_rgb",
    "normalize_image",
    "remove_background",
    "resize_image",
    "crop_center",
    "preprocess_signature",
]

Source = str | os.PathLike[str] | None

# The canvas of the seed notebook and of the SigNet family's training: (rows, cols).
SIGNET_CANVAS = (952, 1360)
# File endings that image folders are searched for.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# Pillow's modes for 16-bit grayscale samples (0..65535); 65535 / 257 == 255 exactly.
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Modes that carry an alpha band; they are composited onto white paper before flattening.
_GRAY_ALPHA_MODES = frozenset({"LA", "La"})
_COLOR_ALPHA_MODES = frozenset({"RGBA", "RGBa", "PA"})
# Modes that Pillow flattens to "F" directly, exactly as scipy.misc.imread(flatten=1) did.
_DIRECT_MODES = frozenset({"1", "L", "RGB"})


class ImageError(PipelineError, ValueError):
    """A signature image (file or array) that cannot be preprocessed.

    The message names the file (or the `source` passed by the caller) and says what was
    expected. It is a `ValueError` for callers of this module and a `PipelineError`, so that a
    stage run reports it as one line instead of a traceback.
    """


# --------------------------------------------------------------------------------------------
# Loading (scipy.misc.imread(path, flatten=1))
# --------------------------------------------------------------------------------------------


def load_signature(path: str | os.PathLike[str], *, max_pixels: int = 50_000_000) -> np.ndarray:
    """Load an image file as a grayscale float image, like `scipy.misc.imread(path, flatten=1)`.

    Color is flattened with Pillow's "F" conversion, L = 0.299 R + 0.587 G + 0.114 B, so an
    8-bit grayscale or RGB file gives exactly the values the seed got.

    Other kinds of file (documented behaviour, the seed did not handle them):
    - palette ("P") images are expanded to RGB first, as scipy did;
    - images with transparency ("RGBA", "LA", "PA", or a palette/gray/RGB image with a
      transparency key) are composited onto white paper (255): transparent = blank paper;
    - 16-bit grayscale ("I;16*") is scaled to 0..255 by dividing by 257 (65535 -> 255);
      32-bit integer ("I") images are read as 16-bit samples and refused outside 0..65535;
    - float ("F") images are taken as they are and must lie in 0..255;
    - CMYK, YCbCr, LAB, HSV and other color modes are converted to RGB first;
    - of a multi-frame file (GIF, TIFF) only the first frame is read; EXIF orientation is
      ignored, as in the seed.

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
    with _decoded_image(path, max_pixels) as (image, file):
        return _flatten_to_gray(image, file)


@contextlib.contextmanager
def _decoded_image(path: str | os.PathLike[str], max_pixels: int) -> Iterator[tuple[Image.Image, Path]]:
    """Open, size-check and decode an image file, refusing anything unsafe or broken by name."""
    if not _is_positive_int(max_pixels):
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
    with _decoded_image(path, max_pixels) as (image, file):
        if image.mode in _SIXTEEN_BIT_MODES or image.mode in {"I", "F"}:
            gray = _flatten_to_gray(image, file).round().astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        rgba = np.array(image.convert("RGBA"), dtype=np.float64)
    alpha = rgba[..., 3:] / 255.0
    return (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).round().astype(np.uint8)


def _check_readable_file(file: Path) -> None:
    """Fail early, with a plain message, on a path that cannot hold an image at all."""
    if not file.exists():
        raise ImageError(f"{file}: no such file; expected a signature image (PNG, JPEG, TIFF, ...)")
    if not file.is_file():
        raise ImageError(f"{file}: is not a regular file; expected a signature image file")
    if file.stat().st_size == 0:
        raise ImageError(f"{file}: the file is empty (0 bytes); expected a signature image")


def _open_image(file: Path) -> Image.Image:
    """Open (read the header of) an image file; nothing is decoded yet."""
    try:
        return Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(
            f"{file}: refused to decode, the image is too large for Pillow's limit "
            f"({exc}); expected a signature scan of at most a few megapixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{file}: not a recognised image file; expected a signature image "
            "(PNG, JPEG, TIFF, BMP, ...)"
        ) from exc
    except OSError as exc:  # permission denied, I/O error, broken header
        raise ImageError(f"{file}: cannot be read as an image ({exc})") from exc


def _check_pixel_count(image: Image.Image, file: Path, max_pixels: int) -> None:
    """Refuse an image whose declared size exceeds `max_pixels`, before any decoding."""
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(
            f"{file}: declares {width}x{height} = {width * height} pixels, more than "
            f"max_pixels={max_pixels}; refused to decode (possible decompression bomb); "
            "expected a signature scan"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{file}: has no pixels ({width}x{height}); expected a signature image")


def _decode(image: Image.Image, file: Path) -> None:
    """Decode the pixel data now, so a truncated or corrupt file fails here with its name."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{file}: refused to decode, the image is too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageError(
            f"{file}: the image data is truncated or corrupt ({exc}); expected a complete image"
        ) from exc


def _flatten_to_gray(image: Image.Image, file: Path) -> np.ndarray:
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
            f"{file}: unsupported image mode {mode!r} ({exc}); expected a grayscale or color image"
        ) from exc
    _check_gray_range(gray, file)
    return gray


def _sixteen_bit_to_gray(image: Image.Image, file: Path) -> np.ndarray:
    """Scale 16-bit samples (0..65535) to 0..255 by dividing by 257, so 65535 maps to 255."""
    samples = np.array(image, dtype=np.float64)
    if samples.size and (samples.min() < 0 or samples.max() > 65535):
        raise ImageError(
            f"{file}: 32-bit integer image with values {samples.min():.0f}..{samples.max():.0f}; "
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
        raise ImageError(f"{file}: decoded to shape {gray.shape}; expected a 2-D grayscale image")
    if not np.isfinite(gray).all():
        raise ImageError(f"{file}: contains NaN or infinite pixel values; expected 0..255")
    if gray.min() < 0 or gray.max() > 255:
        raise ImageError(
            f"{file}: pixel values {gray.min():g}..{gray.max():g} are outside 0..255; "
            "expected an 8-bit range grayscale image"
        )


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
            are truncated to uint8 as in the seed (`img.astype(np.uint8)`).
        canvas_size: (rows, cols) of the blank canvas the signature is centered on; the seed's
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
    gray = _as_uint8_image(img, source)
    centered = normalize_image(gray, canvas_size, source=source)
    inverted = 255 - centered  # the networks expect ink high, paper 0
    resized = resize_image(inverted, img_size, source=source)
    return crop_center(resized, input_size, source=source)


def normalize_image(
    img: np.ndarray, size: tuple[int, int] = (840, 1360), *, source: Source = None
) -> np.ndarray:
    """Center the signature on a white canvas of `size` and remove background noise (Otsu).

    The ink is located on a Gaussian-blurred copy (sigma 2) binarized with Otsu's threshold;
    the tight box around it is pasted so that the ink's center of mass lands at the canvas
    center (shifted back when it would overflow, clamped at 0). Finally every pixel brighter
    than the Otsu threshold becomes 255.

    A signature whose ink box is taller (wider) than the canvas keeps only its middle `size`
    rows (columns) and is placed at row (column) 0; a `UserWarning` says so (the seed printed a
    warning). A blank page with scanner noise is not detectable: the noise is taken as ink.

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255. Non-uint8 input is
            truncated to uint8 (the seed was always called with uint8).
        size: (rows, cols) of the canvas.
        source: optional file name used in error messages.

    Returns:
        uint8 array of shape `size`, values 0..255, white paper = 255.

    Raises:
        ImageError: not a 2-D image, non-finite values or values outside 0..255, or no ink to
            find (uniform image, e.g. a blank white page), or an ink box one pixel thin.
        ValueError: `size` is not a pair of positive integers.
    """
    max_r, max_c = _check_size(size, "size")
    gray = _as_uint8_image(img, source)

    threshold, ink_rows, ink_cols = _find_ink(gray, source)
    # Offsets of the center of mass inside the tight box, truncated as in the seed.
    r_center = int(ink_rows.mean() - ink_rows.min())
    c_center = int(ink_cols.mean() - ink_cols.min())
    # The seed's slice excludes the last ink row and column; kept for identical output.
    cropped = gray[ink_rows.min() : ink_rows.max(), ink_cols.min() : ink_cols.max()]
    if cropped.size == 0:
        raise ImageError(
            f"{_name(source)}: the ink is a single row or column ({cropped.shape}); "
            "expected a signature"
        )

    if cropped.shape[0] > max_r or cropped.shape[1] > max_c:
        warnings.warn(
            f"{_name(source)}: the signature ({cropped.shape[0]}x{cropped.shape[1]}) is larger "
            f"than the canvas ({max_r}x{max_c}); cropping its middle part. The signature should "
            "be smaller than the canvas size",
            UserWarning,
            stacklevel=2,
        )
    cropped, r_start = _place_on_axis(cropped, 0, max_r // 2 - r_center, max_r)
    cropped, c_start = _place_on_axis(cropped, 1, max_c // 2 - c_center, max_c)

    normalized = np.full((max_r, max_c), 255, dtype=np.uint8)
    normalized[r_start : r_start + cropped.shape[0], c_start : c_start + cropped.shape[1]] = cropped
    # Remove noise: anything lighter than the threshold is paper. The ink stays grayscale.
    normalized[normalized > threshold] = 255
    return normalized


def _find_ink(gray: np.ndarray, source: Source) -> tuple[float, np.ndarray, np.ndarray]:
    """Otsu threshold of the blurred image and the row/column indices of its ink pixels.

    The blur (sigma 2, scipy.ndimage on uint8, uint8 result) only serves to find the box and
    the threshold, so isolated specks do not stretch the box.
    """
    if gray.min() == gray.max():
        raise ImageError(
            f"{_name(source)}: the image is uniform (every pixel is {gray.min()}), it has no "
            "ink/foreground; expected a signature on paper"
        )
    blurred = ndimage.gaussian_filter(gray, 2)
    threshold, binarized = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink_rows, ink_cols = np.where(binarized == 0)
    if ink_rows.size == 0 or ink_rows.size == binarized.size:
        raise ImageError(
            f"{_name(source)}: no ink/foreground found (Otsu threshold {threshold:g} separates "
            "nothing); expected a signature on paper"
        )
    return threshold, ink_rows, ink_cols


def _place_on_axis(
    cropped: np.ndarray, axis: int, start: int, canvas_len: int
) -> tuple[np.ndarray, int]:
    """Where the box starts on one canvas axis; a box longer than the canvas keeps its middle.

    Returns the (possibly cropped) box and its start index, so that it lies inside
    [0, canvas_len) -- the seed's cases 1 and 2, per axis.
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


def remove_background(img: np.ndarray, *, source: Source = None) -> np.ndarray:
    """Set to white (255) every pixel lighter than the image's own Otsu threshold.

    Used by the SPP models, which take the whole image without centering. A uniform image
    (e.g. a blank page) has nothing to separate: OpenCV's threshold is then 0 and every pixel
    above 0 becomes 255 (documented, as the seed).

    Args:
        img: 2-D array (rows, cols), values 0..255, white paper = 255; truncated to uint8.
        source: optional file name used in error messages.

    Returns:
        uint8 array of the same shape (a new array; the input is not modified), values 0..255,
        white paper = 255, ink keeps its gray levels.

    Raises:
        ImageError: not a 2-D image, non-finite values or values outside 0..255.
    """
    gray = _as_uint8_image(img, source).copy()  # never write into the caller's array
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
    height, width = _check_size(size, "size")
    image = _as_2d_real(img, source)

    width_ratio = float(image.shape[1]) / width
    height_ratio = float(image.shape[0]) / height
    if width_ratio > height_ratio:
        resize_height = height
        resize_width = int(round(image.shape[1] / height_ratio))
    else:
        resize_width = width
        resize_height = int(round(image.shape[0] / width_ratio))

    # Will still be larger than `size` along one axis.
    resized = _imresize(image.astype(np.float32), (resize_height, resize_width))

    if width_ratio > height_ratio:
        start = int(round((resize_width - width) / 2.0))
        return resized[:, start : start + width]
    start = int(round((resize_height - height) / 2.0))
    return resized[start : start + height, :]


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


def crop_center(img: np.ndarray, size: tuple[int, int], *, source: Source = None) -> np.ndarray:
    """Cut the central `size` window of an image (start = (shape - size) // 2 on each axis).

    Args:
        img: 2-D array (rows, cols), any dtype.
        size: (rows, cols) of the window; must fit inside the image.
        source: optional file name used in error messages.

    Returns:
        array of shape `size` and the dtype of `img`: a view of `img`, as in the seed.

    Raises:
        ImageError: `img` is not 2-D or is smaller than `size`.
        ValueError: `size` is not a pair of positive integers.
    """
    height, width = _check_size(size, "size")
    image = np.asarray(img)
    if image.ndim != 2:
        raise ImageError(
            f"{_name(source)}: expected a 2-D image (rows, cols), got an array of shape "
            f"{image.shape}"
        )
    if height > image.shape[0] or width > image.shape[1]:
        raise ImageError(
            f"{_name(source)}: cannot crop {height}x{width} from an image of "
            f"{image.shape[0]}x{image.shape[1]}; expected a crop size no larger than the image"
        )
    start_y = (image.shape[0] - height) // 2
    start_x = (image.shape[1] - width) // 2
    return image[start_y : start_y + height, start_x : start_x + width]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _name(source: Source) -> str:
    """How error messages refer to the image: its file name, or 'input image'."""
    return str(source) if source is not None else "input image"


def _check_size(size: Any, what: str) -> tuple[int, int]:
    """A (rows, cols) pair of positive integers, as plain ints."""
    message = f"{what} must be a (rows, cols) pair of positive integers, got {size!r}"
    try:
        rows, cols = size
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (_is_positive_int(rows) and _is_positive_int(cols)):
        raise ValueError(message)
    return int(rows), int(cols)


def _is_positive_int(value: Any) -> bool:
    """True for a Python or numpy integer > 0 (bool excluded: True is not a size)."""
    return not isinstance(value, bool) and isinstance(value, int | np.integer) and value > 0


def _as_2d_real(img: Any, source: Source) -> np.ndarray:
    """The input as a non-empty 2-D array of finite real numbers (bool counts as 0/1)."""
    image = np.asarray(img)
    if image.ndim != 2:
        raise ImageError(
            f"{_name(source)}: expected a 2-D grayscale image (rows, cols), got an array of "
            f"shape {image.shape}"
        )
    if image.size == 0:
        raise ImageError(f"{_name(source)}: the image is empty (shape {image.shape})")
    real = np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    if not (real or image.dtype == np.bool_):
        raise ImageError(
            f"{_name(source)}: pixel dtype {image.dtype} is not a real number type; "
            "expected uint8 or float gray values"
        )
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ImageError(f"{_name(source)}: contains NaN or infinite pixel values")
    return image


def _as_uint8_image(img: Any, source: Source) -> np.ndarray:
    """The input checked to be a 2-D gray image in 0..255, cast to uint8 like the seed.

    Floats are truncated (`astype(np.uint8)`), as in the seed; out-of-range values would wrap
    around silently there, so they are refused here.
    """
    image = _as_2d_real(img, source)
    if image.dtype == np.uint8:
        return image
    low, high = image.min(), image.max()
    if low < 0 or high > 255:
        raise ImageError(
            f"{_name(source)}: pixel values {low}..{high} are outside 0..255; "
            "expected an 8-bit grayscale image"
        )
    return image.astype(np.uint8)
