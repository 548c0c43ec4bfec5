"""Float64 layer primitives (convolution, max pooling, spatial pyramid pooling) in NumPy.

Shared by the families' oracles (their independent float64 NumPy forward passes), the exact
batch-norm calibration of the stand-ins (`stages.core.calibration`) and the float64 ranges of
the int8 variants (`stages.speedups.builders`). Written from the layer definitions
(docs/MODEL_FACTS.md), never from an exported graph, so they are as independent of the converters as the oracles using them.
Shapes: x (C, H, W) float64, weights (O, C, k, k); outputs (O, Ho, Wo) or (C, bins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stages.core.errors import PipelineError

_IM2COL_BYTES = 48 << 20  # rows of output per im2col block are chosen to stay under this


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
            np.maximum(
                out, x[:, i : i + stride * (out_h - 1) + 1 : stride, j : j + stride * (out_w - 1) + 1 : stride], out=out
            )
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
