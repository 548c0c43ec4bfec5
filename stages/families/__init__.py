"""Model families: the only code that knows a framework.

A family module (named by `family:` in params.yaml) provides five functions; the generic stages
call nothing else, so a model's whole path is: its params entry, then its family module.

- `write_builtin(dest, spec)`: write the deterministic stand-in in the exact upstream layout.
- `check_loadable(raw, spec)`: load the upstream files in their framework, or raise
  PipelineError saying what is wrong (truncated SavedModel, missing checkpoint key, ...).
- `convert(raw, spec, out)`: write the converter's ONNX (before patching) to `out`.
- `reference(raw, spec)`: a function from ONNX-named inputs to ONNX-named outputs computed by
  the source framework (or, for the Lasagne pickles, an independent NumPy oracle).
- `validation_inputs(spec, count, image_paths)`: (sample id, inputs) pairs for validation.
and a constant `REFERENCE` naming what `reference` runs.

Modules load lazily, so a PyTorch model never imports TensorFlow and the reverse.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np

from stages.config import ModelSpec

Arrays = dict[str, np.ndarray]


class Family(Protocol):
    REFERENCE: str  # what `reference` runs ("TensorFlow", "PyTorch", "NumPy oracle")

    def write_builtin(self, dest: Path, spec: ModelSpec) -> None: ...

    def check_loadable(self, raw: Path, spec: ModelSpec) -> None: ...

    def convert(self, raw: Path, spec: ModelSpec, out: Path) -> None: ...

    def reference(self, raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]: ...

    def validation_inputs(
        self, spec: ModelSpec, count: int, image_paths: Sequence[Path]
    ) -> list[tuple[str, Arrays]]: ...


def load_family(name: str) -> Family:
    """Import `stages.families.<name>`; the name was already checked against config.FAMILIES."""
    module: ModuleType = importlib.import_module(f"stages.families.{name}")
    return module  # type: ignore[return-value]
