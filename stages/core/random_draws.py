"""Seeded random draws: the one random stream of the pipeline, and the stand-ins' weight scales.

`generator(seed)` is used for every stand-in weight and every drawn signature. Each draw is numpy
sampling from it (then a float32 cast, or integer drawing): the same bytes on every machine. The scales are those of a trained network, so activations stay O(1) layer after
layer: He-normal weights, batch-norm gamma U(0.7, 1.3), running variance U(0.4, 1.6), running
mean N(0, 0.2), beta |N(0, 0.1)| (non-negative: a calibrated unit then stays active on about
half of the inputs at least; a negative shift can silence it).
"""

from __future__ import annotations

import numpy as np

Shape = tuple[int, ...]


def generator(seed: int) -> np.random.Generator:
    """The stand-ins' random stream: PCG64 (numpy's stable bit generator) seeded from params."""
    return np.random.Generator(np.random.PCG64(seed))


def he_normal(rng: np.random.Generator, shape: Shape, fan_in: int) -> np.ndarray:
    """Weights N(0, 2 / fan_in), float64 (the caller casts)."""
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def batch_norm_gamma(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.uniform(0.7, 1.3, size=shape)


def batch_norm_variance(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.uniform(0.4, 1.6, size=shape)


def batch_norm_mean(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return rng.normal(0.0, 0.2, size=shape)


def batch_norm_beta(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    return np.abs(rng.normal(0.0, 0.1, size=shape))
