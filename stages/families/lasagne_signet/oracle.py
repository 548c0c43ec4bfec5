"""An independent NumPy forward pass of the sigver_wiwd Lasagne networks (the validation oracle).

Theano and Lasagne do not install on Python 3.11, so the ONNX graphs of the Lasagne pickles
are checked against this module instead. It is written straight from the layer facts of
docs/MODEL_FACTS.md ("Lasagne SigNet pickles") and the sigver_wiwd `build_architecture` functions, and shares no code with
the converter (`stages.families.lasagne_signet.onnx_builder`) or its layer table (`stages.families.lasagne_signet.layout`): it has its
own table below, reads the flat `params` list itself, and computes in float64 (Theano computed
in float32, so the oracle is the more exact of the two).

Facts used, one by one:
- Conv2DLayer(flip_filters=False): cross-correlation, zero padding `pad` on each side, output
  floor((n + 2 pad - k) / stride) + 1; no bias (batch_norm removed it).
- batch_norm at inference: y = (x - mean) * (gamma * inv_std) + beta, then ReLU; the four
  vectors follow W in the order beta, gamma, mean, inv_std.
- MaxPool2DLayer: ignore_border=True, so output floor((n - size) / stride) + 1; stride
  defaults to the size.
- SigNet flattens the last pool output in (C, H, W) order into the dense layer.
- SpatialPyramidPoolingLayer "kaiming", levels [4, 2, 1], max: bin (row, col) of level n is
  the max over rows floor(row / n * h) .. ceil((row + 1) / n * h) and likewise columns; bins
  in row-major order, levels one after another, flattened as channel * 21 + bin.
- DenseLayer: y = x @ W with W (in, out).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stages.core.errors import PipelineError
from stages.core.float64_layers import conv2d, max_pool, pyramid_pool

# ("conv", filters, kernel, stride, pad) | ("pool", size, stride) | ("flatten",)
# | ("pyramid", levels) | ("dense", units, output name)
NETWORKS: dict[str, tuple[tuple, ...]] = {
    "signet": (
        ("conv", 96, 11, 4, 0),
        ("pool", 3, 2),
        ("conv", 256, 5, 1, 2),
        ("pool", 3, 2),
        ("conv", 384, 3, 1, 1),
        ("conv", 384, 3, 1, 1),
        ("conv", 256, 3, 1, 1),
        ("pool", 3, 2),
        ("flatten",),
        ("dense", 2048, "fc1"),
        ("dense", 2048, "fc2"),
    ),
    "signet_spp_300dpi": (
        ("conv", 32, 11, 3, 5),
        ("pool", 3, 2),
        ("conv", 64, 5, 1, 2),
        ("pool", 3, 3),
        ("conv", 128, 3, 1, 1),
        ("conv", 128, 3, 1, 1),
        ("pool", 2, 2),
        ("conv", 128, 3, 1, 1),
        ("pyramid", (4, 2, 1)),
        ("dense", 2048, "fc1"),
        ("dense", 2048, "fc2"),
    ),
    "signet_spp_600dpi": (
        ("conv", 32, 11, 4, 5),
        ("pool", 3, 3),
        ("conv", 64, 5, 1, 2),
        ("pool", 3, 2),
        ("conv", 128, 3, 1, 1),
        ("conv", 128, 3, 1, 1),
        ("pool", 2, 2),
        ("conv", 128, 3, 1, 1),
        ("pyramid", (4, 2, 1)),
        ("dense", 2048, "fc1"),
        ("dense", 2048, "fc2"),
    ),
}
ARRAYS_PER_LAYER = 5  # W, beta, gamma, mean, inv_std


class LasagneOracle:
    """Forward pass of one network with the flat Lasagne `params` list of its pickle.

    Call with images float (N, 1, H, W) in the network's input range (0..255, ink bright);
    returns {"fc1": (N, 2048), "fc2": (N, 2048)} float64, both after their ReLU.
    """

    def __init__(self, network: str, params: Sequence[np.ndarray]):
        if network not in NETWORKS:
            raise PipelineError(f"oracle: unknown network {network!r}; known: {sorted(NETWORKS)}")
        self.network = network
        self.layers = NETWORKS[network]
        weighted = sum(1 for layer in self.layers if layer[0] in ("conv", "dense"))
        if len(params) != weighted * ARRAYS_PER_LAYER:
            raise PipelineError(f"oracle: {network} needs {weighted * ARRAYS_PER_LAYER} arrays, got {len(params)}")
        self.params = [np.asarray(p, dtype=np.float64) for p in params]

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim != 4 or images.shape[1] != 1:
            raise PipelineError(f"oracle: expected images of shape (N, 1, H, W), got {images.shape}")
        per_image = [self._forward(image) for image in images]
        return {name: np.stack([out[name] for out in per_image]) for name in per_image[0]}

    def _forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One image (1, H, W) through the layer table; params consumed five at a time."""
        outputs: dict[str, np.ndarray] = {}
        cursor = 0
        for layer in self.layers:
            kind = layer[0]
            if kind in ("conv", "dense"):
                w, beta, gamma, mean, inv_std = self.params[cursor : cursor + ARRAYS_PER_LAYER]
                cursor += ARRAYS_PER_LAYER
                if kind == "conv":
                    _, _filters, _kernel, stride, pad = layer
                    x = conv2d(x, w, stride, pad, self.network)
                    shape = (-1, 1, 1)
                else:
                    x = x @ w
                    shape = (-1,)
                x = (x - mean.reshape(shape)) * (gamma * inv_std).reshape(shape) + beta.reshape(shape)
                x = np.maximum(x, 0.0)
                if kind == "dense":
                    outputs[layer[2]] = x
            elif kind == "pool":
                x = max_pool(x, layer[1], layer[2], self.network)
            elif kind == "flatten":
                x = x.reshape(-1)  # (C, H, W) row-major: index c*H*W + h*W + w
            elif kind == "pyramid":
                x = pyramid_pool(x, layer[1]).reshape(-1)  # index c*21 + bin
        return outputs
