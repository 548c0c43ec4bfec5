"""Step `vectors` (stage `derive`): test vectors for other runtimes, beside the published model (ONNX model-zoo layout).

Writes models/<model>/test_data_set_0/ and test_data_set_1/ (`input_K.pb`, `output_K.pb`:
TensorProtos named after the graph's inputs and outputs) and test_vectors.json (the tolerance a
runtime must meet, and how the vectors were made). Inputs are drawn signatures (or pages, for
the cleaning model) prepared by the model's own preprocessing; expected outputs come from a
float64 NumPy reference of the upstream network (the family's `float64_reference`, its
`oracle.py`), never from ONNX Runtime.

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
  (`stages.core.pinned_kernels.PINNED_KERNELS`: OpenBLAS's Prescott kernel, SSE3, present on every x86-64 CPU; numpy's
  X86_V2 baseline loops), so every machine of the architecture performs the same sequence of
  IEEE operations; OpenBLAS splits a product between threads by output blocks, never along the
  summed axis, so the thread count does not matter either. `tests/test_vectors.py` shows that
  unpinned kernels change the float64 bits and that the stage's bytes do not change when the
  caller asks for other kernels or disables OpenCV's and glibc's AVX paths.
"""

from __future__ import annotations

if __name__ == "__main__":  # before numpy is imported (stages.core.pinned_kernels)
    from stages.core.pinned_kernels import pin_kernels

    pin_kernels("stages.vectors")

import json
import logging
from collections.abc import Callable

import numpy as np

from signature_onnx.folder import PIPELINE_FILE, PIXELS_SUFFIX, VALID_SUFFIX
from signature_onnx.preprocessing import Preprocessing
from signature_onnx.vectors import PIPELINE_VECTORS_DIR, VECTORS_FILE, tensor_bytes
from stages.core import paths
from stages.core.atomic import write_bytes
from stages.core.drawings import drawn_page, page_gray
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.pinned_kernels import run_with_pinned_kernels

log = logging.getLogger(__name__)
SETS = 2
Arrays = dict[str, np.ndarray]


# ---- inputs: integer-only drawings (stages.core.drawings.drawn_page) ----------------------------


def vector_inputs(spec: ModelSpec) -> list[Arrays]:
    """`SETS` input sets, keyed by the graph's input names, made by the model's own preprocessing."""
    style: Preprocessing = spec.preprocessing.package_form()
    names = [t.name for t in spec.onnx.inputs]
    seed = spec.source.seed * 100
    dtype = spec.onnx.inputs[0].dtype

    def signature(index: int, height: int, width: int) -> np.ndarray:
        return style.network_input(style.image(page_gray(drawn_page(seed + index, height, width, False))), dtype)

    if style.style == "rgb":
        size = style.input_size
        return [
            {names[0]: style.network_input(style.image(drawn_page(seed + k, *size, True)), dtype)} for k in range(SETS)
        ]
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
    to float32 once: the family's `float64_reference` (stages/families/__init__.py)."""
    from stages.families import load_family

    return load_family(spec.family).float64_reference(paths.raw_dir(name), spec)


def pipeline_inputs(spec: ModelSpec) -> list[tuple[Arrays, Arrays]]:
    """`SETS` (pixels feeds for pipeline.onnx, the Python network inputs of the same pages): drawn
    RGB pages, one per graph input (a pair for a verifier), of other sizes than `vector_inputs`'."""
    style: Preprocessing = spec.preprocessing.package_form()
    seed = spec.source.seed * 100 + 50
    sizes = (
        [(310, 540), (270, 600)] if not style.spp else [(style.input_size[0] + 9, style.input_size[1] + 13), (163, 241)]
    )
    sets = []
    for index in range(SETS):
        pixels, network = {}, {}
        for k, tensor in enumerate(spec.onnx.inputs):
            height, width = sizes[(index + k) % len(sizes)]
            page = drawn_page(seed + 2 * index + k, height + 11 * k, width, style.style == "rgb")
            pixels[tensor.name + PIXELS_SUFFIX] = page
            network[tensor.name] = style.network_input(style.image(style.gray_from_rgb(page)), tensor.dtype)
        sets.append((pixels, network))
    return sets


def pipeline_payloads(name: str, spec: ModelSpec, reference: Callable[[Arrays], Arrays]) -> dict[str, bytes]:
    """pipeline_test_data/: raw pixels in, the float64 reference of the network on the Python
    preprocessing out (and the `valid` flags, true). pipeline.onnx must meet the model's
    tolerance on them before anything is written (signature_onnx.vectors.compare_set)."""
    from signature_onnx.runtime import cpu_session
    from signature_onnx.vectors import compare_set

    pipeline = paths.published_dir(name) / PIPELINE_FILE
    session = cpu_session(
        pipeline.read_bytes(), str(pipeline), f"rebuild it: dvc repro validate@{name}", spinning=False
    )
    output_names = [o.name for o in session.get_outputs()]
    payloads: dict[str, bytes] = {}
    for index, (pixels, network) in enumerate(pipeline_inputs(spec)):
        expected = reference(network)
        expected.update({tensor.name + VALID_SUFFIX: np.array(True) for tensor in spec.onnx.inputs})
        wanted = [(output, expected[output]) for output in output_names]
        result = compare_set(
            f"{PIPELINE_VECTORS_DIR}/test_data_set_{index}",
            wanted,
            session.run(output_names, pixels),
            spec.validation.atol,
            spec.validation.rtol,
        )
        if not result.passed:
            raise PipelineError(
                f"models/{name}/{PIPELINE_FILE}: {result.name}: {result.failure}; the preprocessing graph or the model drifted"
            )
        folder = f"{PIPELINE_VECTORS_DIR}/test_data_set_{index}"
        for k, (input_name, array) in enumerate(pixels.items()):
            payloads[f"{folder}/input_{k}.pb"] = tensor_bytes(array, input_name)
        for k, (output, array) in enumerate(wanted):
            payloads[f"{folder}/output_{k}.pb"] = tensor_bytes(array, output)
    payloads[f"{PIPELINE_VECTORS_DIR}/{VECTORS_FILE}"] = vectors_description(
        name, spec, "drawn RGB pages (uint8 [height, width, 3]) for pipeline.onnx"
    )
    return payloads


def vectors_description(name: str, spec: ModelSpec, inputs: str) -> bytes:
    description = {
        "format": 1,
        "model": name,
        "sets": SETS,
        "tolerance": {"atol": spec.validation.atol, "rtol": spec.validation.rtol},
        "rule": "|actual - expected| <= atol + rtol * |expected|, element-wise",
        "expected_outputs": "float64 NumPy reference of the upstream network, rounded to float32 (not ONNX Runtime)",
        "inputs": inputs,
    }
    return (json.dumps(description, indent=2, sort_keys=True) + "\n").encode()


def vectors(name: str, spec: ModelSpec) -> None:
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
    payloads[VECTORS_FILE] = vectors_description(
        name, spec, "drawn signatures prepared by the model's preprocessing.json"
    )
    payloads.update(pipeline_payloads(name, spec, reference))
    target = paths.published_dir(name)
    for relative, payload in payloads.items():  # every payload is ready before the first write
        write_bytes(target / relative, payload)
    log.info("wrote %d test sets to %s", SETS, target)


if __name__ == "__main__":
    run_with_pinned_kernels("stages.vectors", vectors, __doc__.splitlines()[0])
