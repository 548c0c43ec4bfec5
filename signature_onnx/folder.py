"""A published model folder: `model.onnx` and the small files the pipeline writes beside it.

- `preprocessing.json`: what the model does (`task`: clean | verify | embed) and how its input
  is made (`signature_onnx.preprocessing.Preprocessing`), written by the pipeline's validate
  stage from the model's params entry;
- `lineage.json`: where the weights come from (a variant folder, `<model>/variants/<variant>/`,
  uses its model's); `source.kind == "builtin"` means synthetic
  stand-in weights, whose results mean nothing (every result then carries a loud warning).

`ModelFolder.open(path)` accepts the folder or its `model.onnx`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signature_onnx.errors import ModelFolderError
from signature_onnx.preprocessing import Preprocessing

PREPROCESSING_FILE = "preprocessing.json"
LINEAGE_FILE = "lineage.json"
MODEL_FILE = "model.onnx"
# A faster variant is published as models/<name>/variants/<variant>/ (model.onnx, preprocessing.json):
# its weights come from the same upstream files as the model two levels up, whose lineage.json says so.
VARIANTS_DIR = "variants"
TASKS = ("clean", "verify", "embed")
FORMAT = 1
# Files larger than this are not a description: refuse instead of reading them into memory.
_MAX_JSON_BYTES = 1 << 20


def preprocessing_json(model: str, task: str, preprocessing: Preprocessing) -> bytes:
    """The bytes of `preprocessing.json` (sorted keys, fixed layout, so the same on every machine)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    body = {"format": FORMAT, "model": model, "task": task, "preprocessing": preprocessing.to_dict()}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > _MAX_JSON_BYTES:
            raise ModelFolderError(f"{path}: {path.stat().st_size} bytes, too large for a description file")
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFolderError(f"{path}: not readable JSON ({exc}); pull or rebuild the model folder") from None


@dataclass(frozen=True)
class ModelFolder:
    """What the package needs to run one published model.

    name: the model's name (its params key); task: clean | verify | embed;
    preprocessing: how images become its input; synthetic: True when its weights are the
    pipeline's built-in stand-ins (results mean nothing); source: a one-line provenance.
    """

    onnx_path: Path
    name: str
    task: str
    preprocessing: Preprocessing
    synthetic: bool
    source: str

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "ModelFolder":
        """Read a model folder (or the path of its model.onnx); fail naming the missing or bad file."""
        given = Path(path)
        folder = given.parent if given.suffix == ".onnx" else given
        onnx_path = given if given.suffix == ".onnx" else folder / MODEL_FILE
        if not onnx_path.is_file():
            raise ModelFolderError(
                f"{onnx_path}: no such model file; expected a published model folder "
                "(models/<name>/ with model.onnx, preprocessing.json, lineage.json): run `dvc pull` or `dvc repro`"
            )
        card_path = folder / PREPROCESSING_FILE
        if not card_path.is_file():
            raise ModelFolderError(
                f"{card_path}: missing; the folder must hold the preprocessing.json the pipeline publishes "
                "beside model.onnx (rebuild with `dvc repro` or pull the whole folder)"
            )
        card = _read_json(card_path)
        if not isinstance(card, dict) or card.get("format") != FORMAT:
            raise ModelFolderError(f"{card_path}: expected a JSON object with \"format\": {FORMAT}")
        task = card.get("task")
        if task not in TASKS:
            raise ModelFolderError(f"{card_path}: task {task!r} is not one of {list(TASKS)}")
        name = card.get("model")
        if not isinstance(name, str) or not name:
            raise ModelFolderError(f"{card_path}: \"model\" must be the model's name")
        preprocessing = Preprocessing.from_dict(card.get("preprocessing"), f"{card_path}: preprocessing")
        lineage = folder / LINEAGE_FILE
        if not lineage.is_file() and folder.parent.name == VARIANTS_DIR and (folder.parent.parent / LINEAGE_FILE).is_file():
            lineage = folder.parent.parent / LINEAGE_FILE
        synthetic, source = _provenance(lineage)
        return cls(onnx_path, name, task, preprocessing, synthetic, source)


def _provenance(lineage_path: Path) -> tuple[bool, str]:
    """(synthetic weights?, one-line source) from lineage.json; unknown provenance counts as synthetic."""
    if not lineage_path.is_file():
        return True, f"unknown: {lineage_path} is missing, so the weights may be synthetic"
    lineage = _read_json(lineage_path)
    source = lineage.get("source") if isinstance(lineage, dict) else None
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind not in ("builtin", "kaggle", "url"):
        return True, f"unknown: {lineage_path} names no source kind"
    if kind == "builtin":
        return True, f"built-in stand-in (seed {source.get('seed')})"
    return False, str(source.get("kernel") or kind)
