"""An independent float64 NumPy forward pass of the cleaning autoencoder (the test vectors' reference).

Written from the layer facts of the Keras config (`stages.families.keras_cleaning.ARCHITECTURE`
names the layers; the arithmetic below is Keras's documented semantics, not TensorFlow code):
- Conv2D 3x3, stride 1, padding "same": zero padding 1 on each side, cross-correlation,
  kernel (kh, kw, in, out), plus bias, then the activation (ReLU; sigmoid for conv2d_6);
- MaxPooling2D 2, padding "same": on the even sizes here (224, 112, 56) plain 2x2 windows;
- Conv2DTranspose 3x3, stride 2, padding "same": the transpose of the stride-2 "same" conv, whose
  padding is 0 before and 1 after, so input pixel (p, q) adds `x[p, q] @ K[i, j].T` to output
  pixel (2p + i, 2q + j) (kernel (kh, kw, out, in)); output size twice the input, plus bias;
- Dropout is the identity at inference.
The weights are read from the SavedModel's variables checkpoint (plain tensors; no graph code
runs), in Keras order `layer_with_weights-K/{kernel,bias}`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stages.core.errors import PipelineError, first_line

# (kind, activation) for every layer that has weights, in Keras order; pools between them.
LAYERS = (
    ("conv", "relu"),
    ("conv", "relu"),
    ("pool", ""),
    ("conv", "relu"),
    ("conv", "relu"),
    ("pool", ""),
    ("conv", "relu"),
    ("conv", "relu"),
    ("pool", ""),
    ("deconv", "relu"),
    ("deconv", "relu"),
    ("deconv", "relu"),
    ("conv", "sigmoid"),
)
_ROWS_PER_BLOCK = 16  # im2col rows per block: bounded memory, fixed (machine-independent) blocking


def read_weights(variables_prefix: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) float64 per weighted layer from `model/variables/variables` (a TF checkpoint)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(variables_prefix))
    except Exception as exc:  # TF's own NotFoundError / DataLossError
        raise PipelineError(f"{variables_prefix}: cannot read the SavedModel variables ({first_line(exc)})") from None
    weighted = sum(1 for kind, _ in LAYERS if kind != "pool")
    weights = []
    for index in range(weighted):
        key = f"layer_with_weights-{index}/{{}}/.ATTRIBUTES/VARIABLE_VALUE"
        try:
            weights.append(
                (
                    reader.get_tensor(key.format("kernel")).astype(np.float64),
                    reader.get_tensor(key.format("bias")).astype(np.float64),
                )
            )
        except Exception:
            raise PipelineError(
                f"{variables_prefix}: no variable {key.format('kernel')!r}; expected the cleaning autoencoder's 10 weighted layers"
            ) from None
    return weights


def conv_same(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 "same" cross-correlation: x (H, W, C) float64, kernel (3, 3, C, O) -> (H, W, O)."""
    height, width, channels = x.shape
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    windows = sliding_window_view(padded, (3, 3), axis=(0, 1))  # (H, W, C, 3, 3)
    matrix = kernel.transpose(2, 0, 1, 3).reshape(channels * 9, -1)  # (C*3*3, O), (c, i, j) order
    out = np.empty((height, width, kernel.shape[3]))
    for start in range(0, height, _ROWS_PER_BLOCK):
        stop = min(height, start + _ROWS_PER_BLOCK)
        block = windows[start:stop].reshape((stop - start) * width, channels * 9)
        out[start:stop] = (block @ matrix).reshape(stop - start, width, -1)
    return out + bias


def max_pool_2(x: np.ndarray) -> np.ndarray:
    """2x2 max pooling, stride 2, of (H, W, C) with even H and W."""
    height, width, _ = x.shape
    if height % 2 or width % 2:
        raise PipelineError(f"cleaning oracle: expected even sizes for 2x2 pooling, got {x.shape}")
    return x.reshape(height // 2, 2, width // 2, 2, -1).max(axis=(1, 3))


def deconv_same_2(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 stride-2 "same" transposed convolution: (n, m, C) -> (2n, 2m, O); kernel (3, 3, O, C)."""
    rows, cols, _ = x.shape
    out = np.zeros((2 * rows, 2 * cols, kernel.shape[2]))
    for i in range(3):
        for j in range(3):
            contribution = x @ kernel[i, j].T  # (n, m, O)
            r = min(rows, (2 * rows - 1 - i) // 2 + 1)  # input rows whose 2p + i stays inside
            c = min(cols, (2 * cols - 1 - j) // 2 + 1)
            out[i : i + 2 * r : 2, j : j + 2 * c : 2] += contribution[:r, :c]
    return out + bias


class CleaningOracle:
    """The autoencoder in float64. Call with float (N, 224, 224, 3) in [0, 1]; returns (N, 224, 224, 3) float64."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]]):
        self.weights = weights

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.stack([self._forward(np.asarray(image, dtype=np.float64)) for image in images])

    def _forward(self, x: np.ndarray) -> np.ndarray:
        cursor = 0
        for kind, activation in LAYERS:
            if kind == "pool":
                x = max_pool_2(x)
                continue
            kernel, bias = self.weights[cursor]
            cursor += 1
            x = conv_same(x, kernel, bias) if kind == "conv" else deconv_same_2(x, kernel, bias)
            x = np.maximum(x, 0.0) if activation == "relu" else 1.0 / (1.0 + np.exp(-x))
        return x
