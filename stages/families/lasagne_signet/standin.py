"""The built-in stand-in of a Lasagne SigNet pickle: deterministic weights, exactly calibrated batch norms.

Weights are drawn from a PCG64 stream with realistic scales; every batch norm's mean and inv_std
is then set from drawn signatures by `stages.core.calibration` in exact arithmetic, so the
written pickle (`pickle_writer`, the upstream Python 2 format) is the same bytes on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from stages.core import random_draws as draws
from stages.families.lasagne_signet.layout import Conv, Pool, SpatialPyramid, architecture, param_layout

# Scale of the synthetic conv1 weights: He-normal for inputs in 0..1, divided by 255 because
# these networks take 0..255 (a trained SigNet's first layer has learned the same scale), so
# every later layer sees O(1) activations and fc1/fc2 come out O(0.1..10), like real features.
FIRST_LAYER_INPUT_SCALE = 255.0
# Lasagne's batch_norm default epsilon: inv_std = 1 / sqrt(var + 1e-4).
LASAGNE_BN_EPSILON = 1e-4
# Drawn signatures the stand-ins' batch-norm statistics are calibrated on (split over the sizes).
CALIBRATION_IMAGES = 16
SPP_CALIBRATION_SIZES = ((150, 220), (100, 160), (260, 400), (400, 600))


def synthetic_params(architecture_name: str, seed: int) -> list[np.ndarray]:
    """Lasagne-ordered float32 arrays with realistic scales, the same bytes on every machine.

    Sampled from a PCG64 stream (numpy only, no network run): W He-normal (conv1 divided by
    FIRST_LAYER_INPUT_SCALE), beta |N(0, 0.1)|, gamma U(0.7, 1.3), mean N(0, 0.2),
    inv_std = 1/sqrt(U(0.4, 1.6)) (a batch variance of 0.4..1.6).
    """
    rng = draws.generator(seed)
    params = []
    for slot in param_layout(architecture_name):
        if slot.role == "W":
            # conv W (out, in, kh, kw): fan-in in*kh*kw; dense W (in, out): fan-in in.
            fan_in = int(np.prod(slot.shape[1:])) if len(slot.shape) == 4 else slot.shape[0]
            value = draws.he_normal(rng, slot.shape, fan_in)
            if slot.index == 0:
                value = value / FIRST_LAYER_INPUT_SCALE
        elif slot.role == "beta":
            value = draws.batch_norm_beta(rng, slot.shape)
        elif slot.role == "gamma":
            value = draws.batch_norm_gamma(rng, slot.shape)
        elif slot.role == "mean":
            value = draws.batch_norm_mean(rng, slot.shape)
        else:  # inv_std
            value = 1.0 / np.sqrt(draws.batch_norm_variance(rng, slot.shape))
        params.append(np.ascontiguousarray(value, dtype=np.float32))
    return params


def calibration_layers(architecture_name: str, params: Sequence[np.ndarray]) -> list:
    """The network as `stages.core.calibration` layers, with the weights, gammas and betas of `params`."""
    from stages.core import calibration

    arch = architecture(architecture_name)
    by_layer = iter(range(0, len(params), 5))
    layers: list = []
    for layer in arch.layers:
        if isinstance(layer, Conv):
            i = next(by_layer)
            layers.append(calibration.Conv(params[i], params[i + 2], params[i + 1], layer.stride, layer.pad))
        elif isinstance(layer, Pool):
            layers.append(calibration.Pool(layer.size, layer.stride))
        elif isinstance(layer, SpatialPyramid):
            layers.append(calibration.Pyramid(layer.levels))
        else:
            if arch.fixed_input is not None and not any(isinstance(x, calibration.Flatten) for x in layers):
                layers.append(calibration.Flatten())
            i = next(by_layer)
            layers.append(calibration.Dense(params[i], params[i + 2], params[i + 1]))
    return layers


def calibration_sizes(architecture_name: str) -> list[tuple[int, int]]:
    """Input sizes of the calibration images: SigNet's fixed one, or a spread for SPP."""
    fixed = architecture(architecture_name).fixed_input
    return [fixed] if fixed else list(SPP_CALIBRATION_SIZES)


def calibrated_params(architecture_name: str, seed: int) -> list[np.ndarray]:
    """`synthetic_params` with every batch norm's mean and inv_std set from drawn signatures.

    As training leaves them: mean = the layer's mean input, inv_std = 1 / sqrt(var + epsilon),
    computed by `stages.core.calibration` in exact arithmetic (the same bits on every machine).
    """
    from stages.core import calibration

    params = synthetic_params(architecture_name, seed)
    sizes = calibration_sizes(architecture_name)
    images = calibration.signature_field_images(seed, CALIBRATION_IMAGES, sizes)
    statistics = calibration.calibrate(
        calibration_layers(architecture_name, params), images, 0, LASAGNE_BN_EPSILON, "relu"
    )
    for layer, stats in enumerate(statistics):
        base = 5 * layer
        params[base + 3] = stats.mean.astype(np.float32)
        # Python floats: one correctly rounded sqrt and division per channel, identical everywhere.
        params[base + 4] = np.array([1.0 / math.sqrt(v + LASAGNE_BN_EPSILON) for v in stats.var], dtype=np.float32)
    return params
