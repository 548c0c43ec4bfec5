"""Batch-norm statistics for the built-in stand-ins, calibrated in exact arithmetic.

Why calibrate: with random running means and variances many units of a stand-in are zero on
every input (16-43 % of fc1 in SigNet), so the weights behind them are never exercised by
validation. Training leaves each BatchNorm's statistics equal to the mean and variance of its
input over the data; computing them the same way on drawn signatures makes every unit active
on some inputs, as in a trained network.

Why exact: the statistics are written into the stand-in file, which dvc.lock hashes, so they
must be the same bits on every CPU. Floating-point forward passes round differently with the
kernels a CPU gets. Here every value that decides a statistic is an integer:
- inputs are integers (uint8 pixels, or pixels * 256 / 255 floored for networks fed 0..1);
- each weight matrix is quantized to 12-bit integers, W_q = rint(W * 2^s) (a power-of-two
  scale and rint are exact);
- convolutions and dense layers run on integer-valued float64 arrays whose every partial sum
  stays below 2^53 (checked before each layer), so any BLAS, in any summation order, with or
  without FMA, returns the exact integer;
- statistics are integer sums turned into `fractions.Fraction`, then correctly rounded once;
- the batch norm and activation applied before the next layer use integer multipliers and
  floor shifts on int64 (ReLU: max(y, 0); Mish: linear interpolation in a fixed table of
  Mish values given below to 1e-4), so the next layer's input is integers again.
The calibration network is thus a quantized approximation of the float network (activations on
a 2^-8 grid, 12-bit weights): close enough for statistics, and identical on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from stages.core import random_draws as draws
from stages.core.errors import PipelineError
from stages.core.float64_layers import conv2d, max_pool, pyramid_pool

WEIGHT_BITS = 12  # |W_q| < 2^12
ACTIVATION_BITS = 8  # activations on a 2^-8 grid
MULTIPLIER_BITS = 16  # batch-norm scale gamma / sqrt(var + eps) on a 2^-16 grid
VARIANCE_BITS = 15  # accumulators shifted below 2^15 before squaring
EXACT_LIMIT = 2**53  # float64 represents every integer below this
INT64_LIMIT = 2**62
# Mish(x) * 1e4 at x = -6, -5.5, ..., 4 (rounded); Mish(x) ~ x above 4 and ~ 0 below -6.
MISH_KNOTS_FROM, MISH_KNOT_STEP = -6.0, 0.5
MISH_TABLE_1E4 = (
    -149,
    -224,
    -336,
    -497,
    -726,
    -1041,
    -1456,
    -1968,
    -2525,
    -2981,
    -3034,
    -2207,
    0,
    3752,
    8651,
    14034,
    19440,
    24714,
    29865,
    34940,
    39974,
)


@dataclass(frozen=True)
class Conv:
    """A bias-free convolution (cross-correlation) followed by batch norm and the activation."""

    weight: np.ndarray  # float32 (out, in, k, k)
    gamma: np.ndarray  # float32 (out,)
    beta: np.ndarray  # float32 (out,)
    stride: int
    pad: int


@dataclass(frozen=True)
class Dense:
    """A bias-free dense layer y = x @ W (W as (in, out)) followed by batch norm and the activation."""

    weight: np.ndarray  # float32 (in, out)
    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Pool:
    size: int
    stride: int


@dataclass(frozen=True)
class Flatten:
    """(C, H, W) row-major into one vector."""


@dataclass(frozen=True)
class Pyramid:
    levels: tuple[int, ...]


Layer = Conv | Dense | Pool | Flatten | Pyramid


@dataclass(frozen=True)
class Statistics:
    """Per-channel mean and (biased) variance of a batch norm's input, float64 (correctly rounded)."""

    mean: np.ndarray
    var: np.ndarray


