"""Siamese signature verifier: a PyTorch checkpoint exported with torch.onnx.

Upstream (docs/MODEL_FACTS.md, "Siamese verifier"): `convnet_best_loss.pt` of the Kaggle notebook
medali1992/siamese-signature-verification-with-confidence, a dict whose key `model` holds the
state_dict of SiameseModel = SigNet with Mish (`model.*`) + `probs` + `projection2d`
Linear(2048, 2). The public copies of the notebook come in two variants, declared by params
`projection2d`: false, `probs` is Linear(4096, 1) on the two 2048-d embeddings (projection2d
unused by forward); true, each embedding goes through projection2d and `probs` is Linear(4, 1)
on the two 2-d projections, which are the outputs. The notebook saves nothing else
(`torch.save({'model': model.state_dict()})`), so loading admits tensors and containers only.
Inputs are preprocessed signatures, uint8 [150, 220]; outputs e1, e2 and the same-writer logit.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.untrusted import shown_names
from stages.core.weight_trace import WeightTracer
from stages.families.torch_sigver.checkpoint import check_keys, checkpoint_path, load_state, torch_load
from stages.families.torch_sigver.inputs import SIAMESE_IMAGE_SHAPE as INPUT_SHAPE
from stages.families.torch_sigver.layers import FEATURES, SigNet, calibrate_batch_norm, export_unfused, synthetic_state
from stages.families.torch_sigver.oracle import SiameseOracle


class SiameseModel(nn.Module):
    """The notebook's model; forward(img1, img2) -> (e1, e2, logit [N, 1]).

    e1, e2: (N, 2048) embeddings, or (N, 2) projections when `projection2d`.
    """

    def __init__(self, projection2d: bool = False) -> None:
        super().__init__()
        self.model = SigNet(activation="mish")
        self.probs = nn.Linear(2 * (2 if projection2d else FEATURES), 1)
        self.projection2d = nn.Linear(FEATURES, 2)
        self.use_projection = projection2d

    def forward_once(self, img: torch.Tensor) -> torch.Tensor:
        img = img.view(-1, 1, *INPUT_SHAPE).float().div(255)
        features = self.model(img)
        return self.projection2d(features) if self.use_projection else features

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        e1 = self.forward_once(img1)
        e2 = self.forward_once(img2)
        logit = self.probs(torch.cat([e1, e2], dim=1))
        return e1, e2, logit


def write_builtin(dest: Path, spec: ModelSpec) -> None:
    """torch.save exactly what the notebook saves: `{'model': model.state_dict()}`, nothing else."""
    state = synthetic_state(SiameseModel(spec.network.projection2d), spec.source.seed)
    calibrate_batch_norm(state, spec.source.seed, "mish", prefix="model.")
    buffer = io.BytesIO()
    torch.save({"model": state}, buffer)
    checkpoint_path(dest, spec).write_bytes(buffer.getvalue())


def _check_probs_head(state: object, spec: ModelSpec, path: Path) -> None:
    """The `probs` shape says which notebook copy the checkpoint is; it must be the declared one."""
    probs = state.get("probs.weight") if isinstance(state, dict) else None
    if not isinstance(probs, torch.Tensor) or probs.ndim != 2 or probs.shape[0] != 1:
        return  # load_state names the missing or malformed key
    inputs = {2 * FEATURES: False, 4: True}.get(int(probs.shape[1]))
    if inputs is not None and inputs != spec.network.projection2d:
        raise PipelineError(
            f"{path}: probs.weight is {tuple(probs.shape)}, the notebook copy with projection2d "
            f"{str(inputs).lower()}; set models.<name>.network.projection2d: {str(inputs).lower()} in params.yaml "
            f"(and the outputs' shapes to [1, {2 if inputs else FEATURES}])"
        )


def load_model(raw: Path, spec: ModelSpec) -> SiameseModel:
    """Load the checkpoint with weights_only=True (tensors and plain containers only) into an eval model.

    The checkpoint must be a dict with string keys holding the state_dict under `model`; every
    tensor is checked for dtype, shape and finiteness before it is loaded.
    """
    path = checkpoint_path(raw, spec)
    checkpoint = torch_load(path)
    if not isinstance(checkpoint, dict):
        raise PipelineError(
            f"{path}: holds a {type(checkpoint).__name__}, expected a dict with key 'model' holding the state_dict"
        )
    check_keys(checkpoint, f"{path}: the checkpoint")
    if "model" not in checkpoint:
        raise PipelineError(
            f"{path}: expected a dict with key 'model' holding the state_dict, found keys {shown_names(checkpoint)}"
        )
    _check_probs_head(checkpoint["model"], spec, path)
    model = SiameseModel(spec.network.projection2d)
    load_state(model, checkpoint["model"], str(path))
    return model.eval()


def check_loadable(raw: Path, spec: ModelSpec) -> None:
    load_model(raw, spec)


def convert(raw: Path, spec: ModelSpec, out: Path) -> None:
    """torch.onnx (TorchScript exporter) with the original code's uint8 [150, 220] example inputs."""
    examples = tuple(torch.zeros(INPUT_SHAPE, dtype=torch.uint8) for _ in spec.onnx.inputs)
    out.write_bytes(
        export_unfused(
            load_model(raw, spec),
            examples,
            [t.source_name for t in spec.onnx.inputs],
            [t.source_name for t in spec.onnx.outputs],
            spec.onnx.opset,
        )
    )


def reference(raw: Path, spec: ModelSpec) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """PyTorch forward on the checkpoint, keyed by ONNX names."""
    model = load_model(raw, spec)
    input_names = [t.name for t in spec.onnx.inputs]
    output_names = [t.name for t in spec.onnx.outputs]

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.no_grad():
            results = model(*(torch.from_numpy(inputs[name]) for name in input_names))
        return {name: value.numpy() for name, value in zip(output_names, results)}

    return run


# forward_once scales the uint8 images: img.float().div(255).
GRAPH_LITERALS = {255.0: "forward_once divides the uint8 images by 255"}


def _state_as_stored(raw: Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    load_model(raw, spec)  # the layout checks
    return {key: value.numpy() for key, value in torch_load(checkpoint_path(raw, spec))["model"].items()}


def independent_reference(raw: Path, spec: ModelSpec) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """`stages.families.torch_sigver.oracle.SiameseOracle` on the checkpoint's state dict as stored."""
    oracle = SiameseOracle(_state_as_stored(raw, spec), spec.network.projection2d)
    first, second = (t.name for t in spec.onnx.inputs)

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = oracle(inputs[first], inputs[second])
        return {t.name: result[t.source_name].astype(np.float32) for t in spec.onnx.outputs}

    return run


def weight_tracer(raw: Path, spec: ModelSpec) -> WeightTracer:
    """The checkpoint's `model` state dict, by key; the export may only copy or transpose them."""
    return WeightTracer(_state_as_stored(raw, spec), literals=GRAPH_LITERALS)
