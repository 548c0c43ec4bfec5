"""Where each stage reads and writes, in one place so dvc.yaml and the code agree.

data/raw/<model>/      upstream bytes, in the upstream layout (fetch)
data/interim/<model>/  converted.onnx (convert), patched.onnx (patch)
models/<model>/        the published model folder: model.onnx, lineage.json, ... (validate, vectors,
                       variants), every file DVC-tracked and machine-independent, plus model.sig (git)
reports/<model>/       measured errors (validation.json, samples.csv, variants.json): CPU-dependent in
                       their last digits, so outside the published folder, dvc.lock and git
"""

from __future__ import annotations

from pathlib import Path

from signature_onnx.preprocessing.files import IMAGE_SUFFIXES
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec


def raw_dir(model: str) -> Path:
    return Path("data") / "raw" / model


def converted_onnx(model: str) -> Path:
    return Path("data") / "interim" / model / "converted.onnx"


def patched_onnx(model: str) -> Path:
    return Path("data") / "interim" / model / "patched.onnx"


def published_dir(model: str) -> Path:
    return Path("models") / model


# The stages (dvc.yaml) whose outputs make up models/<model>/: what a release pushes and checks,
# and what verification reads from dvc.lock.
PUBLISHING_STAGES = ("validate", "derive")


def reports_dir(model: str) -> Path:
    return Path("reports") / model


def user_images(name: str, spec: ModelSpec) -> list[Path]:
    """Every image file in the folders params name, sorted; a missing folder is an error."""
    images: list[Path] = []
    for folder in map(Path, spec.validation.image_dirs):
        if not folder.is_dir():
            raise PipelineError(f"models.{name}.validation.image_dirs: {folder} is not a folder")
        images.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
    return images
