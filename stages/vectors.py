"""Stage `vectors`: test vectors for other runtimes, beside the published model (ONNX model-zoo layout).

Writes models/<model>/test_data_set_0/ and test_data_set_1/ (`input_K.pb`, `output_K.pb`:
TensorProtos named after the graph's inputs and outputs) and test_vectors.json (the tolerance a
runtime must meet, and how the vectors were made). Inputs are drawn signatures (or pages, for
the cleaning model) prepared by the model's own preprocessing; expected outputs come from a
float64 NumPy reference of the upstream network, never from ONNX Runtime:
- Lasagne SigNets: `stages.oracle.LasagneOracle`; sigver .pth SigNets and the Siamese model:
  `stages.torch_oracle` (through the families' `independent_reference`); the cleaning
  autoencoder: `stages.cleaning_oracle`.

Why these bytes are the same on every machine (they are hashed in dvc.lock):
- the inputs are made with integer arithmetic only: PCG64 integers, OpenCV's integer
  rasterisation (lines, text, circles) and its fixed-point RGB -> gray conversion, then the
  preprocessing (scipy.ndimage, Pillow's fixed-point resize, scikit-image), whose float steps are
  plain C loops compiled once for the architecture's baseline (no run-time CPU dispatch) and
  single IEEE operations in numpy's element-wise loops, correctly rounded whatever their SIMD
  width;
- the expected outputs are computed in float64 and rounded to float32 once. Left alone, two of
  their steps depend on the CPU: OpenBLAS picks its matrix-product kernel (and so its summation
  order and FMA use) by CPU, and numpy dispatches exp/tanh/log to AVX2/AVX512 code with other
  last bits (both measured on this machine). The stage therefore runs with both pinned
  (`PINNED_KERNELS`: OpenBLAS's Prescott kernel, SSE3, present on every x86-64 CPU; numpy's
  X86_V2 baseline loops), so every machine of the architecture performs the same sequence of
  IEEE operations; OpenBLAS splits a product between threads by output blocks, never along the
  summed axis, so the thread count does not matter either. `tests/test_vectors.py` shows that
  unpinned kernels change the float64 bits and that the stage's bytes do not change when the
  caller asks for other kernels or disables OpenCV's and glibc's AVX paths.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable

import cv2
import numpy as np

from signature_onnx.preprocessing import Preprocessing
from signature_onnx.vectors import VECTORS_FILE, tensor_bytes
from stages import paths
from stages.atomic import write_bytes
from stages.cli import model_parser, run_stage
from stages.config import ModelSpec
from stages.errors import PipelineError

log = logging.getLogger(__name__)
SETS = 2
# CPU-independent float64 arithmetic (module docstring): the stage re-runs itself with these.
PINNED_KERNELS = {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}
Arrays = dict[str, np.ndarray]


# ---- inputs: integer-only drawings ------------------------------------------------------------


def drawn_page(seed: int, height: int, width: int, clutter: bool) -> np.ndarray:
    """A signature on paper, uint8 RGB (height, width, 3), with integer arithmetic only.

    Paper: 236 +- 4 grain and a tint; 2-3 strokes as random walks drawn anti-aliased by OpenCV
    (fixed-point); with `clutter`, ruled lines, printed text and a stamp (what cleaning removes).
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    grain = rng.integers(-4, 5, size=(height, width, 1))
    tint = rng.integers(-5, 6, size=3)
    page = np.clip(236 + grain + tint, 0, 255).astype(np.uint8)
    pen = max(1, min(height, width) // 60)
    if clutter:
        for y in range(int(rng.integers(4, 20)), height, max(8, height // 8)):
            cv2.line(page, (0, y), (width - 1, y), (150, 170, 210), 1, cv2.LINE_AA)
        cv2.putText(page, "Signature", (width // 10, height // 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA)
        center = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4)))
        cv2.circle(page, center, min(height, width) // 6, (200, 40, 50), 2, cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 4))):
        steps = 48
        xs = np.int64(width // 8) + np.arange(steps) * (width * 3 // 4) // steps
        ys = height // 2 + np.cumsum(rng.integers(-max(2, height // 25), max(2, height // 25) + 1, size=steps))
        points = np.stack([xs, np.clip(ys, pen, height - 1 - pen)], axis=1).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(page, [points], False, (20, 25, 60), pen, cv2.LINE_AA)
    return page


def _gray(page: np.ndarray) -> np.ndarray:
    """uint8 gray of a uint8 RGB page: OpenCV's fixed-point ITU-R 601 conversion (bit-exact)."""
    return cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)


def vector_inputs(spec: ModelSpec) -> list[Arrays]:
    """`SETS` input sets, keyed by the graph's input names, made by the model's own preprocessing."""
    style: Preprocessing = spec.preprocessing.package_form()
    names = [t.name for t in spec.onnx.inputs]
    seed = spec.source.seed * 100
    dtype = spec.onnx.inputs[0].dtype

    def signature(index: int, height: int, width: int) -> np.ndarray:
        return style.network_input(style.image(_gray(drawn_page(seed + index, height, width, False))), dtype)

    if style.style == "rgb":
        size = style.input_size
        return [{names[0]: style.network_input(style.image(drawn_page(seed + k, *size, True)), dtype)} for k in range(SETS)]
    if len(names) == 2:  # a verifier: one pair per set
        return [{names[0]: signature(2 * k, 300, 560), names[1]: signature(2 * k + 1, 320, 500)} for k in range(SETS)]
    if style.spp:  # the smallest accepted size (+ a few pixels) and a larger odd one
        min_h, min_w = style.input_size
        return [{names[0]: signature(0, min_h + 4, min_w + 6)}, {names[0]: signature(1, 151, 233)}]
    # fixed-size SigNets: one image, then a batch of two (the dynamic batch axis)
    return [
        {names[0]: signature(0, 280, 520)},
        {names[0]: np.concatenate([signature(1, 260, 610), signature(2, 330, 480)])},
    ]


# ---- expected outputs: float64 references -----------------------------------------------------


def float64_reference(name: str, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """Graph inputs -> the graph's outputs, computed in float64 from the upstream bytes and rounded
    to float32 once: the families' float64 NumPy oracles (`independent_reference` of the torch
    families, `reference` of the Lasagne one), and `stages.cleaning_oracle` for the cleaning model."""
    from stages.families import load_family

    raw = paths.raw_dir(name)
    family = load_family(spec.family)
    if hasattr(family, "independent_reference"):
        return family.independent_reference(raw, spec)
    if spec.family == "lasagne_signet":  # its reference is the float64 NumPy oracle
        return family.reference(raw, spec)
    if spec.family == "keras_cleaning":
        from stages.cleaning_oracle import CleaningOracle, read_weights

        cleaning = CleaningOracle(read_weights(raw / "model" / "variables" / "variables"))
        input_name = spec.onnx.inputs[0].name
        return lambda feeds: {t.name: cleaning(feeds[input_name]).astype(np.float32) for t in spec.onnx.outputs}
    raise PipelineError(f"models.{name}.family: no float64 NumPy reference for family {spec.family!r}")


def vectors(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    model = paths.published_dir(name) / "model.onnx"
    if not model.exists():
        raise PipelineError(f"{model}: not found; run the validate stage first (dvc repro validate@{name})")
    reference = float64_reference(name, spec)
    output_names = [t.name for t in spec.onnx.outputs]
    payloads: dict[str, bytes] = {}
    for index, feeds in enumerate(vector_inputs(spec)):
        expected = reference(feeds)
        folder = f"test_data_set_{index}"
        for k, (input_name, array) in enumerate(feeds.items()):
            payloads[f"{folder}/input_{k}.pb"] = tensor_bytes(array, input_name)
        for k, output in enumerate(output_names):
            payloads[f"{folder}/output_{k}.pb"] = tensor_bytes(expected[output], output)
        log.info("%s: %s", folder, ", ".join(f"{n} {a.shape}" for n, a in feeds.items()))
    description = {
        "format": 1,
        "model": name,
        "sets": SETS,
        "tolerance": {"atol": spec.validation.atol, "rtol": spec.validation.rtol},
        "rule": "|actual - expected| <= atol + rtol * |expected|, element-wise",
        "expected_outputs": "float64 NumPy reference of the upstream network, rounded to float32 (not ONNX Runtime)",
        "inputs": "drawn signatures prepared by the model's preprocessing.json",
    }
    payloads[VECTORS_FILE] = (json.dumps(description, indent=2, sort_keys=True) + "\n").encode()
    target = paths.published_dir(name)
    for relative, payload in payloads.items():  # every payload is ready before the first write
        write_bytes(target / relative, payload)
    log.info("wrote %d test sets to %s", SETS, target)


def run_with_pinned_kernels(module: str = "stages.vectors", step: Callable | None = None, description: str | None = None) -> None:
    """Re-run a stage (`python -m module`, default this one) in a process whose OpenBLAS kernel and
    numpy loops are pinned (numpy reads both when it loads, so they cannot be changed in a process
    that has imported it)."""
    if any(os.environ.get(key) != value for key, value in PINNED_KERNELS.items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **PINNED_KERNELS})
    run_stage(model_parser(module, description or __doc__.splitlines()[0]), step or vectors)


if __name__ == "__main__":
    run_with_pinned_kernels()
