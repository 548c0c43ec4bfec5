"""An independent float64 NumPy forward pass of the PyTorch SigNet networks (second reference).

The PyTorch families are validated against PyTorch running the project's own module definition
(`stages.families.torch_sigver.layers`), which is also the module that is exported: a mistake in that
module (a dropped activation, a wrong batch-norm epsilon, another flatten order) would be in the
ONNX file and in the reference alike. This oracle is the independent check. It is written from
the layer facts of luizgh/sigver `sigver/featurelearning/models/signet.py` and the Siamese
notebook's `SiameseModel`, with its own layer table; it imports nothing from the torch families
and reads the state dict by its upstream keys. The conv and pool primitives are the Lasagne
oracle's (`stages.families.lasagne_signet.oracle`), which are equally independent of the exported module.

Facts used, one by one (docs/MODEL_FACTS.md, "PyTorch SigNet"):
- conv_layers.convK: nn.Conv2d(bias=False) (cross-correlation, zero padding), then
  nn.BatchNorm2d(eps=1e-5) at inference: y = (x - running_mean) / sqrt(running_var + eps)
  * weight + bias, then the activation.
- maxpool: nn.MaxPool2d(3, 2): floor mode, incomplete windows dropped.
- the last pool's output (256, 3, 5) is flattened in (C, H, W) order into fc1 (3840 inputs).
- fc_layers.fcK: nn.Linear(bias=False), y = x @ W.T with W (out, in); BatchNorm1d(eps=1e-5);
  the activation. sigver's forward returns fc2 after its activation.
- activation: ReLU in sigver; Mish, x * tanh(softplus(x)), in the Siamese notebook.
- Siamese: each uint8 image (150, 220) is divided by 255; e1, e2 = SigNet-Mish(img1),
  SigNet-Mish(img2); logit = concat(e1, e2) @ probs.weight.T + probs.bias.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stages.core.errors import PipelineError
from stages.core.float64_layers import conv2d, max_pool

# ("conv", key, stride, padding) | ("pool", size, stride) | ("flatten",) | ("dense", key)
SIGVER_SIGNET = (
    ("conv", "conv_layers.conv1", 4, 0),
    ("pool", 3, 2),
    ("conv", "conv_layers.conv2", 1, 2),
    ("pool", 3, 2),
    ("conv", "conv_layers.conv3", 1, 1),
    ("conv", "conv_layers.conv4", 1, 1),
    ("conv", "conv_layers.conv5", 1, 1),
    ("pool", 3, 2),
    ("flatten",),
    ("dense", "fc_layers.fc1"),
    ("dense", "fc_layers.fc2"),
)
BATCH_NORM_EPS = 1e-5  # PyTorch's BatchNorm default, kept by sigver and the notebook
SIGNET_INPUT = (1, 150, 220)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def mish(x: np.ndarray) -> np.ndarray:
    """x * tanh(softplus(x)), softplus computed as logaddexp(0, x) (no overflow for large x)."""
    return x * np.tanh(np.logaddexp(0.0, x))


ACTIVATIONS = {"relu": relu, "mish": mish}


def _float64_state(state: Mapping[str, object]) -> dict[str, np.ndarray]:
    return {key: np.asarray(value, dtype=np.float64) for key, value in state.items()}


class SigNetOracle:
    """sigver's SigNet in float64 from a state dict (upstream keys, arrays or tensors).

    Call with images float (N, 1, 150, 220) in the network's input range (sigver: 0..1);
    returns {"fc1": (N, 2048), "fc2": (N, 2048)} float64, each after its activation.
    """

    def __init__(self, state: Mapping[str, object], activation: str, prefix: str = ""):
        if activation not in ACTIVATIONS:
            raise PipelineError(f"torch oracle: unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        self.activation = ACTIVATIONS[activation]
        self.state = _float64_state(state)
        self.prefix = prefix
        needed = [
            f"{prefix}{layer[1]}.{part}"
            for layer in SIGVER_SIGNET
            if layer[0] in ("conv", "dense")
            for part in (
                ("conv" if layer[0] == "conv" else "fc") + ".weight",
                "bn.weight",
                "bn.bias",
                "bn.running_mean",
                "bn.running_var",
            )
        ]
        missing = [key for key in needed if key not in self.state]
        if missing:
            raise PipelineError(f"torch oracle: the state dict lacks {missing[:3]}")

    def _batch_norm(self, x: np.ndarray, key: str, spatial: bool) -> np.ndarray:
        shape = (-1, 1, 1) if spatial else (-1,)
        get = lambda part: self.state[f"{self.prefix}{key}.bn.{part}"].reshape(shape)  # noqa: E731
        return (x - get("running_mean")) / np.sqrt(get("running_var") + BATCH_NORM_EPS) * get("weight") + get("bias")

    def _forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = {}
        for layer in SIGVER_SIGNET:
            kind = layer[0]
            if kind == "conv":
                _, key, stride, padding = layer
                x = conv2d(x, self.state[f"{self.prefix}{key}.conv.weight"], stride, padding, "sigver SigNet")
                x = self.activation(self._batch_norm(x, key, spatial=True))
            elif kind == "pool":
                x = max_pool(x, layer[1], layer[2], "sigver SigNet")
            elif kind == "flatten":
                x = x.reshape(-1)  # (C, H, W) row-major, as torch's view on a contiguous NCHW tensor
            else:
                key = layer[1]
                x = x @ self.state[f"{self.prefix}{key}.fc.weight"].T
                x = self.activation(self._batch_norm(x, key, spatial=False))
                outputs[key.rsplit(".", 1)[-1]] = x
        return outputs

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 4 or images.shape[1:] != SIGNET_INPUT:
            raise PipelineError(f"torch oracle: expected images of shape (N, 1, 150, 220), got {images.shape}")
        per_image = [self._forward(image) for image in images]
        return {name: np.stack([out[name] for out in per_image]) for name in per_image[0]}


class SiameseOracle:
    """The Siamese notebook's SiameseModel in float64 (state dict keys `model.*`, `probs.*`, `projection2d.*`).

    Call with two uint8 images (150, 220) (or (N, 150, 220)); returns {"e1", "e2", "logit"}
    float64: e1, e2 (N, 2048) features, or with `projection2d` (N, 2) projections
    (x @ projection2d.weight.T + projection2d.bias); logit (N, 1) = concat(e1, e2) @ probs.weight.T + probs.bias.
    """

    def __init__(self, state: Mapping[str, object], projection2d: bool = False):
        self.signet = SigNetOracle(state, "mish", prefix="model.")
        self.probs_weight = np.asarray(state["probs.weight"], dtype=np.float64)  # (1, 4096) or (1, 4)
        self.probs_bias = np.asarray(state["probs.bias"], dtype=np.float64)  # (1,)
        self.projection = (
            (
                np.asarray(state["projection2d.weight"], dtype=np.float64),
                np.asarray(state["projection2d.bias"], dtype=np.float64),
            )
            if projection2d
            else None
        )

    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> dict[str, np.ndarray]:
        def embed(img: np.ndarray) -> np.ndarray:
            scaled = np.asarray(img, dtype=np.float64).reshape(-1, *SIGNET_INPUT) / 255.0
            features = self.signet(scaled)["fc2"]
            if self.projection is None:
                return features
            weight, bias = self.projection
            return features @ weight.T + bias

        e1, e2 = embed(img1), embed(img2)
        logit = np.concatenate([e1, e2], axis=1) @ self.probs_weight.T + self.probs_bias
        return {"e1": e1, "e2": e2, "logit": logit}
