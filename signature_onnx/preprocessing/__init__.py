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

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from signature_onnx.errors import ImageError, ModelFolderError
from signature_onnx.preprocessing import sigver, wiwd
from signature_onnx.preprocessing.arrays import Source, as_2d_real, name
from signature_onnx.preprocessing.files import IMAGE_SUFFIXES, load_rgb

__all__ = ["STYLES", "SIGNATURE_STYLES", "IMAGE_SUFFIXES", "Preprocessing", "style_module", "load_rgb", "ImageError"]

SIGNATURE_STYLES: dict[str, ModuleType] = {"wiwd": wiwd, "sigver": sigver}
STYLES = (*SIGNATURE_STYLES, "rgb")


def style_module(style: str) -> ModuleType:
    """The module of a signature style ("wiwd" or "sigver")."""
    try:
        return SIGNATURE_STYLES[style]
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

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "Preprocessing":
        """Read and check the JSON form; a bad value fails naming `where` and the key."""
        if not isinstance(data, dict):
            raise ModelFolderError(f"{where}: expected a JSON object describing the preprocessing")
        known = {"style", "input_size", "canvas", "img_size", "input_divisor", "spp"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFolderError(f"{where}: unknown keys {unknown}; expected only {sorted(known)}")
        style = data.get("style")
        if style not in STYLES:
            raise ModelFolderError(f"{where}: style {style!r} is not one of {list(STYLES)}")

        def pair(key: str, required: bool) -> tuple[int, int] | None:
            value = data.get(key)
            if value is None and not required:
                return None
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
                raise ModelFolderError(f"{where}: {key} must be [rows, cols] of positive integers, got {value!r}")
            return (value[0], value[1])

        divisor = data.get("input_divisor", 1)
        if divisor not in (1, 255) or isinstance(divisor, bool):
            raise ModelFolderError(f"{where}: input_divisor must be 1 or 255, got {divisor!r}")
        spp = data.get("spp", False)
        if not isinstance(spp, bool):
            raise ModelFolderError(f"{where}: spp must be true or false, got {spp!r}")
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
        data: dict[str, Any] = {"style": self.style, "input_size": list(self.input_size), "input_divisor": self.input_divisor, "spp": self.spp}
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
