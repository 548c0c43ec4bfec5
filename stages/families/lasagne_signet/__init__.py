"""SigNet and SigNet-SPP of sigver_wiwd: Lasagne/Theano pickles -> ONNX, checked by a NumPy oracle.

The whole family is this folder:
- `layout`: the three architectures' layer tables and the checks of a pickle's arrays;
- `unpickler`: the restricted pickle interpreter (plain data and numpy arrays, nothing called);
- `pickle_file`: reading an upstream pickle with it; `pickle_writer`: the upstream format;
- `standin`: the built-in stand-in's weights and calibrated batch norms;
- `onnx_builder`: the ONNX graph, built with onnx.helper from the layer table;
- `oracle`: an independent float64 NumPy forward pass (Theano and Lasagne do not install on
  Python 3.11), the reference the graph is validated against.

Upstream (docs/MODEL_FACTS.md, "Lasagne SigNet pickles"): one pickle per model; params.yaml
names its `architecture` (signet, signet_spp_300dpi, signet_spp_600dpi).

ONNX I/O (names and dynamic dims come from params):
- SigNet: input float32 [batch, 1, 150, 220], the `preprocess_signature` output on a
  (952, 1360) canvas, values 0..255 (ink bright, background 0), NOT divided by 255.
- SigNet-SPP: input float32 [batch, 1, height, width], `255 - remove_background(scan)` at the
  scan's own size, from `spp_min_input_size` up (37x37 at 300 dpi, 57x57 at 600 dpi).
- outputs `fc1`, `fc2`: float32 [batch, 2048], each after its ReLU (the notebook's features are fc2).

This module imports neither onnx nor the oracle at import time, so ONNX-Runtime-only callers
can use its input preparation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from stages.core.drawings import batched_signature_samples, signature_gray, stroke_samples
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.families.lasagne_signet.layout import (
    IMG_SIZE,
    INPUT_SIZE,
    architecture,
    check_input_size,
    spp_min_input_size,
)
from stages.families.lasagne_signet.pickle_file import load_checked
from stages.families.lasagne_signet.pickle_writer import dump_py2_pickle
from stages.families.lasagne_signet.standin import SPP_CALIBRATION_SIZES, calibrated_params

# What `reference` runs: named in validation metrics and errors.
REFERENCE = "NumPy oracle"
# The canvas of the original notebook and of the family's training: (rows, cols).
CANVAS = (952, 1360)
MAX_SPP_SIZE = (2000, 3000)  # the largest size validated by default

Arrays = dict[str, np.ndarray]


def _pickle_path(raw: Path, spec: ModelSpec) -> Path:
    """The model's one upstream pickle (its name is only a name: `architecture` says what it holds)."""
    if len(spec.files) != 1:
        raise PipelineError(f"family lasagne_signet: files must list exactly one pickle, got {spec.files}")
    return Path(raw) / spec.files[0]


# --------------------------------------------------------------------------------------------
# Built-in stand-in, loading, conversion, reference
# --------------------------------------------------------------------------------------------


def write_builtin(dest: Path, spec: ModelSpec) -> None:
    """Write the stand-in pickle: protocol 2, Python 2 strings, the upstream dict layout."""
    architecture_name = spec.network.architecture
    content = {
        "input_size": INPUT_SIZE,
        "img_size": IMG_SIZE,
        "params": calibrated_params(architecture_name, spec.source.seed),
    }
    (Path(dest) / spec.files[0]).write_bytes(dump_py2_pickle(content))


