"""preprocess.onnx and pipeline.onnx for one model: built, checked against Python, serialized.

Both are pure functions of the params and model.onnx (every constant computed at build time
by the rule its step documents), so their bytes are the same on every machine; the validate
stage publishes them beside model.onnx and records their sha256 in lineage.json.
"""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import onnx

from signature_onnx.runtime import cpu_session
from stages.core import onnx_graph
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.paths import user_images
from stages.preprocess_graph import pipeline_model, preprocess_model
from stages.preprocess_graph.check import PreprocessFigures, adversarial_pages, check, compare, drawn_pages, user_pages

log = logging.getLogger(__name__)
PREPROCESS_FILE = "preprocess.onnx"
PIPELINE_FILE = "pipeline.onnx"


def _session_runner(model_bytes: bytes, what: str):
    session = cpu_session(model_bytes, what, "rebuild it: dvc repro", spinning=False)
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(names, feeds)))


def graphs(name: str, spec: ModelSpec, network_bytes: bytes) -> tuple[dict[str, bytes], PreprocessFigures]:
    """{file name: bytes} of preprocess.onnx and pipeline.onnx, and the figures they were checked with.

    Raises PipelineError when ONNX's full checker refuses a graph or the figures miss the
    targets of `validation.preprocess_graph`."""
    pre = spec.preprocessing.package_form()
    network = onnx.load_from_string(network_bytes)
    network_sha256 = hashlib.sha256(network_bytes).hexdigest()
    preprocess = preprocess_model(pre, spec.onnx.inputs, spec.onnx.opset, network.ir_version)
    settings = json.dumps(pre.to_dict(), sort_keys=True)
    onnx_graph.set_metadata(
        preprocess,
        {"model": name, "preprocessing": settings},
        spec.version,
        f"Preprocessing of {name} ({pre.style} style): each <input>_pixels, uint8 [height, width, 3] RGB, becomes <input>, "
        "exactly the network input of the signature_onnx package's Python preprocessing; <input>_valid is false "
        "(and <input> all zeros) where that preprocessing refuses the image.",
    )
    pipeline = pipeline_model(preprocess, network, spec.onnx.inputs)
    preprocess_bytes = onnx_graph.serialize(preprocess)
    onnx_graph.set_metadata(
        pipeline,
        {
            **onnx_graph.metadata_of(network),
            "pipeline.model_sha256": network_sha256,
            "pipeline.preprocess_sha256": hashlib.sha256(preprocess_bytes).hexdigest(),
        },
        spec.version,
        f"PIPELINE: preprocess.onnx (sha256 {hashlib.sha256(preprocess_bytes).hexdigest()}) then model.onnx "
        f"(sha256 {network_sha256}) of {name}, composed with onnx.compose: decoded pixels in, the model's outputs out.\n\n"
        + network.doc_string,
    )
    pipeline_bytes = onnx_graph.serialize(pipeline)
    for file, model in ((PREPROCESS_FILE, preprocess), (PIPELINE_FILE, pipeline)):
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise PipelineError(f"models/{name}/{file}: onnx.checker refuses it: {str(exc).splitlines()[0]}") from None
    pages = [
        *drawn_pages(spec.source.seed, spec.validation.samples, pre.style == "rgb"),
        *user_pages(user_images(name, spec)),
        *adversarial_pages(pre, spec.source.seed),
    ]
    figures = compare(
        pre,
        spec.onnx.inputs,
        pages,
        _session_runner(preprocess_bytes, PREPROCESS_FILE),
        _session_runner(pipeline_bytes, PIPELINE_FILE),
        _network_runner(network_bytes, spec),
    )
    log.info(
        "preprocess.onnx vs Python: %d/%d network inputs exactly equal, max %d gray levels, end-to-end min cosine %.7f (%d pages)",
        figures.exact,
        figures.compared,
        figures.max_gray_levels,
        figures.min_cosine,
        figures.images,
    )
    check(figures, spec.validation.preprocess_graph, f"models.{name}")
    return {PREPROCESS_FILE: preprocess_bytes, PIPELINE_FILE: pipeline_bytes}, figures


def _network_runner(network_bytes: bytes, spec: ModelSpec):
    run = _session_runner(network_bytes, "model.onnx")
    return lambda feeds: run({k: np.ascontiguousarray(v) for k, v in feeds.items()})