def drawn_strokes(
    seed: int, count: int, sizes: Sequence[tuple[int, int]], extent: tuple[float, float]
) -> list[np.ndarray]:
    """`count` signature-like images per size, as the networks see them: ink bright, paper 0.

    Each image holds 2-4 zig-zag strokes of a 1-pixel pen (2 on large images) inside a box of
    about `extent` (fraction of height, fraction of width) around the centre, as normalised
    signatures sit on their canvas. Integer drawing only (seeded PCG64 integers, OpenCV's
    integer line rasteriser without anti-aliasing), so the pixels are the same on every machine.
    Returns uint8 arrays (H, W).
    """
    rng = draws.generator(seed)
    images = []
    for height, width in sizes:
        box_h, box_w = max(8, int(height * extent[0])), max(8, int(width * extent[1]))
        pen = 1 + min(height, width) // 300
        for _ in range(count):
            canvas = np.zeros((height, width), dtype=np.uint8)
            top = (height - box_h) // 2 + int(rng.integers(-box_h // 4, box_h // 4 + 1))
            left = (width - box_w) // 2 + int(rng.integers(-box_w // 4, box_w // 4 + 1))
            for _stroke in range(int(rng.integers(2, 5))):
                points = int(rng.integers(12, 40))
                xs = left + np.sort(rng.integers(0, box_w, size=points))
                ys = top + rng.integers(0, box_h, size=points)
                ink = int(rng.integers(180, 256))
                for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
                    cv2.line(canvas, (int(x0), int(y0)), (int(x1), int(y1)), ink, pen, cv2.LINE_8)
            images.append(canvas)
    return images


# Where the ink sits (fraction of height, of width): a normalised signature is small and centred
# on its canvas; strokes over the whole field make every spatial position of every feature map
# see ink on some input (a corner that only ever sees paper is constant, hence dead or never
# varied, and the dense weights reading it would go unexercised).
STROKE_EXTENTS = ((0.25, 0.4), (1.0, 1.0))


