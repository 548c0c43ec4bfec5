"""SigNet of luizgh/sigver (PyTorch .pth) exported with torch.onnx, validated against PyTorch.

Upstream (docs/MODEL_FACTS.md, "PyTorch SigNet"): `signet.pth` and `signet_f_lambda_0.95.pth`, each written by
sigver's training script as `torch.save((state_dict, classification_layer_state,
forg_layer_state))`:
- state_dict: the SigNet feature extractor, keys `conv_layers.convK.{conv,bn}.*` (K = 1..5) and
  `fc_layers.fcK.{fc,bn}.*` (K = 1, 2), ReLU activations (stages.families.torch_sigver.layers);
- classification_layer_state: nn.Linear(2048, n_users), {'weight': (n_users, 2048), 'bias'};
- forg_layer_state: nn.Linear(2048, 1) for SigNet-F, an empty dict for SigNet (sigver saves
  the state of a parameter-less stub module when it trains without forgeries).
Only the feature extractor is converted; the two heads are checked for shape and dropped.

ONNX I/O: input `input` float32 [batch, 1, 150, 220], the `preprocess_signature` output of
sigver's scikit-image style (params `preprocessing`, style sigver) on the (952, 1360) canvas
DIVIDED BY 255 (values 0..1; sigver's models were trained that way, unlike
the Lasagne ones); output `fc2` float32 [batch, 2048], the SigNet features after fc2's ReLU
(sigver's forward returns fc2 only, so there is no fc1 output).

The .pth files load with `torch.load(weights_only=True)`: only tensors and plain containers.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stages.core import random_draws as draws
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.untrusted import shown_names
from stages.core.weight_trace import WeightTracer
from stages.families.torch_sigver.checkpoint import check_keys, check_tensor, checkpoint_path, load_state, torch_load
from stages.families.torch_sigver.inputs import SIGNET_INPUT_SHAPE as INPUT_SHAPE
from stages.families.torch_sigver.layers import FEATURES, SigNet, calibrate_batch_norm, export_unfused, synthetic_state
from stages.families.torch_sigver.oracle import SigNetOracle

# GPDS users 300..880 trained the classification layer (sigver README: --users 300 881).
BUILTIN_USERS = 581

Arrays = dict[str, np.ndarray]


def _linear_state(rng: np.random.Generator, outputs: int) -> OrderedDict[str, torch.Tensor]:
    bound = 1.0 / np.sqrt(FEATURES)  # nn.Linear's default init range
    weight = rng.uniform(-bound, bound, size=(outputs, FEATURES)).astype(np.float32)
    bias = rng.uniform(-bound, bound, size=(outputs,)).astype(np.float32)
    return OrderedDict([("weight", torch.from_numpy(weight)), ("bias", torch.from_numpy(bias))])


def write_builtin(dest: Path, spec: ModelSpec) -> None:
    """torch.save the sigver tuple with synthetic weights (PCG64 + float32 only, byte-stable)."""
    path = checkpoint_path(dest, spec)
    state = synthetic_state(SigNet(activation="relu"), spec.source.seed)
    calibrate_batch_norm(state, spec.source.seed, "relu")
    rng = draws.generator(spec.source.seed + 1)
    classification = _linear_state(rng, BUILTIN_USERS)
    # sigver saves forg_layer.state_dict(): SigNet-F's Linear(2048, 1), or plain SigNet's empty stub.
    forgery = _linear_state(rng, 1) if spec.network.forgery_head else OrderedDict()
    buffer = io.BytesIO()  # a buffer, so the zip's record prefix is the fixed "archive/"
    torch.save((state, classification, forgery), buffer)
    path.write_bytes(buffer.getvalue())


def _check_head(state: object, name: str, rows: int | None, path: Path, may_be_empty: bool) -> None:
    """A head is {'weight': (rows, 2048), 'bias': (rows,)} float32, finite; rows=None accepts any class count."""
    where = f"{path}: {name}"
    if not isinstance(state, dict):
        raise PipelineError(f"{where} is a {type(state).__name__}, expected a state dict")
    check_keys(state, where)
    if not state and may_be_empty:
        return
    weight, bias = state.get("weight"), state.get("bias")
    if (
        sorted(state) != ["bias", "weight"]
        or not isinstance(weight, torch.Tensor)
        or not isinstance(bias, torch.Tensor)
    ):
        raise PipelineError(f"{where} has keys {shown_names(state, 5)}, expected 'weight' and 'bias' tensors")
    if (
        weight.ndim != 2
        or weight.shape[1] != FEATURES
        or bias.shape != (weight.shape[0],)
        or (rows and weight.shape[0] != rows)
    ):
        want = f"({rows or 'n'}, {FEATURES})"
        raise PipelineError(
            f"{where} weight {tuple(weight.shape)} / bias {tuple(bias.shape)}, expected weight {want} and a matching bias"
        )
    check_tensor(weight, f"{where} weight", torch.float32, tuple(weight.shape))
    check_tensor(bias, f"{where} bias", torch.float32, tuple(bias.shape))


def _check_forgery_head(state: object, spec: ModelSpec, path: Path) -> None:
    """forg_layer: SigNet-F's Linear(2048, 1) when params say `forgery_head: true`, else the empty stub."""
    _check_head(state, "forg_layer", 1, path, may_be_empty=True)
    assert isinstance(state, dict)
    if bool(state) != spec.network.forgery_head:
        found = "holds a forgery head (SigNet-F)" if state else "is empty (plain SigNet's stub)"
        raise PipelineError(
            f"{path}: forg_layer {found}; set models.<name>.network.forgery_head: {str(bool(state)).lower()} in params.yaml"
        )


