"""Step `patch` (stage `convert`): name and shape the converted graph as params say, canonicalise it, prove it loads.

converted.onnx -> rename inputs/outputs (source_name -> name), fix shapes (e.g. the batch
dimension to 1 as the original code did), canonical node/tensor names, no doc strings, pinned producer,
lineage metadata -> onnx.checker (full) -> strict shape inference -> an ONNX Runtime session
whose inputs and outputs must match params -> data/interim/<model>/patched.onnx.
"""

from __future__ import annotations

import logging

import onnx
from google.protobuf.message import DecodeError

from signature_onnx.runtime import cpu_session
from stages.core import onnx_graph, paths
from stages.core.atomic import write_bytes
from stages.core.cli import model_parser, run_stage
from stages.core.errors import PipelineError, first_line
from stages.core.params import ModelSpec, TensorSpec

log = logging.getLogger(__name__)
ORT_TYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


def patch_model(model: onnx.ModelProto, name: str, spec: ModelSpec) -> onnx.ModelProto:
    """Apply every edit in order and return the checked, shape-inferred model."""
    onnx_graph.rename_io(model, spec.onnx.inputs, "input")
    onnx_graph.rename_io(model, spec.onnx.outputs, "output")
    onnx_graph.set_shapes(model, spec.onnx.inputs, "input")
    onnx_graph.set_shapes(model, spec.onnx.outputs, "output")
    onnx_graph.canonical_names(model)
    onnx_graph.strip_documentation(model)
    onnx_graph.pin_producer(model)
    onnx_graph.set_lineage(model, name, paths.raw_dir(name), spec.files)
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PipelineError(f"{name}: the patched graph is not valid ONNX: {first_line(exc)}") from None
    return inferred


def _check_session_io(kind: str, got: list, specs: list[TensorSpec]) -> None:
    actual = [(a.name, a.type, list(a.shape)) for a in got]
    wanted = [(s.name, ORT_TYPES[s.dtype], list(s.shape)) for s in specs]
    if actual != wanted:
        raise PipelineError(f"ONNX Runtime sees {kind}s {actual}, params declare {wanted}")


def check_in_runtime(data: bytes, spec: ModelSpec) -> None:
    """Load the bytes in ONNX Runtime (CPU) and compare its view of the I/O with params."""
    session = cpu_session(data, "the patched graph", "check the params' onnx entry and the converter's output")
    _check_session_io("input", session.get_inputs(), spec.onnx.inputs)
    _check_session_io("output", session.get_outputs(), spec.onnx.outputs)


def patch(name: str, spec: ModelSpec) -> None:
    source = paths.converted_onnx(name)
    try:
        model = onnx.load(str(source))
    except FileNotFoundError:
        raise PipelineError(f"{source}: not found; run the convert stage first (dvc repro)") from None
    except (DecodeError, ValueError) as exc:
        raise PipelineError(
            f"{source}: not a readable ONNX file ({exc}); rebuild it: dvc repro -f convert@{name}"
        ) from None
    patched = patch_model(model, name, spec)
    data = onnx_graph.serialize(patched)
    check_in_runtime(data, spec)
    write_bytes(paths.patched_onnx(name), data)
    log.info(
        "wrote %s: %s -> %s",
        paths.patched_onnx(name),
        [f"{t.name}{t.shape}" for t in spec.onnx.inputs],
        [f"{t.name}{t.shape}" for t in spec.onnx.outputs],
    )


if __name__ == "__main__":
    run_stage(model_parser("stages.patch", __doc__.splitlines()[0]), patch)