def _check_io_spec(spec: ModelSpec, architecture_name: str) -> None:
    """params must declare the shapes this architecture has (fixed 150x220 or dynamic H, W)."""
    if len(spec.onnx.inputs) != 1:
        raise PipelineError(f"onnx.inputs: {architecture_name} has one input, params declare {len(spec.onnx.inputs)}")
    shape = spec.onnx.inputs[0].shape
    fixed = architecture(architecture_name).fixed_input
    spatial_ok = (
        len(shape) == 4
        and shape[1] == 1
        and (list(shape[2:]) == list(fixed) if fixed else all(isinstance(d, str) for d in shape[2:]))
    )
    if not spatial_ok:
        wanted = f"[N, 1, {fixed[0]}, {fixed[1]}]" if fixed else "[N, 1, H, W] with H and W dynamic (strings)"
        raise PipelineError(f"onnx.inputs[0].shape: {architecture_name} takes {wanted}, params say {shape}")
    if fixed is None and tuple(spec.preprocessing.input_size) != spp_min_input_size(architecture_name):
        raise PipelineError(
            f"preprocessing.input_size: {architecture_name} accepts images from {list(spp_min_input_size(architecture_name))} up, "
            f"params say {spec.preprocessing.input_size}"
        )
    layers = {"fc1", "fc2"}
    unknown = [t.source_name for t in spec.onnx.outputs if t.source_name not in layers]
    if unknown:
        raise PipelineError(f"onnx.outputs: source names {unknown} are not layers of {architecture_name}; use fc1, fc2")


def check_loadable(raw: Path, spec: ModelSpec) -> None:
    """Load the pickle safely and check every array against the layer layout."""
    architecture_name = spec.network.architecture
    _check_io_spec(spec, architecture_name)
    load_checked(_pickle_path(raw, spec), architecture_name)


def convert(raw: Path, spec: ModelSpec, out: Path) -> None:
    """Build the ONNX graph from the checked arrays (stages.families.lasagne_signet.onnx_builder); patch checks it."""
    from stages.families.lasagne_signet.onnx_builder import build_model

    architecture_name = spec.network.architecture
    _check_io_spec(spec, architecture_name)
    _content, weights = load_checked(_pickle_path(raw, spec), architecture_name)
    model = build_model(
        architecture(architecture_name), weights, opset=spec.onnx.opset, input_name=spec.onnx.inputs[0].source_name
    )
    Path(out).write_bytes(model.SerializeToString(deterministic=True))


def reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """The NumPy oracle on the pickle's flat params list, keyed by ONNX names (float32 results)."""
    from stages.families.lasagne_signet.oracle import LasagneOracle

    architecture_name = spec.network.architecture
    content, _weights = load_checked(
        _pickle_path(raw, spec), architecture_name
    )  # layout checked, oracle reads the flat list
    oracle = LasagneOracle(architecture_name, content.params)
    input_name = spec.onnx.inputs[0].name
    outputs = {t.name: t.source_name for t in spec.onnx.outputs}

    def run(inputs: Arrays) -> Arrays:
        images = inputs[input_name]
        if architecture(architecture_name).fixed_input is None:
            check_input_size(architecture_name, images.shape[2], images.shape[3], f"{architecture_name} input")
        result = oracle(images)
        return {name: result[layer].astype(np.float32) for name, layer in outputs.items()}

    return run


def float64_reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """The reference itself: the NumPy oracle computes in float64."""
    return reference(raw, spec)


def weight_tracer(raw: Path, spec: ModelSpec):
    """The pickle's arrays, the converter's one exact fold, and the SPP guard's literal 1.0.

    The fold: batch norm's scale gamma * inv_std as one float32 multiply per element (as Theano
    formed it), which IEEE 754 rounds identically on every CPU; `stages.families.lasagne_signet.onnx_builder` computes
    it the same way.
    """
    from stages.core.weight_trace import WeightTracer

    content, weights = load_checked(_pickle_path(raw, spec), spec.network.architecture)
    upstream = {f"params[{index}]": array for index, array in enumerate(content.params)}
    folds = {f"{w.name} gamma * inv_std": np.multiply(w.gamma, w.inv_std, dtype=np.float32) for w in weights}
    return WeightTracer(upstream, folds, {1.0: "the SPP input-size guard's multiplier"})


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def signet_input(gray: np.ndarray, source: str | None = None) -> np.ndarray:
    """SigNet input from a gray scan (float 0..255, ink dark): float32 (1, 1, 150, 220), 0..255.

    `preprocess_signature` on the (952, 1360) canvas: centred, inverted (ink bright), resized,
    cropped; kept in 0..255 as the Lasagne models take it.
    """
    # Imported here: it loads scipy.ndimage (about 0.25 s), which fetch and convert never use.
    from signature_onnx.preprocessing.wiwd import preprocess_signature

    return preprocess_signature(gray, CANVAS, source=source).astype(np.float32)[None, None]