def load_model(raw: Path, spec: ModelSpec) -> SigNet:
    """Load the tuple with weights_only=True, check its three parts, return SigNet in eval mode."""
    path = checkpoint_path(raw, spec)
    content = torch_load(path)
    if not isinstance(content, (tuple, list)) or len(content) != 3:
        kind = f"a {len(content)}-tuple" if isinstance(content, (tuple, list)) else f"a {type(content).__name__}"
        raise PipelineError(
            f"{path}: holds {kind}, expected (state_dict, classification_layer, forg_layer) as sigver saves it"
        )
    state, classification, forgery = content
    if not isinstance(state, dict):
        raise PipelineError(f"{path}: the first element is a {type(state).__name__}, expected the SigNet state_dict")
    _check_head(classification, "classification_layer", None, path, may_be_empty=False)
    _check_forgery_head(forgery, spec, path)
    model = SigNet(activation="relu")
    load_state(model, state, str(path))
    return model.eval()


def check_loadable(raw: Path, spec: ModelSpec) -> None:
    load_model(raw, spec)


def convert(raw: Path, spec: ModelSpec, out: Path) -> None:
    """torch.onnx (TorchScript exporter) with a dynamic batch dimension."""
    input_name = spec.onnx.inputs[0].source_name
    output_name = spec.onnx.outputs[0].source_name
    Path(out).write_bytes(
        export_unfused(
            load_model(raw, spec),
            (torch.zeros((1, *INPUT_SHAPE)),),
            [input_name],
            [output_name],
            spec.onnx.opset,
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )
    )


def reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """PyTorch forward (float32, eval mode), keyed by ONNX names."""
    model = load_model(raw, spec)
    input_name, output_name = spec.onnx.inputs[0].name, spec.onnx.outputs[0].name

    def run(inputs: Arrays) -> Arrays:
        with torch.no_grad():
            return {output_name: model(torch.from_numpy(inputs[input_name])).numpy()}

    return run


def independent_reference(raw: Path, spec: ModelSpec) -> Callable[[Arrays], Arrays]:
    """`stages.families.torch_sigver.oracle` on the checkpoint's state dict as stored (not via the exported module)."""
    load_model(raw, spec)  # the layout checks
    state = torch_load(checkpoint_path(raw, spec))[0]
    oracle = SigNetOracle({key: value.numpy() for key, value in state.items()}, "relu")
    input_name, output_name = spec.onnx.inputs[0].name, spec.onnx.outputs[0].name

    def run(inputs: Arrays) -> Arrays:
        return {output_name: oracle(inputs[input_name])["fc2"].astype(np.float32)}

    return run


def weight_tracer(raw: Path, spec: ModelSpec) -> WeightTracer:
    """Every tensor of the .pth tuple, by its key; the export may only copy or transpose them."""
    load_model(raw, spec)  # the layout and tensor checks
    state, classification, forgery = torch_load(checkpoint_path(raw, spec))
    upstream = {f"state_dict.{key}": value.numpy() for key, value in state.items()}
    upstream |= {f"classification_layer.{key}": value.numpy() for key, value in classification.items()}
    upstream |= {f"forg_layer.{key}": value.numpy() for key, value in forgery.items()}
    return WeightTracer(upstream)
