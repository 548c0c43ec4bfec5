"""PyTorch checkpoints of sigver's SigNet: sigver's .pth files and the Siamese notebook's verifier.

Both are sigver's SigNet feature extractor in PyTorch (docs/MODEL_FACTS.md, "PyTorch SigNet"
and "Siamese verifier"); params `architecture` says which network a checkpoint holds:
- `signet` (`signet`): sigver's (state_dict, classification_layer, forg_layer) tuple, ReLU,
  input float32 [batch, 1, 150, 220] in 0..1, output fc2; `forgery_head` says whether
  forg_layer is SigNet-F's Linear(2048, 1) or plain SigNet's empty stub;
- `siamese` (`siamese`): the notebook's {'model': state_dict}, SigNet with Mish plus the
  `probs` head, two uint8 [150, 220] inputs, outputs e1, e2 and the logit; `projection2d` says
  which of the notebook's two public variants it is.

The whole family is this folder: `layers` (the nn.Module, synthetic and calibrated stand-in
weights, the unfused export), `checkpoint` (loading without running the file, state-dict
checks), `signet` and `siamese` (the family functions per architecture), `inputs` (their
validation inputs, without PyTorch), `oracle` (the independent float64 NumPy reference).
Exported with torch.onnx (TorchScript exporter) in
training=PRESERVE mode, so no batch norm is folded with CPU-dependent arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from stages.core.params import ModelSpec

if TYPE_CHECKING:
    from stages.core.weight_trace import WeightTracer

# What `reference` and `independent_reference` run: named in validation metrics and errors.
REFERENCE = "PyTorch"
INDEPENDENT_REFERENCE = "NumPy float64 oracle"

Arrays = dict[str, np.ndarray]


def architecture_module(spec: ModelSpec) -> ModuleType:
    """The module holding the family functions of the model's architecture."""
    if spec.network.architecture == "siamese":
        from stages.families.torch_sigver import siamese

        return siamese
    from stages.families.torch_sigver import signet

    return signet


def write_builtin(dest: Path, spec: ModelSpec) -> None:
    architecture_module(spec).write_builtin(dest, spec)


def check_loadable(raw: Path, spec: ModelSpec) -> None:
    architecture_module(spec).check_loadable(raw, spec)


def convert(raw: Path, spec: ModelSpec, out: Path) -> None:
    architecture_module(spec).convert(raw, spec, out)


def reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    return architecture_module(spec).reference(raw, spec)


def independent_reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    return architecture_module(spec).independent_reference(raw, spec)


def float64_reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """The float64 NumPy oracle (the independent reference)."""
    return independent_reference(raw, spec)


def weight_tracer(raw: Path, spec: ModelSpec) -> "WeightTracer":
    return architecture_module(spec).weight_tracer(raw, spec)


def validation_inputs(spec: ModelSpec, count: int, image_paths: Sequence[Path]) -> list[tuple[str, Arrays]]:
    # torch-free (inputs.py): the variants step needs the inputs, not PyTorch
    from stages.families.torch_sigver import inputs

    if spec.network.architecture == "siamese":
        return inputs.siamese_validation_inputs(spec, count, image_paths)
    return inputs.signet_validation_inputs(spec, count, image_paths)
