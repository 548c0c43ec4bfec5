"""Stage `validate`: run the source framework and ONNX Runtime on the same inputs, then publish.

Inputs: drawn signature-like images (and every image in `validation.image_dirs`), prepared as
the model expects. Over tolerance the stage exits non-zero and publishes nothing; within it,
models/<model>/ receives model.onnx, validation.json (DVC metrics), samples.csv (DVC plots)
and lineage.json, each written atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
from importlib import metadata
from pathlib import Path

import onnxruntime as ort

from stages import paths
from stages.digests import sha256_file
from stages.atomic import write_bytes, write_text
from stages.cli import model_parser, run_stage
from stages.config import ModelSpec
from stages.errors import PipelineError
from stages.families import load_family
from stages.validation import Validator

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
REFERENCE_NAMES = {"keras_cleaning": "TensorFlow", "torch_siamese": "PyTorch", "torch_signet": "PyTorch", "lasagne_signet": "NumPy oracle"}
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


def lineage(name: str, spec: ModelSpec, onnx_path: Path) -> dict:
    """Where the published file comes from: upstream bytes, source, converter and toolchain."""
    raw = paths.raw_dir(name)
    source: dict = {"kind": spec.source.kind}
    if spec.source.kind == "kaggle" and spec.source.kaggle:
        source["kernel"] = spec.source.kaggle.kernel
    if spec.source.kind == "url":
        source["urls"] = dict(spec.source.urls)
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
        "onnx": {"file": "model.onnx", "sha256": sha256_file(onnx_path), "opset": spec.onnx.opset},
        "toolchain": {package: _version(package) for package in TOOLCHAIN},
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_validation(name: str, spec: ModelSpec, onnx_path: Path) -> Validator:
    """Compare ONNX Runtime with the family's reference on every validation sample."""
    family = load_family(spec.family)
    reference = family.reference(paths.raw_dir(name), spec)
    options = ort.SessionOptions()
    # ORT's worker threads spin between runs and steal the cores the reference runs on next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    validator = Validator(spec.validation, REFERENCE_NAMES[spec.family])
    samples = family.validation_inputs(spec, spec.validation.samples, user_images(name, spec))
    for index, (sample, inputs) in enumerate(samples, 1):
        expected = reference(inputs)
        actual = dict(zip(output_names, session.run(output_names, inputs)))
        validator.add(sample, expected, actual)
        log.info("sample %d/%d %s: ok", index, len(samples), sample)
    return validator


def validate(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    onnx_path = paths.patched_onnx(name)
    if not onnx_path.exists():
        raise PipelineError(f"{onnx_path}: not found; run the patch stage first (dvc repro)")
    validator = run_validation(name, spec, onnx_path)
    metrics = validator.metrics()
    for output, summary in metrics["outputs"].items():
        log.info("%s: %s", output, ", ".join(f"{k} {v}" for k, v in summary.items()))
    target = paths.published_dir(name)
    write_bytes(target / "model.onnx", onnx_path.read_bytes())
    write_text(target / "validation.json", json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_text(target / "samples.csv", samples_csv(validator.per_sample))
    write_text(target / "lineage.json", json.dumps(lineage(name, spec, target / "model.onnx"), indent=2, sort_keys=True) + "\n")
    log.info("published %s", target)


if __name__ == "__main__":
    run_stage(model_parser("stages.validate", __doc__.splitlines()[0]), validate)
