"""Model families: the only code that knows a framework.

A family is a package `stages/families/<family>/` (named by `family:` in params.yaml) whose
`__init__` provides seven functions; the generic stages call nothing else, so a model's whole path
is: its params entry, then its family's folder.

- `write_builtin(dest, spec)`: write the deterministic stand-in in the exact upstream layout.
- `check_loadable(raw, spec)`: load the upstream files in their framework, or raise
  PipelineError saying what is wrong (truncated SavedModel, missing checkpoint key, ...).
- `convert(raw, spec, out)`: write the converter's ONNX (before patching) to `out`.
- `reference(raw, spec)`: a function from ONNX-named inputs to ONNX-named outputs computed by
  the source framework (or, for the Lasagne pickles, an independent NumPy oracle).
- `validation_inputs(spec, count, image_paths)`: (sample id, inputs) pairs for validation.
- `weight_tracer(raw, spec)`: a `stages.core.weight_trace.WeightTracer` holding the upstream tensors
  as stored (plus the converter's declared exact folds and literals), against which every
  constant of the ONNX graph must be traced bit for bit.
- `float64_reference(raw, spec)`: inputs -> outputs computed in float64 NumPy from the upstream
  bytes and rounded to float32 once (the test vectors' expected outputs; the vectors step runs
  it under pinned kernels, so it must not call the framework's own kernels).
and a constant `REFERENCE` naming what `reference` runs. A family whose reference runs the
module that is exported (PyTorch) also provides `independent_reference(raw, spec)`, a float64
NumPy forward pass sharing no code with that module, named by `INDEPENDENT_REFERENCE`.

Beside it, the family's `facts.py` declares what the shared stages know of it (architectures
with their task and model-card upstream, the default download limit, the card's preprocessing
lines; stages.core.family_facts), so no shared module names a family.

Families load lazily, so a PyTorch model never imports TensorFlow and the reverse.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from stages.core.params import ModelSpec

if TYPE_CHECKING:  # onnx only where a stage traces weights: ONNX-Runtime-only callers import families
    from stages.core.weight_trace import WeightTracer

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

    def weight_tracer(self, raw: Path, spec: ModelSpec) -> "WeightTracer": ...

    def float64_reference(self, raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]: ...


def references(family: Family, raw: Path, spec: ModelSpec) -> list[tuple[str, Callable[[Arrays], Arrays]]]:
    """(name, forward) of the family's reference, then of its independent one when it has one."""
    found = [(family.REFERENCE, family.reference(raw, spec))]
    if hasattr(family, "independent_reference"):
        found.append((family.INDEPENDENT_REFERENCE, family.independent_reference(raw, spec)))  # type: ignore[attr-defined]
    return found


def load_family(name: str) -> Family:
    """Import `stages.families.<name>`; params already checked that the name is a family folder
    (stages.core.family_facts.known_families)."""
    module: ModuleType = importlib.import_module(f"stages.families.{name}")
    return module  # type: ignore[return-value]
