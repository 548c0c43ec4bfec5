"""The published models in ONNX Runtime, in the style of Optimum's ORTModel classes.

    from signature_onnx import ORTModelForSignatureVerification
    verifier = ORTModelForSignatureVerification.from_pretrained("models/siamese")
    result = verifier.verify("a.png", "b.png", threshold=0.5)

`from_pretrained` takes a published model folder or its `model.onnx`; the folder's
`preprocessing.json` says how images are prepared, so callers pass image files (or arrays) and
never choose a preprocessing by hand. `AutoORTModel.from_pretrained` picks the class from the
folder's task. A model built from synthetic stand-in weights warns (`SyntheticWeightsWarning`)
on every result, and each result says so.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from signature_onnx.errors import ImageError, ModelFolderError, ModelOutputError, first_line, shown
from signature_onnx.folder import PIXELS_SUFFIX, PREPROCESS_FILE, VALID_SUFFIX, ModelFolder
from signature_onnx.preprocessing.arrays import as_uint8_image
from signature_onnx.preprocessing.files import load_rgb
from signature_onnx.progress import progress
from signature_onnx.runtime import cpu_session

ImageLike = str | os.PathLike[str] | np.ndarray
PREPROCESS_CHOICES = ("python", "onnx")


class SyntheticWeightsWarning(UserWarning):
    """The model's weights are the pipeline's synthetic stand-ins: its results mean nothing."""


class ORTSignatureModel:
    """One published model in an ONNX Runtime session, with its preprocessing.

    Attributes: `folder` (ModelFolder: name, task, preprocessing, synthetic), `session`.
    """

    task: ClassVar[str | None] = None

    def __init__(self, folder: ModelFolder, session, threads: int | None = None, preprocess_session=None) -> None:
        self.folder = folder
        self.session = session
        # preprocess.onnx in ONNX Runtime (preprocess="onnx"), else None: the Python preprocessing.
        self.preprocess_session = preprocess_session
        # Images prepared at once (verify's pair): NumPy, SciPy and scikit-image release the GIL.
        self.prepare_threads = max(1, min(2, threads or os.cpu_count() or 1))
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._check_graph()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        integrity_check: bool = True,
        public_key: str | os.PathLike[str] | None = None,
        preprocess: str = "python",
    ) -> "ORTSignatureModel":
        """Load a model folder (or its model.onnx) for this class's task.

        threads: ONNX Runtime intra-op threads (1..256; None: every core).
        integrity_check: refuse a model.onnx whose sha256 differs from the one the folder's own
            lineage.json records (`IntegrityError`); False runs it anyway.
        public_key: an EC public key PEM; the folder's release signature (model.sig) must then
            verify with it (needs `pip install 'signature-onnx[signing]'`).
        preprocess: "python" (the package's NumPy/SciPy/scikit-image code) or "onnx" (the
            folder's preprocess.onnx, checked against lineage.json like model.onnx; the build
            proves it equal to the Python code, see docs/preprocess-graph.md).
        """
        folder = ModelFolder.open(path)
        if cls.task is not None and folder.task != cls.task:
            raise ModelFolderError(
                f"{shown(folder.onnx_path)}: model {shown(repr(folder.name), 80)} is a {folder.task!r} model, not a {cls.task!r} one; "
                f"use the {_TASK_COMMANDS[folder.task]!r} command (or its class) with it"
            )
        return cls._load(folder, threads, integrity_check, public_key, preprocess)

    @classmethod
    def _load(
        cls,
        folder: ModelFolder,
        threads: int | None,
        integrity_check: bool,
        public_key: str | os.PathLike[str] | None,
        preprocess: str = "python",
    ) -> "ORTSignatureModel":
        if preprocess not in PREPROCESS_CHOICES:
            raise ValueError(f"preprocess must be one of {list(PREPROCESS_CHOICES)}, got {shown(repr(preprocess), 40)}")
        if public_key is not None:
            folder.verify_signature(public_key)
        # The checked bytes are the ones ONNX Runtime loads (never the path, which could change in between).
        data = folder.model_bytes(integrity_check=integrity_check)
        graph = None
        if preprocess == "onnx":
            graph_bytes = folder.graph_bytes(PREPROCESS_FILE, integrity_check=integrity_check)
            graph = cpu_session(
                graph_bytes, str(folder.onnx_path.parent / PREPROCESS_FILE), "pull or rebuild it", threads
            )
        model = cls(folder, cpu_session(data, str(folder.onnx_path), "pull or rebuild it", threads), threads, graph)
        model.warn_if_synthetic()
        return model

    @property
    def synthetic(self) -> bool:
        return self.folder.synthetic

    def synthetic_warning(self) -> str | None:
        """The loud warning text for a model with synthetic weights, else None."""
        if not self.folder.synthetic:
            return None
        return (
            f"WARNING: {shown(self.folder.name, 80)} has SYNTHETIC stand-in weights ({self.folder.source}); "
            "this result means nothing"
        )

    def warn_if_synthetic(self) -> None:
        message = self.synthetic_warning()
        if message:
            warnings.warn(message, SyntheticWeightsWarning, stacklevel=3)

    def prepare_all(self, images: Sequence[ImageLike]) -> list[np.ndarray]:
        """The network inputs for one image per graph input (a verifier's pair, or one image)."""
        if self.preprocess_session is None:
            if self.prepare_threads > 1 and len(images) > 1:  # NumPy, SciPy and scikit-image release the GIL
                with ThreadPoolExecutor(self.prepare_threads) as pool:
                    return list(pool.map(self.prepare, images))
            return [self.prepare(image) for image in images]
        feeds = {f"{name}{PIXELS_SUFFIX}": self.pixels(image) for name, image in zip(self.input_names, images)}
        names = [name for name in self.input_names for name in (name, f"{name}{VALID_SUFFIX}")]
        try:
            values = dict(zip(names, self.preprocess_session.run(names, feeds)))
        except Exception as exc:  # ORT's own error types: a graph that is not this folder's
            raise ModelFolderError(
                f"{shown(self.folder.onnx_path.parent / PREPROCESS_FILE)}: ONNX Runtime cannot run it ({first_line(exc)})"
            ) from None
        for name, image in zip(self.input_names, images):
            if not bool(values[f"{name}{VALID_SUFFIX}"]):
                raise ImageError(
                    f"{_image_name(image)}: the preprocessing refuses it (a uniform page, no ink, ink one pixel thin, "
                    "or smaller than the model accepts); expected a signature on paper"
                )
        return [values[name] for name in self.input_names]

    def pixels(self, image: ImageLike) -> np.ndarray:
        """preprocess.onnx's input for one image: uint8 RGB (rows, cols, 3). A file is decoded by
        `load_rgb`; a gray array (0..255, floats truncated as the Python preprocessing does)
        becomes gray in all three channels."""
        if not isinstance(image, np.ndarray):
            return load_rgb(image)
        if image.ndim == 3:
            if image.dtype != np.uint8 or image.shape[2] != 3:
                raise ImageError(
                    f"input image: expected uint8 RGB (rows, cols, 3) or a gray (rows, cols) array, got {image.dtype} {image.shape}"
                )
            return np.ascontiguousarray(image)
        gray = as_uint8_image(image, None)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))

    def prepare(self, image: ImageLike) -> np.ndarray:
        """The network input for one image file or array (gray 0..255, or RGB for cleaning)."""
        if self.preprocess_session is not None and len(self.input_names) == 1:
            return self.prepare_all([image])[0]
        style = self.folder.preprocessing
        source = str(image) if not isinstance(image, np.ndarray) else None
        array = style.load(image) if source is not None else image
        dtype = "uint8" if self.session.get_inputs()[0].type == "tensor(uint8)" else "float32"
        return style.network_input(style.image(array, source=source), dtype)

    def _check_graph(self) -> None:
        """Refuse a graph whose inputs do not fit the task (a folder holding another model)."""

    def _run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the session; every output must be finite, or nothing is reported (`ModelOutputError`)."""
        names = list(outputs or self.output_names)
        try:
            values = self.session.run(names, feeds)
        except Exception as exc:  # ORT's own error types: a bad shape, an SPP input below its minimum
            raise ImageError(
                f"{shown(self.folder.onnx_path)}: ONNX Runtime refused the input ({first_line(exc)})"
            ) from None
        for output, value in zip(names, values):
            array = np.asarray(value)
            if array.dtype.kind in "fc" and not np.isfinite(array).all():
                self._fail_output(
                    output, f"{int(array.size - np.isfinite(array).sum())} of {array.size} values are NaN or infinite"
                )
        return dict(zip(names, values))

    def _fail_output(self, output: str, what: str) -> None:
        raise ModelOutputError(
            f"{shown(self.folder.onnx_path)}: model {shown(repr(self.folder.name), 80)}, output {shown(repr(output), 80)}: {what}; "
            "expected finite values (the model file is damaged or is not the model its folder describes)"
        )

    def _fail_graph(self, expected: str) -> None:
        shapes = {i.name: (i.type, i.shape) for i in self.session.get_inputs()}
        raise ModelFolderError(
            f"{shown(self.folder.onnx_path)}: inputs {shown(shapes)} do not fit a {self.folder.task!r} model; expected {expected}"
        )


class ORTModelForSignatureCleaning(ORTSignatureModel):
    """The cleaning autoencoder: an RGB page in, the cleaned page out (224x224, or resized back)."""

    task = "clean"

    def _check_graph(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
            self._fail_graph("one float32 input [1, 224, 224, 3]")

    def clean(self, image: ImageLike, *, original_size: bool = False) -> np.ndarray:
        """Clean one page.

        Args:
            image: an image file, or a uint8 RGB array (rows, cols, 3).
            original_size: resize the result back to the input's size (OpenCV INTER_CUBIC).

        Returns:
            uint8 RGB (224, 224, 3), or (rows, cols, 3) with `original_size`.
        """
        import cv2

        style = self.folder.preprocessing
        source = str(image) if not isinstance(image, np.ndarray) else None
        rgb = style.load(image) if source is not None else np.asarray(image)
        if self.preprocess_session is not None:
            x = self.prepare_all([rgb])[0]
        else:
            x = style.network_input(style.image(rgb, source=source), "float32")
        out = self._run({self.input_names[0]: x})[self.output_names[0]][0]
        cleaned = (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)
        self.warn_if_synthetic()
        if original_size:
            return cv2.resize(cleaned, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_CUBIC)
        return cleaned


@dataclass(frozen=True)
class Verification:
    """The Siamese verdict on a pair.

    probability: sigmoid(logit), the notebook's "same writer" confidence in [0, 1];
    cosine: cosine similarity of the two embeddings; same_writer: probability >= threshold
    (None when no threshold was given); synthetic_weights: True when the result means nothing.
    """

    logit: float
    probability: float
    cosine: float
    threshold: float | None
    same_writer: bool | None
    synthetic_weights: bool


class ORTModelForSignatureVerification(ORTSignatureModel):
    """The Siamese verifier: two signatures in, embeddings and a same-writer logit out."""

    task = "verify"

    def _check_graph(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 2 or len(self.output_names) != 3:
            self._fail_graph("two uint8 inputs [150, 220] and three outputs (e1, e2, logit)")

    def verify(self, image_a: ImageLike, image_b: ImageLike, *, threshold: float | None = None) -> Verification:
        """Compare two signatures (files or gray arrays, paper 255); see `Verification`."""
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold}")
        prepared = self.prepare_all([image_a, image_b])  # both at once: half the preprocessing time of a pair
        feeds = dict(zip(self.input_names, prepared))
        outputs = self._run(feeds)  # one run: a generator over `self._run(feeds)[name]` would run it once per output
        e1, e2, logit = (outputs[name] for name in self.output_names)
        logit_value = float(np.asarray(logit, dtype=np.float64).reshape(-1)[0])
        # Either branch keeps exp's argument <= 0: a huge finite logit gives 0 or 1, never an overflow.
        if logit_value >= 0:
            probability = 1.0 / (1.0 + math.exp(-logit_value))
        else:
            probability = math.exp(logit_value) / (1.0 + math.exp(logit_value))
        a, b = (np.asarray(e, dtype=np.float64).reshape(-1) for e in (e1, e2))
        # float32 outputs squared stay below 1e77 in float64: the norms are finite.
        norms = float(np.linalg.norm(a) * np.linalg.norm(b))
        cosine = float(np.clip(a @ b / norms, -1.0, 1.0)) if norms > 0 else 0.0
        self.warn_if_synthetic()
        decision = None if threshold is None else probability >= threshold
        return Verification(logit_value, probability, cosine, threshold, decision, self.synthetic)


class ORTModelForSignatureFeatures(ORTSignatureModel):
    """A SigNet feature extractor (SigNet, SigNet-F, SigNet-SPP, sigver .pth): images in, features out."""

    task = "embed"

    def _check_graph(self) -> None:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)" or len(inputs[0].shape) != 4:
            self._fail_graph("one float32 input [batch, 1, rows, cols]")

    @property
    def layers(self) -> list[str]:
        """The feature layers this model outputs (fc1 and fc2, or fc2 only for sigver .pth)."""
        return list(self.output_names)

    def embed(
        self, images: Iterable[ImageLike], *, layer: str = "fc2", batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Features of each image, float32 (N, 2048).

        Fixed-size SigNets run in batches of `batch_size`; SigNet-SPP runs each image at its own
        size (one at a time). Images are files or gray arrays (paper 255, ink dark).
        """
        if layer not in self.output_names:
            raise ValueError(
                f"{shown(self.folder.name, 80)} has no layer {shown(repr(layer), 40)}; it outputs {shown(self.output_names)}"
            )
        items = list(images)
        if not items:
            raise ValueError("no images to embed")
        step = 1 if self.folder.preprocessing.spp else max(1, batch_size)
        features = []
        bar = progress(
            total=len(items), desc=f"embed ({shown(self.folder.name, 40)})", unit="img", enabled=show_progress
        )
        with bar:
            for start in range(0, len(items), step):
                chunk = items[start : start + step]
                batch = np.concatenate([self.prepare(item) for item in chunk])
                features.append(self._run({self.input_names[0]: batch}, [layer])[layer])
                bar.update(len(chunk))
        self.warn_if_synthetic()
        return np.concatenate(features).astype(np.float32)


_CLASSES: dict[str, type[ORTSignatureModel]] = {
    "clean": ORTModelForSignatureCleaning,
    "verify": ORTModelForSignatureVerification,
    "embed": ORTModelForSignatureFeatures,
}
_TASK_COMMANDS = {"clean": "clean", "verify": "verify", "embed": "embed"}


class AutoORTModel:
    """Loads any published model folder with the class of its task."""

    @staticmethod
    def from_pretrained(
        path: str | os.PathLike[str],
        *,
        threads: int | None = None,
        integrity_check: bool = True,
        public_key: str | os.PathLike[str] | None = None,
        preprocess: str = "python",
    ) -> ORTSignatureModel:
        """Load any model folder with its task's class (arguments as `ORTSignatureModel.from_pretrained`)."""
        folder = ModelFolder.open(path)
        return _CLASSES[folder.task]._load(folder, threads, integrity_check, public_key, preprocess)


def _image_name(image: ImageLike) -> str:
    return shown(image) if not isinstance(image, np.ndarray) else "input image"
