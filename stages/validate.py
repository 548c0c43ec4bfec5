"""Stage `validate`: run the source framework and ONNX Runtime on the same inputs, then publish.

Inputs: drawn signature-like images (and every image in `validation.image_dirs`), prepared as
the model expects. Over tolerance the stage exits non-zero and publishes nothing; within it,
models/<model>/ receives model.onnx, validation.json (DVC metrics), samples.csv (DVC plots),
lineage.json and preprocessing.json (task and input preparation), each written atomically.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import logging
from importlib import metadata
from pathlib import Path

import onnx
import onnxruntime as ort

from stages import paths
from stages.digests import sha256_file
from stages.atomic import write_bytes
from stages.cli import model_parser, run_stage
from signature_onnx.folder import PREPROCESSING_FILE, preprocessing_json
from stages.config import FAMILY_TASKS, ModelSpec
from stages.errors import PipelineError
from stages.families import load_family, references
from stages.preprocess import IMAGE_SUFFIXES
from stages.sources.download import scrub_url
from stages.validation import Validator
from stages.weight_trace import summary as weight_summary

log = logging.getLogger(__name__)
TOOLCHAIN = ("onnx", "onnxruntime", "tf2onnx", "tensorflow", "tf-keras", "torch", "numpy")


def user_images(name: str, spec: ModelSpec) -> list[Path]:
    """Every image file in the folders params name, sorted; a missing folder is an error."""
    images: list[Path] = []
    for folder in map(Path, spec.validation.image_dirs):
        if not folder.is_dir():
            raise PipelineError(f"models.{name}.validation.image_dirs: {folder} is not a folder")
        images.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    return images


def samples_csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def lineage(name: str, spec: ModelSpec, onnx_bytes: bytes) -> dict:
    """Where the published file comes from: upstream bytes, source, converter and toolchain."""
    raw = paths.raw_dir(name)
    source: dict = {"kind": spec.source.kind}
    if spec.source.kind == "kaggle" and spec.source.kaggle:
        source["kernel"] = spec.source.kaggle.kernel
    if spec.source.kind == "url":
        source["urls"] = {file: scrub_url(address) for file, address in spec.source.urls.items()}
    if spec.source.kind == "builtin":
        source["seed"] = spec.source.seed
        source["note"] = "synthetic stand-in weights: its verdicts mean nothing"
    return {
        "model": name,
        "description": spec.description,
        "family": spec.family,
        "source": source,
        "upstream_files": {
            f: {"sha256": sha256_file(raw / f), "size": (raw / f).stat().st_size} for f in sorted(spec.files)
        },
        "onnx": {"file": "model.onnx", "sha256": hashlib.sha256(onnx_bytes).hexdigest(), "opset": spec.onnx.opset},
        "toolchain": {package: _version(package) for package in TOOLCHAIN},
    }


def _version(package: str) -> str | None:
    """The installed release, without a local build label (`2.13.0+cpu` -> `2.13.0`): the label
    names the wheel a machine happened to install, not the code, and must not change lineage."""
    try:
        return metadata.version(package).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def check_weights(name: str, spec: ModelSpec, onnx_bytes: bytes) -> dict[str, int]:
    """Trace every constant of the graph to the upstream bytes (stages.weight_trace); counts per rule."""
    tracer = load_family(spec.family).weight_tracer(paths.raw_dir(name), spec)
    traces = tracer.trace_model(onnx.load_from_string(onnx_bytes), str(paths.patched_onnx(name)))
    return weight_summary(traces)


def run_validation(name: str, spec: ModelSpec, onnx_bytes: bytes) -> list[Validator]:
    """Compare ONNX Runtime with each of the family's references on every validation sample."""
    family = load_family(spec.family)
    found = references(family, paths.raw_dir(name), spec)
    options = ort.SessionOptions()
    # ORT's worker threads spin between runs and steal the cores the reference runs on next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own InvalidProtobuf/Fail types
        raise PipelineError(
            f"{paths.patched_onnx(name)}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]}); "
            f"rebuild it: dvc repro -f patch@{name}"
        ) from None
    output_names = [o.name for o in session.get_outputs()]
    validators = [Validator(spec.validation, reference_name) for reference_name, _forward in found]
    samples = family.validation_inputs(spec, spec.validation.samples, user_images(name, spec))
    for index, (sample, inputs) in enumerate(samples, 1):
        actual = dict(zip(output_names, session.run(output_names, inputs)))
        for validator, (_reference_name, forward) in zip(validators, found):
            validator.add(sample, forward(inputs), actual)
        log.info("sample %d/%d %s: ok", index, len(samples), sample)
    return validators


def validate(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    onnx_path = paths.patched_onnx(name)
    if not onnx_path.exists():
        raise PipelineError(f"{onnx_path}: not found; run the patch stage first (dvc repro)")
    onnx_bytes = onnx_path.read_bytes()
    validators = run_validation(name, spec, onnx_bytes)
    # After the numeric comparison, which names the output and sample a gross error shows in;
    # this proves the rest, weights that no input reaches included.
    weights = check_weights(name, spec, onnx_bytes)
    log.info("weights: every constant traced to the upstream bytes (%s)", ", ".join(f"{k} {v}" for k, v in weights.items()))
    results = [validator.metrics() for validator in validators]
    for result in results:
        for output, summary in result["outputs"].items():
            log.info("%s vs %s: %s", output, result["reference"], ", ".join(f"{k} {v}" for k, v in summary.items()))
    metrics = {**results[0], "weights": weights}
    for extra in results[1:]:
        metrics["independent_reference"] = {"reference": extra["reference"], "outputs": extra["outputs"]}
    primary = validators[0]
    # Every payload is ready before the first write, so a failure cannot publish half a set.
    published = {
        "model.onnx": onnx_bytes,
        "lineage.json": (json.dumps(lineage(name, spec, onnx_bytes), indent=2, sort_keys=True) + "\n").encode(),
        # What the model does and how its input is made, for the signature_onnx package.
        PREPROCESSING_FILE: preprocessing_json(name, FAMILY_TASKS[spec.family], spec.preprocessing.package_form()),
        "validation.json": (json.dumps(metrics, indent=2, sort_keys=True) + "\n").encode(),
        "samples.csv": samples_csv(primary.per_sample).encode(),
    }
    target = paths.published_dir(name)
    for file, payload in published.items():
        write_bytes(target / file, payload)
    log.info("published %s", target)


if __name__ == "__main__":
    run_stage(model_parser("stages.validate", __doc__.splitlines()[0]), validate)
