"""The family's validation inputs, without PyTorch: the variants step and the tests make them
in a process that never imports torch (1.6 s of its start-up).

- SigNet (`signet`): float32 [1, 1, 150, 220] in 0..1, sigver's scikit-image preprocessing
  divided by 255;
- Siamese verifier (`siamese`): pairs of uint8 [150, 220] images, ink bright.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from signature_onnx.preprocessing import Preprocessing
from stages.core.drawings import batched_signature_samples, signature_gray, stroke_samples
from stages.core.params import ModelSpec

# sigver's SigNet input per sample (channels, rows, cols) and the Siamese model's image (rows, cols).
SIGNET_INPUT_SHAPE = (1, 150, 220)
SIAMESE_IMAGE_SHAPE = (150, 220)

Arrays = dict[str, np.ndarray]


def signet_input(gray: np.ndarray, style: Preprocessing, source: str | None = None) -> np.ndarray:
    """sigver input from a gray scan: float32 (1, 1, 150, 220) in 0..1, made by `style` (params'
    `preprocessing`: sigver's scikit-image code, then divided by 255)."""
    return style.network_input(style.image(gray, source=source), "float32")


def signet_validation_inputs(spec: ModelSpec, count: int, image_paths: Sequence[Path]) -> list[tuple[str, Arrays]]:
    """Drawn signatures and the user's images, one per sample, then all of them as one batch."""
    name = spec.onnx.inputs[0].name
    style = spec.preprocessing.package_form()
    strokes = stroke_samples(
        spec.source.seed,
        spec.validation.stroke_samples,
        SIGNET_INPUT_SHAPE[1:],
        name,
        lambda image: (image.astype(np.float32) / np.float32(255))[None, None],
    )
    return batched_signature_samples(
        spec.source.seed,
        count,
        name,
        lambda gray, source: signet_input(gray, style, source),
        image_paths,
        strokes,
        style.load,
    )


def prepare_signature(gray: np.ndarray, style: Preprocessing, source: str | None = None) -> np.ndarray:
    """The notebook's preprocessing (params' `preprocessing`: sigver's scikit-image code, img_size
    (256, 256), crop (150, 220)): uint8 (150, 220), ink bright, from a gray scan (0..255)."""
    return style.network_input(style.image(gray, source=source), "uint8")


def siamese_validation_inputs(
    spec: ModelSpec, count: int, image_paths: Sequence[Path]
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Pairs of signatures: drawn ones (consecutive pairs), then the user's images paired in turn."""
    style = spec.preprocessing.package_form()
    images: list[tuple[str, np.ndarray]] = []
    for index in range(count + 1):
        height, width = 260 + 41 * index, 520 + 67 * index
        images.append(
            (
                f"synthetic_{index:03d}",
                prepare_signature(signature_gray(spec.source.seed * 1000 + index, height, width), style),
            )
        )
    for path in image_paths:
        images.append((path.name, prepare_signature(style.load(path), style, str(path))))
    for sample, inputs in stroke_samples(
        spec.source.seed, spec.validation.stroke_samples, SIAMESE_IMAGE_SHAPE, "image", lambda image: image
    ):
        images.append((sample, inputs["image"]))
    first, second = (t.name for t in spec.onnx.inputs)
    pairs = []
    for (name_a, image_a), (name_b, image_b) in zip(images, images[1:]):
        pairs.append((f"{name_a}~{name_b}", {first: image_a, second: image_b}))
    return pairs
