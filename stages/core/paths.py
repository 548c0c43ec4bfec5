"""Where each stage reads and writes, in one place so dvc.yaml and the code agree.

data/raw/<model>/      upstream bytes, in the upstream layout (fetch)
data/interim/<model>/  converted.onnx (convert), patched.onnx (patch)
models/<model>/        model.onnx, validation.json, samples.csv, lineage.json (validate, publish)
"""

from __future__ import annotations

from pathlib import Path


def raw_dir(model: str) -> Path:
    return Path("data") / "raw" / model


def converted_onnx(model: str) -> Path:
    return Path("data") / "interim" / model / "converted.onnx"


def patched_onnx(model: str) -> Path:
    return Path("data") / "interim" / model / "patched.onnx"


def published_dir(model: str) -> Path:
    return Path("models") / model
