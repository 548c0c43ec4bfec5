"""Each model's own preprocessing, described by its `Preprocessing` (read from its model folder).

Styles (same function names in each module: `load_signature`, `normalize_image`,
`remove_background`, `resize_image`, `crop_center`, `preprocess_signature`):

- "wiwd": sigver_wiwd's code (Lasagne SigNet pickles): `signature_onnx.preprocessing.wiwd`;
- "sigver": sigver's scikit-image code (sigver .pth SigNets, the Siamese verifier):
  `signature_onnx.preprocessing.sigver`;
- "rgb": the cleaning autoencoder's input, an RGB page resized (OpenCV INTER_AREA) to the
  network's size.

`prepare(...)` turns an image into what the network takes, so a user never picks the style,
canvas, sizes or scaling by hand.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from signature_onnx.errors import ImageError, ModelFolderError, shown
from signature_onnx.preprocessing.arrays import Source, as_2d_real, name
from signature_onnx.preprocessing.files import IMAGE_SUFFIXES, load_rgb

__all__ = ["STYLES", "SIGNATURE_STYLES", "IMAGE_SUFFIXES", "Preprocessing", "style_module", "load_rgb", "ImageError"]

# Style name -> its module, imported when first used: scikit-image, SciPy and OpenCV cost a
# command that never preprocesses (check-vectors, --help) a third of its start-up.
SIGNATURE_STYLES: dict[str, str] = {
    "wiwd": "signature_onnx.preprocessing.wiwd",
    "sigver": "signature_onnx.preprocessing.sigver",
}
STYLES = (*SIGNATURE_STYLES, "rgb")
# Upper bound of every side of canvas, img_size and input_size. The largest size in the upstream
# facts (docs/MODEL_FACTS.md) is the SigNet canvas (952, 1360); twice its long side leaves room
# for scans at higher resolution while a canvas stays below 2720 x 2720 = 7.4 M pixels (the
# float64 steps then need about 60 MB, not the 80 GB a 100000 x 100000 "size" would ask for).
MAX_SIDE = 2 * 1360


def size_problem(value: Any) -> str | None:
    """Why `value` is not a (rows, cols) size of 1..MAX_SIDE each, or None when it is one."""
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        return f"must be [rows, cols], got {shown(repr(value), 60)}"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return f"must be two integers, got {shown(repr(value), 60)}"
    if not all(1 <= v <= MAX_SIDE for v in value):
        return f"must be two integers from 1 to {MAX_SIDE} (twice the largest upstream canvas side), got {shown(repr(value), 60)}"
    return None


def style_module(style: str) -> ModuleType:
    """The module of a signature style ("wiwd" or "sigver")."""
    try:
        return importlib.import_module(SIGNATURE_STYLES[style])
    except KeyError:
        raise ValueError(f"unknown preprocessing style {style!r}; expected one of {sorted(SIGNATURE_STYLES)}") from None


@dataclass(frozen=True)
class Preprocessing:
    """How a model's input is made from an image file (the `preprocessing.json` of its folder).

    style: "wiwd" | "sigver" (signatures) | "rgb" (cleaning pages).
    input_size: (rows, cols) of the network input (for SPP, the smallest accepted size).
    canvas: (rows, cols) the signature is centered on (signature styles, not SPP).
    img_size: (rows, cols) the canvas is resized to before the center crop (signature styles).
    input_divisor: the 0..255 image is divided by this (1: Lasagne SigNets; 255: sigver .pth,
        cleaning). Ignored for a uint8 network input (the Siamese model divides internally).
    spp: True for SigNet-SPP: `255 - remove_background(img)` at the image's own size.
    """

    style: str
    input_size: tuple[int, int]
    canvas: tuple[int, int] | None = None
    img_size: tuple[int, int] | None = None
    input_divisor: int = 1
    spp: bool = False

    def __post_init__(self) -> None:
        # The bounds hold however a Preprocessing is made (a folder's file, command-line flags).
        for key in ("input_size", "canvas", "img_size"):
            value = getattr(self, key)
            problem = None if value is None and key != "input_size" else size_problem(value)
            if problem:
                raise ValueError(f"{key} {problem}")

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Preprocessing":
        """Read and check the JSON form; a bad value fails naming `where` and the key."""
        if not isinstance(data, dict):
            raise ModelFolderError(f"{where}: expected a JSON object describing the preprocessing")
        known = {"style", "input_size", "canvas", "img_size", "input_divisor", "spp"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFolderError(f"{where}: unknown keys {shown(unknown)}; expected only {sorted(known)}")
        style = data.get("style")
        if style not in STYLES:
            raise ModelFolderError(f"{where}: style {shown(repr(style), 60)} is not one of {list(STYLES)}")

        def pair(key: str, required: bool) -> tuple[int, int] | None:
            value = data.get(key)
            if value is None and not required:
                return None
            problem = (
                size_problem(value)
                if isinstance(value, list)
                else f"must be [rows, cols], got {shown(repr(value), 60)}"
            )
            if problem:
                raise ModelFolderError(f"{where}: {key} {problem}")
            return (value[0], value[1])

        divisor = data.get("input_divisor", 1)
        if divisor not in (1, 255) or isinstance(divisor, bool):
            raise ModelFolderError(f"{where}: input_divisor must be 1 or 255, got {shown(repr(divisor), 60)}")
        spp = data.get("spp", False)
        if not isinstance(spp, bool):
            raise ModelFolderError(f"{where}: spp must be true or false, got {shown(repr(spp), 60)}")
        signature_centered = style in SIGNATURE_STYLES and not spp
        return cls(
            style=style,
            input_size=pair("input_size", True),  # type: ignore[arg-type]
            canvas=pair("canvas", signature_centered),
            img_size=pair("img_size", signature_centered),
            input_divisor=divisor,
            spp=spp,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (lists for sizes, absent keys for None)."""
        data: dict[str, Any] = {
            "style": self.style,
            "input_size": list(self.input_size),
            "input_divisor": self.input_divisor,
            "spp": self.spp,
        }
        if self.canvas is not None:
            data["canvas"] = list(self.canvas)
        if self.img_size is not None:
            data["img_size"] = list(self.img_size)
        return data

    # ---- images -> network inputs ------------------------------------------------------------

    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """Read an image file as this style does: gray (rows, cols) 0..255 or, for "rgb", uint8 RGB."""
        if self.style == "rgb":
            return load_rgb(path)
        return style_module(self.style).load_signature(path)

    def gray_from_rgb(self, rgb: np.ndarray) -> np.ndarray:
        """What `load` returns for a file that decodes to these pixels, uint8 RGB (rows, cols, 3).

        The input form of the preprocessing graphs (preprocess.onnx): "wiwd" Pillow's float gray,
        "sigver" scikit-image's uint8 gray, "rgb" the pixels themselves.
        """
        if self.style == "rgb":
            return rgb
        return style_module(self.style).gray_from_rgb(rgb)

    def image(self, img: np.ndarray, *, source: Source = None) -> np.ndarray:
        """The preprocessed image, uint8, ink bright (signature styles) or RGB at the network size.

        Signature styles: `preprocess_signature(img, canvas, img_size, input_size)` (rows, cols)
        = `input_size`; SPP: `255 - remove_background(img)` at the image's own size.
        "rgb": uint8 (rows, cols, 3) resized with OpenCV INTER_AREA to `input_size`.
        """
        if self.style == "rgb":
            return _resize_rgb(img, self.input_size, source)
        module = style_module(self.style)
        if self.spp:
            image = as_2d_real(img, source)
            if image.shape[0] < self.input_size[0] or image.shape[1] < self.input_size[1]:
                raise ImageError(
                    f"{name(source)}: the image is {image.shape[0]}x{image.shape[1]}, smaller than the "
                    f"{self.input_size[0]}x{self.input_size[1]} this SPP model accepts; expected a larger scan"
                )
            return 255 - module.remove_background(image, source=source)
        return module.preprocess_signature(img, self.canvas, self.img_size, self.input_size, source=source)

    def network_input(self, processed: np.ndarray, dtype: str) -> np.ndarray:
        """One preprocessed image as the network takes it.

        dtype "uint8": the image itself, (rows, cols) (the Siamese model). dtype "float32": the
        image divided by `input_divisor`, shape (1, 1, rows, cols), or (1, rows, cols, 3) for "rgb".
        """
        if dtype == "uint8":
            return np.ascontiguousarray(processed, dtype=np.uint8)
        scaled = processed.astype(np.float32)
        if self.input_divisor != 1:
            scaled = scaled / np.float32(self.input_divisor)
        return scaled[None] if self.style == "rgb" else scaled[None, None]


def _resize_rgb(rgb: np.ndarray, size: tuple[int, int], source: Source) -> np.ndarray:
    """uint8 (rows, cols, 3) -> uint8 (size[0], size[1], 3), OpenCV INTER_AREA (the notebook's)."""
    import cv2

    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ImageError(f"{name(source)}: expected a uint8 RGB image (rows, cols, 3), got {image.dtype} {image.shape}")
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
