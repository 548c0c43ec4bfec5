"""An independent NumPy forward pass of the sigver_wiwd Lasagne networks (the validation oracle).

Theano and Lasagne do not install on Python 3.11, so the ONNX graphs of the Lasagne pickles
are checked against this module instead. It is written straight from the layer facts of
MODELS.md section 3 and the sigver_wiwd `build_architecture` functions, and shares no code with
the converter (`stages.signet_onnx`) or its layer table (`stages.lasagne_pickle`): it has its
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

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stages.errors import PipelineError

# ("conv", filters, kernel, stride, pad) | ("pool", size, stride) | ("flatten",)
# | ("pyramid", levels) | ("dense", units, output name)
NETWORKS: dict[str, tuple[tuple, ...]] = {
    "signet": (
        ("conv", 96, 11, 4, 0), ("pool", 3, 2),
        ("conv", 256, 5, 1, 2), ("pool", 3, 2),
        ("conv", 384, 3, 1, 1), ("conv", 384, 3, 1, 1), ("conv", 256, 3, 1, 1), ("pool", 3, 2),
        ("flatten",),
        ("dense", 2048, "fc1"), ("dense", 2048, "fc2"),
    ),
    "signet_spp_300dpi": (
        ("conv", 32, 11, 3, 5), ("pool", 3, 2),
        ("conv", 64, 5, 1, 2), ("pool", 3, 3),
        ("conv", 128, 3, 1, 1), ("conv", 128, 3, 1, 1), ("pool", 2, 2),
        ("conv", 128, 3, 1, 1),
        ("pyramid", (4, 2, 1)),
        ("dense", 2048, "fc1"), ("dense", 2048, "fc2"),
    ),
    "signet_spp_600dpi": (
        ("conv", 32, 11, 4, 5), ("pool", 3, 3),
        ("conv", 64, 5, 1, 2), ("pool", 3, 2),
        ("conv", 128, 3, 1, 1), ("conv", 128, 3, 1, 1), ("pool", 2, 2),
        ("conv", 128, 3, 1, 1),
        ("pyramid", (4, 2, 1)),
        ("dense", 2048, "fc1"), ("dense", 2048, "fc2"),
    ),
}
ARRAYS_PER_LAYER = 5  # W, beta, gamma, mean, inv_std
_IM2COL_BYTES = 48 << 20  # rows of output per im2col block are chosen to stay under this


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
            raise PipelineError(
                f"oracle: {network} needs {weighted * ARRAYS_PER_LAYER} arrays, got {len(params)}"
            )
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


def _too_small(network: str, what: str, size: tuple[int, ...]) -> PipelineError:
    return PipelineError(f"oracle: the input is too small for {network}: {what} would output {size}")


def conv2d(x: np.ndarray, w: np.ndarray, stride: int, pad: int, network: str = "") -> np.ndarray:
    """Cross-correlation of x (C, H, W) with w (O, C, k, k): output (O, Ho, Wo), float64.

    im2col in blocks of output rows: each block's windows become a (rows*Wo, C*k*k) matrix
    multiplied by w reshaped to (C*k*k, O), so the memory stays bounded for 2000x3000 inputs.
    """
    channels, height, width = x.shape
    filters, w_channels, k, k2 = w.shape
    assert w_channels == channels and k == k2, (x.shape, w.shape)
    out_h = (height + 2 * pad - k) // stride + 1
    out_w = (width + 2 * pad - k) // stride + 1
    if out_h < 1 or out_w < 1:
        raise _too_small(network, f"a {k}x{k} stride-{stride} convolution", (out_h, out_w))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))[:, ::stride, ::stride]  # (C, Ho, Wo, k, k)
    kernel = w.reshape(filters, channels * k * k).T  # (C*k*k, O), same (c, i, j) order as the windows
    out = np.empty((filters, out_h, out_w))
    rows_per_block = max(1, _IM2COL_BYTES // (8 * out_w * channels * k * k))
    for start in range(0, out_h, rows_per_block):
        stop = min(out_h, start + rows_per_block)
        block = windows[:, start:stop].transpose(1, 2, 0, 3, 4).reshape((stop - start) * out_w, channels * k * k)
        out[:, start:stop] = (block @ kernel).T.reshape(filters, stop - start, out_w)
    return out


def max_pool(x: np.ndarray, size: int, stride: int, network: str = "") -> np.ndarray:
    """Max over size x size windows at `stride`, incomplete windows dropped: (C, Ho, Wo)."""
    _, height, width = x.shape
    out_h = (height - size) // stride + 1
    out_w = (width - size) // stride + 1
    if out_h < 1 or out_w < 1:
        raise _too_small(network, f"a {size}x{size} stride-{stride} max pool", (out_h, out_w))
    out = np.full((x.shape[0], out_h, out_w), -np.inf)
    for i in range(size):
        for j in range(size):
            np.maximum(out, x[:, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride], out=out)
    return out


def pyramid_pool(x: np.ndarray, levels: Sequence[int]) -> np.ndarray:
    """The "kaiming" pyramid, literally: (C, sum n^2) maxima, bins row-major, level by level.

    Bounds are computed as Lasagne did, in floating point: floor(row / n * h), ceil((row+1) / n * h);
    for n in (1, 2, 4) the products are exact.
    """
    _, height, width = x.shape
    bins = []
    for n in levels:
        for row in range(n):
            for col in range(n):
                top, bottom = math.floor(row / n * height), math.ceil((row + 1) / n * height)
                left, right = math.floor(col / n * width), math.ceil((col + 1) / n * width)
                bins.append(x[:, top:bottom, left:right].max(axis=(1, 2)))
    return np.stack(bins, axis=1)
