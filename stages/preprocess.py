"""The pipeline's names for the signature preprocessing, whose one copy is `signature_onnx.preprocessing`.

The installable package (`signature_onnx`) owns every preprocessing rule, so the images the
pipeline validates with are made by exactly the code users run. This module only re-exports the
"wiwd" style (sigver_wiwd's, the historical default here) and the shared file loaders; a
model's own style is `signature_onnx.preprocessing.Preprocessing` built from its params entry
(`stages.config.ModelSpec.preprocessing`).
"""

from __future__ import annotations

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing.files import IMAGE_SUFFIXES, load_rgb
from signature_onnx.preprocessing.wiwd import (
    crop_center,
    load_signature,
    normalize_image,
    preprocess_signature,
    remove_background,
    resize_image,
)

# The canvas of the seed notebook and of the SigNet family's training: (rows, cols).
SIGNET_CANVAS = (952, 1360)

__all__ = [
    "IMAGE_SUFFIXES",
    "SIGNET_CANVAS",
    "ImageError",
    "load_signature",
    "load_rgb",
    "normalize_image",
    "remove_background",
    "resize_image",
    "crop_center",
    "preprocess_signature",
]