def signature_field_images(seed: int, count: int, sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """`count` images spread over `sizes` and STROKE_EXTENTS (uint8 (H, W), ink bright, paper 0)."""
    if count <= 0:
        return []
    per_group = max(1, count // (len(sizes) * len(STROKE_EXTENTS)))
    images = []
    for offset, extent in enumerate(STROKE_EXTENTS):
        images.extend(drawn_strokes(seed + offset, per_group, sizes, extent))
    return images


def _quantized_weight(weight: np.ndarray) -> tuple[np.ndarray, int]:
    """(W_q integer-valued float64, s) with W ~ W_q * 2^-s and |W_q| < 2^WEIGHT_BITS."""
    largest = float(np.max(np.abs(weight)))
    if largest == 0.0:
        return np.zeros(weight.shape), 0
    shift = WEIGHT_BITS - math.frexp(largest)[1]
    return np.rint(weight.astype(np.float64) * 2.0**shift), shift


def _check_exact(x: np.ndarray, weight: np.ndarray, terms: int, where: str) -> None:
    bound = float(np.max(np.abs(x), initial=0.0)) * float(np.max(np.abs(weight), initial=0.0)) * terms
    if bound >= EXACT_LIMIT:
        raise PipelineError(f"calibration: {where} could exceed 2^53 ({bound:.3g}); its sums would round")


def _statistics(
    accumulators: list[np.ndarray], fraction_bits: int
) -> tuple[list[Fraction], list[Fraction], Statistics]:
    """Exact per-channel mean (in accumulator units) and the statistics in real units.

    accumulators: int64 arrays (C, ...) per image; a real value is acc * 2^-fraction_bits.
    """
    flat = np.concatenate([a.reshape(a.shape[0], -1) for a in accumulators], axis=1)  # (C, count)
    count = flat.shape[1]
    largest = int(np.max(np.abs(flat), initial=0))
    shift = max(0, largest.bit_length() - VARIANCE_BITS)
    reduced = flat >> shift  # floor: exact integers below 2^15
    sums = [int(s) for s in flat.sum(axis=1)]
    reduced_sums = [int(s) for s in reduced.sum(axis=1)]
    squares = [int(s) for s in (reduced * reduced).sum(axis=1)]
    unit = Fraction(1, 2**fraction_bits)
    mean_acc = [Fraction(s, count) for s in sums]
    var_real = [
        Fraction(count * q - s * s, count * count) * (2**shift * unit) ** 2 for q, s in zip(squares, reduced_sums)
    ]
    stats = Statistics(
        mean=np.array([float(m * unit) for m in mean_acc]),
        var=np.array([float(v) for v in var_real]),
    )
    return mean_acc, var_real, stats


def _mish_fixed(y: np.ndarray) -> np.ndarray:
    """Mish on int64 values on the 2^-ACTIVATION_BITS grid, by the fixed table (exact integer math)."""
    one = 2**ACTIVATION_BITS
    step = int(MISH_KNOT_STEP * one)
    start = int(MISH_KNOTS_FROM * one)
    table = np.array(MISH_TABLE_1E4, dtype=np.int64)
    last = len(table) - 1
    index = np.clip((y - start) // step, 0, last - 1)
    within = np.clip(y - start - index * step, 0, step)
    low, high = table[index], table[index + 1]
    interpolated = (low * step + (high - low) * within) * one // (10_000 * step)
    return np.where(y >= start + last * step, y, np.where(y < start, 0, interpolated))


def _normalise(
    acc: np.ndarray,
    mean_acc: list[Fraction],
    var: list[Fraction],
    layer: Conv | Dense,
    fraction_bits: int,
    eps: float,
    activation: str,
) -> np.ndarray:
    """acc (int64, (C, ...)) -> activation(gamma * (x - mean) / sqrt(var + eps) + beta) on the 2^-8 grid."""
    shape = (-1,) + (1,) * (acc.ndim - 1)
    multiplier = np.array(
        [round(float(g) / math.sqrt(float(v) + eps) * 2**MULTIPLIER_BITS) for g, v in zip(layer.gamma, var)],
        dtype=np.int64,
    ).reshape(shape)
    centre = np.array([round(m) for m in mean_acc], dtype=np.int64).reshape(shape)
    out_shift = fraction_bits + MULTIPLIER_BITS - ACTIVATION_BITS
    if out_shift < 0:
        raise PipelineError("calibration: accumulator grid coarser than the activation grid")
    offset = np.array(
        [math.floor(float(b) * 2.0 ** (fraction_bits + MULTIPLIER_BITS)) for b in layer.beta], dtype=np.int64
    ).reshape(shape)
    if (
        int(np.max(np.abs(acc - centre), initial=0)) * int(np.max(np.abs(multiplier), initial=0))
        + int(np.max(np.abs(offset), initial=0))
        >= INT64_LIMIT
    ):
        raise PipelineError("calibration: a batch-norm product would overflow int64")
    y = ((acc - centre) * multiplier + offset) >> out_shift
    return np.maximum(y, 0) if activation == "relu" else _mish_fixed(y)


def calibrate(
    layers: Sequence[Layer], images: Sequence[np.ndarray], input_fraction_bits: int, eps: float, activation: str
) -> list[Statistics]:
    """Batch-norm input statistics of every Conv/Dense layer, in order, over `images`.

    images: integer arrays (H, W), the network input times 2^input_fraction_bits (e.g. uint8
    pixels with 0 for networks fed 0..255). Returns one Statistics per weighted layer.
    """
    if activation not in ("relu", "mish"):
        raise PipelineError(f"calibration: unknown activation {activation!r}")
    xs = [np.asarray(image, dtype=np.float64)[None] for image in images]  # (1, H, W) each
    fraction_bits = input_fraction_bits
    results = []
    for position, layer in enumerate(layers):
        if isinstance(layer, (Conv, Dense)):
            weight, shift = _quantized_weight(layer.weight)
            terms = int(np.prod(weight.shape[1:])) if isinstance(layer, Conv) else weight.shape[0]
            for x in xs:
                _check_exact(x, weight, terms, f"layer {position}")
            if isinstance(layer, Conv):
                accs = [conv2d(x, weight, layer.stride, layer.pad, "calibration") for x in xs]
            else:
                accs = [(x @ weight)[:, None] for x in xs]  # (out, 1) per image
            accs = [a.astype(np.int64) for a in accs]  # exact: integer-valued and below 2^53
            mean_acc, var, stats = _statistics(accs, fraction_bits + shift)
            results.append(stats)
            ys = [_normalise(a, mean_acc, var, layer, fraction_bits + shift, eps, activation) for a in accs]
            xs = [y.astype(np.float64) if isinstance(layer, Conv) else y[:, 0].astype(np.float64) for y in ys]
            fraction_bits = ACTIVATION_BITS
        elif isinstance(layer, Pool):
            xs = [max_pool(x, layer.size, layer.stride, "calibration") for x in xs]
        elif isinstance(layer, Pyramid):
            xs = [pyramid_pool(x, layer.levels).reshape(-1) for x in xs]
        else:
            xs = [x.reshape(-1) for x in xs]
    return results