def spp_input(gray: np.ndarray, architecture_name: str, source: str | None = None) -> np.ndarray:
    """SigNet-SPP input at the scan's own size: float32 (1, 1, H, W) = 255 - remove_background.

    Refuses (PipelineError naming the size and the minimum) an image smaller than the network
    accepts, before any runtime sees it.
    """
    from signature_onnx.preprocessing.wiwd import remove_background  # as in signet_input

    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise PipelineError(f"{source or 'image'}: expected a 2-D gray image, got shape {gray.shape}")
    check_input_size(architecture_name, gray.shape[0], gray.shape[1], source or "image")
    return (255 - remove_background(gray, source=source)).astype(np.float32)[None, None]


def _next_prime(n: int) -> int:
    def is_prime(k: int) -> bool:
        return k >= 2 and all(k % d for d in range(2, int(k**0.5) + 1))

    while not is_prime(n):
        n += 1
    return n


def spp_validation_sizes(architecture_name: str, count: int) -> list[tuple[int, int]]:
    """`count` (rows, cols) sizes from the minimum to 2000x3000: the extremes, then primes.

    Always: the minimum, the minimum + 1 (odd/even neighbours of the boundary), the minimum
    height with the maximum width and the reverse (1-row and 1-column feature maps), and
    2000x3000. The rest are primes spread geometrically in between (odd, non-round sizes
    exercise the floor/ceil of every pool and pyramid bin).
    """
    min_h, min_w = spp_min_input_size(architecture_name)
    max_h, max_w = MAX_SPP_SIZE
    fixed = [(min_h, min_w), (min_h + 1, min_w + 2), (min_h, max_w), (max_h, min_w)]
    between = max(0, count - len(fixed) - 1)
    spread = [
        (
            _next_prime(int(min_h * (max_h / min_h) ** (k / (between + 1)))),
            _next_prime(int(min_w * (max_w / min_w) ** (k / (between + 1)))),
        )
        for k in range(1, between + 1)
    ]
    return (fixed + spread)[: max(count - 1, 1)] + [MAX_SPP_SIZE]


def validation_inputs(spec: ModelSpec, count: int, image_paths: Sequence[Path]) -> list[tuple[str, Arrays]]:
    """Drawn signatures (and the user's images), prepared as each network takes them.

    SigNet: `count` drawn scans through `signet_input`, then all of them as one batch.
    SPP: drawn scans at `spp_validation_sizes` (minimum .. 2000x3000, primes included).
    """
    architecture_name = spec.network.architecture
    name = spec.onnx.inputs[0].name
    style = spec.preprocessing.package_form()  # the model's own preprocessing, from params

    def prepare(gray: np.ndarray, source: str | None) -> np.ndarray:
        if architecture(architecture_name).fixed_input is None:
            check_input_size(architecture_name, gray.shape[0], gray.shape[1], source or "image")
        return style.network_input(style.image(gray, source=source), "float32")

    samples: list[tuple[str, Arrays]] = []
    to_input = lambda image: image.astype(np.float32)[None, None]  # noqa: E731  (0..255, ink bright)
    fixed = architecture(architecture_name).fixed_input
    if fixed is not None:
        strokes = stroke_samples(spec.source.seed, spec.validation.stroke_samples, fixed, name, to_input)
        return batched_signature_samples(spec.source.seed, count, name, prepare, image_paths, strokes, style.load)
    for index, (height, width) in enumerate(spp_validation_sizes(architecture_name, count)):
        gray = signature_gray(spec.source.seed * 1000 + index, height, width)
        samples.append((f"synthetic_{height}x{width}", {name: prepare(gray, None)}))
    for path in image_paths:
        samples.append((path.name, {name: prepare(style.load(path), str(path))}))
    for size in SPP_CALIBRATION_SIZES:  # strokes over the field, then the same size as one batch
        strokes = stroke_samples(spec.source.seed, spec.validation.stroke_samples, size, name, to_input)
        samples.extend(strokes)
        if len(strokes) > 1:
            batch = np.concatenate([inputs[name] for _sample, inputs in strokes])
            samples.append((f"batch_of_{len(batch)}_{size[0]}x{size[1]}", {name: batch}))
    return samples
