"""Stage `validate`: run the source framework and ONNX Runtime on the same inputs, then publish.

Inputs: drawn signature-like images (and every image in `validation.image_dirs`), prepared as
the model expects. Over tolerance the stage exits non-zero and publishes nothing; within it,
models/<model>/ receives model.onnx (with its lineage in the ONNX metadata), lineage.json,
provenance.intoto.json, README.md (the model card), verdict.json (stages/publish/verdict.py) and
preprocessing.json (task and input preparation, for the signature_onnx package), all hashed in
dvc.lock and the same bytes on every machine; reports/<model>/ receives validation.json and
samples.csv (measured errors, CPU-dependent, outside the published folder, dvc.lock and git,
each naming the sha256 of the model.onnx it measured). Every file is written atomically.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging

import onnx

from signature_onnx.folder import PREPROCESSING_FILE, preprocessing_json
from signature_onnx.runtime import cpu_session
from stages.core import onnx_graph, paths
from stages.core.atomic import write_bytes
from stages.core.cli import model_parser, run_stage
from stages.core.comparison import Validator
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.paths import user_images
from stages.core.weight_trace import summary as weight_summary
from stages.families import load_family, references
from stages.preprocess_graph import publish as preprocess_publish
from stages.preprocess_graph.check import PreprocessFigures
from stages.publish import lineage, model_card, provenance
from stages.publish.verdict import VERDICT_FILE, certified_record, serialize

log = logging.getLogger(__name__)


def samples_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def published_files(
    name: str, spec: ModelSpec, patched: bytes, validators: list[Validator], weights: dict[str, int]
) -> tuple[dict[str, bytes], PreprocessFigures]:
    """model.onnx with its lineage metadata, preprocess.onnx and pipeline.onnx (checked against the
    Python preprocessing, stages/preprocess_graph/), lineage.json, the provenance statement, the
    model card; and the preprocessing graph's figures.

    The ONNX graph is the validated one byte for byte; only metadata_props, model_version and
    doc_string are set, from the lineage record (stages/publish/lineage.py), which holds the verdict and
    the rule it was given under but no measured value, so these bytes are machine-independent.
    """
    model = onnx.load_from_string(patched)
    record = lineage.build_record(
        name,
        spec,
        paths.raw_dir(name),
        lineage.PROJECT_ROOT,
        (model.producer_name, model.producer_version),
        lineage.validation_record(spec, [v.reference_name for v in validators], len(validators[0].per_sample), weights),
    )
    onnx_graph.set_metadata(model, lineage.metadata_entries(record), spec.version, lineage.doc_string(record))
    onnx_bytes = onnx_graph.serialize(model)
    onnx_sha256 = hashlib.sha256(onnx_bytes).hexdigest()
    statement = provenance.statement(record, onnx_sha256)
    provenance.check_format(statement)
    graphs, figures = preprocess_publish.graphs(name, spec, onnx_bytes)
    digests = {file: hashlib.sha256(payload).hexdigest() for file, payload in graphs.items()}
    document = lineage.lineage_document(record, onnx_sha256, spec.onnx.opset, digests)
    return {
        "model.onnx": onnx_bytes,
        **graphs,
        "lineage.json": (json.dumps(document, indent=2, sort_keys=True) + "\n").encode(),
        provenance.FILE: provenance.serialize(statement),
        model_card.FILE: model_card.render(spec, record, onnx_sha256).encode(),
    }, figures


def check_weights(name: str, spec: ModelSpec, onnx_bytes: bytes) -> dict[str, int]:
    """Trace every constant of the graph to the upstream bytes (stages.core.weight_trace); counts per rule."""
    tracer = load_family(spec.family).weight_tracer(paths.raw_dir(name), spec)
    traces = tracer.trace_model(onnx.load_from_string(onnx_bytes), str(paths.patched_onnx(name)))
    return weight_summary(traces)


def run_validation(name: str, spec: ModelSpec, onnx_bytes: bytes) -> list[Validator]:
    """Compare ONNX Runtime with each of the family's references on every validation sample."""
    family = load_family(spec.family)
    found = references(family, paths.raw_dir(name), spec)
    # spinning off: ORT's idle worker threads would steal the cores the reference runs on next.
    session = cpu_session(
        onnx_bytes, str(paths.patched_onnx(name)), f"rebuild it: dvc repro -f convert@{name}", spinning=False
    )
    output_names = [o.name for o in session.get_outputs()]
    validators = [Validator(spec.validation, reference_name) for reference_name, _forward in found]
    samples = family.validation_inputs(spec, spec.validation.samples, user_images(name, spec))
    for index, (sample, inputs) in enumerate(samples, 1):
        actual = dict(zip(output_names, session.run(output_names, inputs)))
        for validator, (_reference_name, forward) in zip(validators, found):
            validator.add(sample, forward(inputs), actual)
        log.info("sample %d/%d %s: ok", index, len(samples), sample)
    return validators


def validate(name: str, spec: ModelSpec) -> None:
    onnx_path = paths.patched_onnx(name)
    if not onnx_path.exists():
        raise PipelineError(f"{onnx_path}: not found; run the convert stage first (dvc repro)")
    onnx_bytes = onnx_path.read_bytes()
    validators = run_validation(name, spec, onnx_bytes)
    # After the numeric comparison, which names the output and sample a gross error shows in;
    # this proves the rest, weights that no input reaches included.
    weights = check_weights(name, spec, onnx_bytes)
    log.info(
        "weights: every constant traced to the upstream bytes (%s)", ", ".join(f"{k} {v}" for k, v in weights.items())
    )
    for validator in validators:
        validator.check_rankings()
    results = [validator.metrics() for validator in validators]
    for result in results:
        for output, summary in result["outputs"].items():
            log.info("%s vs %s: %s", output, result["reference"], ", ".join(f"{k} {v}" for k, v in summary.items()))
    metrics = {**results[0], "weights": weights}
    for extra in results[1:]:
        metrics["independent_reference"] = {"reference": extra["reference"], "outputs": extra["outputs"]}
    primary = validators[0]
    # Every payload is ready before the first write, so a failure cannot publish half a set.
    files, figures = published_files(name, spec, onnx_bytes, validators, weights)
    metrics["preprocess_graph"] = {
        **figures.record(),
        "min_cosine": round(figures.min_cosine, 9),
        "worst_page": figures.worst,
    }
    certified = certified_record(
        spec.validation, [v.reference_name for v in validators], len(primary.per_sample), figures.images
    )
    published = {
        **files,
        VERDICT_FILE: serialize(certified),
        # What the model does and how its input is made, for the signature_onnx package.
        PREPROCESSING_FILE: preprocessing_json(name, spec.task, spec.preprocessing.package_form()),
    }
    measured_sha256 = hashlib.sha256(published["model.onnx"]).hexdigest()
    reports = {
        "validation.json": (
            json.dumps({**metrics, "model_sha256": measured_sha256}, indent=2, sort_keys=True) + "\n"
        ).encode(),
        "samples.csv": samples_csv([{**row, "model_sha256": measured_sha256} for row in primary.per_sample]).encode(),
    }
    target, report = paths.published_dir(name), paths.reports_dir(name)
    for file, payload in published.items():
        write_bytes(target / file, payload)
    for file, payload in reports.items():
        write_bytes(report / file, payload)
    log.info("published %s (measured errors: %s)", target, report)


if __name__ == "__main__":
    run_stage(model_parser("stages.validate", __doc__.splitlines()[0]), validate)
