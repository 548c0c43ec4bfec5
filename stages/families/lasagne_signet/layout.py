"""The sigver_wiwd Lasagne networks' layer layout, and the checks of a pickle's `params` against it.

Upstream (docs/MODEL_FACTS.md, "Lasagne SigNet pickles"): `signet.pkl`, `signetf_lambda0.95.pkl`,
`signetf_lambda0.999.pkl` (architecture `signet`, fixed 150x220 input) and
`signet_spp_300dpi.pkl`, `signet_spp_600dpi.pkl` (architectures `signet_spp_300dpi`,
`signet_spp_600dpi`, any input size); params.yaml names each model's architecture.

`params` is `lasagne.layers.get_all_param_values(net['fc2'])`: layer after layer, a conv gives
W (out, in, kh, kw) and a dense layer W (in, out), each followed by its batch norm's beta, gamma,
mean and inv_std (four vectors). No layer has a bias (Lasagne's `batch_norm` removes it).

This module holds no converter or oracle code: `onnx_builder` builds the ONNX graph from
`ARCHITECTURES`, while `oracle` keeps its own, independent copy of the layer facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.core.errors import PipelineError

# --------------------------------------------------------------------------------------------
# Layer layout (sigver_wiwd signet.py, signet_spp_300dpi.py, signet_spp_600dpi.py)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conv:
    """Lasagne Conv2DLayer(flip_filters=False) + batch_norm + ReLU: cross-correlation, no bias."""

    name: str
    filters: int
    size: int
    stride: int = 1
    pad: int = 0


@dataclass(frozen=True)
class Pool:
    """Lasagne MaxPool2DLayer: ignore_border=True (incomplete windows dropped), no padding."""

    name: str
    size: int
    stride: int


@dataclass(frozen=True)
class SpatialPyramid:
    """Lasagne SpatialPyramidPoolingLayer(implementation='kaiming', mode='max')."""

    name: str
    levels: tuple[int, ...] = (4, 2, 1)

    @property
    def bins(self) -> int:
        return sum(n * n for n in self.levels)


@dataclass(frozen=True)
class Dense:
    """Lasagne DenseLayer + batch_norm + ReLU: y = x @ W with W (in, out), no bias."""

    name: str
    units: int


Layer = Conv | Pool | SpatialPyramid | Dense
PARAM_ROLES = ("W", "beta", "gamma", "mean", "inv_std")  # Lasagne order within one layer


@dataclass(frozen=True)
class Architecture:
    """One upstream network. `fixed_input` is (rows, cols) for SigNet, None for the SPP models."""

    name: str
    layers: tuple[Layer, ...]
    fixed_input: tuple[int, int] | None

    @property
    def weighted(self) -> tuple[Conv | Dense, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, (Conv, Dense)))


def _spp(dpi300: bool) -> tuple[Layer, ...]:
    """SigNet-SPP: the 600 dpi model differs in conv1 stride and the first two pools only."""
    return (
        Conv("large_conv1", 32, 11, stride=3 if dpi300 else 4, pad=5),
        Pool("large_pool1", 3, 2) if dpi300 else Pool("large_pool1", 3, 3),
        Conv("large_conv2", 64, 5, pad=2),
        Pool("large_pool2", 3, 3) if dpi300 else Pool("large_pool2", 3, 2),
        Conv("large_conv3", 128, 3, pad=1),
        Conv("large_conv4", 128, 3, pad=1),
        Pool("large_pool4", 2, 2),
        Conv("large_conv5", 128, 3, pad=1),
        SpatialPyramid("large_pool5"),
        Dense("fc1", 2048),
        Dense("fc2", 2048),
    )


ARCHITECTURES: dict[str, Architecture] = {
    "signet": Architecture(
        "signet",
        (
            Conv("conv1", 96, 11, stride=4),
            Pool("pool1", 3, 2),
            Conv("conv2", 256, 5, pad=2),
            Pool("pool2", 3, 2),
            Conv("conv3", 384, 3, pad=1),
            Conv("conv4", 384, 3, pad=1),
            Conv("conv5", 256, 3, pad=1),
            Pool("pool5", 3, 2),
            Dense("fc1", 2048),
            Dense("fc2", 2048),
        ),
        fixed_input=(150, 220),
    ),
    "signet_spp_300dpi": Architecture("signet_spp_300dpi", _spp(dpi300=True), fixed_input=None),
    "signet_spp_600dpi": Architecture("signet_spp_600dpi", _spp(dpi300=False), fixed_input=None),
}

INPUT_SIZE = (150, 220)
IMG_SIZE = (170, 242)


def architecture(architecture_name: str) -> Architecture:
    try:
        return ARCHITECTURES[architecture_name]
    except KeyError:
        raise PipelineError(
            f"unknown SigNet architecture {architecture_name!r}; known: {sorted(ARCHITECTURES)}"
        ) from None


def _conv_out(size: int, layer: Conv) -> int:
    return (size + 2 * layer.pad - layer.size) // layer.stride + 1


def _pool_out(size: int, layer: Pool) -> int:
    # ignore_border=True: a window must fit entirely, so an input shorter than the window gives < 1.
    return (size - layer.size) // layer.stride + 1


def spatial_sizes(architecture_name: str, height: int, width: int) -> list[tuple[str, int, int]]:
    """(layer, rows, cols) after every conv and pool layer, up to the last feature map.

    Sizes can come out < 1 for a too-small input; `check_input_size` turns that into an error.
    """
    sizes = []
    for layer in architecture(architecture_name).layers:
        if isinstance(layer, Conv):
            height, width = _conv_out(height, layer), _conv_out(width, layer)
        elif isinstance(layer, Pool):
            height, width = _pool_out(height, layer), _pool_out(width, layer)
        else:
            break
        sizes.append((layer.name, height, width))
        if height < 1 or width < 1:
            break
    return sizes


def _axis_minimum(architecture_name: str) -> int:
    """Smallest side length for which every conv/pool output keeps >= 1 row.

    Every output size is non-decreasing in the input size, so the first length that works is
    the minimum and every longer one works too. The two axes share the arithmetic.
    """
    for side in range(1, 100_000):
        if all(h >= 1 for _name, h, _w in spatial_sizes(architecture_name, side, side)):
            return side
    raise AssertionError("unreachable: the layer arithmetic always admits large inputs")


def spp_min_input_size(architecture_name: str) -> tuple[int, int]:
    """Smallest (rows, cols) an SPP model accepts: 37x37 at 300 dpi, 57x57 at 600 dpi.

    Derived from the layer arithmetic: conv output floor((n + 2 pad - k) / stride) + 1, pool
    output floor((n - size) / stride) + 1, each must stay >= 1. At conv5 the map is then at
    least 1x1, and the "kaiming" pyramid never has an empty bin for a map of h >= 1 rows:
    bin r of level n spans floor(r h / n) .. ceil((r + 1) h / n), and
    ceil((r + 1) h / n) >= (r + 1) h / n > r h / n >= floor(r h / n), so it holds >= 1 row
    (and ends at most at h). So no larger minimum is needed for the pyramid.
    """
    if architecture(architecture_name).fixed_input is not None:
        raise PipelineError(
            f"{architecture_name} takes a fixed {INPUT_SIZE[0]}x{INPUT_SIZE[1]} input, it has no minimum size"
        )
    side = _axis_minimum(architecture_name)
    return side, side


def check_input_size(architecture_name: str, height: int, width: int, source: str) -> None:
    """Refuse, with a clear message, an image an SPP model cannot take.

    Called before any runtime sees the image: ONNX Runtime's MaxPool alone would not fail on a
    too-short input but compute meaningless features (the converted graph's guard stops it
    with a terse Reshape error; this message says what to do).
    """
    min_h, min_w = spp_min_input_size(architecture_name)
    if height < min_h or width < min_w:
        raise PipelineError(
            f"{source}: the image is {height}x{width} (rows x cols), smaller than the smallest input "
            f"{architecture_name} accepts, {min_h}x{min_w}; pad it to at least that size"
        )


# --------------------------------------------------------------------------------------------
# Parameter layout checks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerWeights:
    """The five arrays of one conv or dense layer, as stored (float32)."""

    name: str
    W: np.ndarray
    beta: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray


@dataclass(frozen=True)
class ParamSlot:
    index: int
    layer: str
    role: str
    shape: tuple[int, ...]


def dense_inputs(arch: Architecture) -> int:
    """Width of the vector entering the first dense layer: C*H*W (SigNet) or C*bins (SPP)."""
    channels = 1
    for layer in arch.layers:
        if isinstance(layer, Conv):
            channels = layer.filters
        elif isinstance(layer, SpatialPyramid):
            return channels * layer.bins
        elif isinstance(layer, Dense):
            break
    assert arch.fixed_input is not None, "an SPP architecture always has a pyramid before its dense layers"
    _name, rows, cols = spatial_sizes(arch.name, *arch.fixed_input)[-1]
    return channels * rows * cols


def param_layout(architecture_name: str) -> list[ParamSlot]:
    """Every array of `params`, in Lasagne order, with its layer, role and expected shape."""
    arch = architecture(architecture_name)
    slots: list[ParamSlot] = []
    channels, features = 1, dense_inputs(arch)
    for layer in arch.weighted:
        if isinstance(layer, Conv):
            w_shape: tuple[int, ...] = (layer.filters, channels, layer.size, layer.size)
            channels = width = layer.filters
        else:
            w_shape = (features, layer.units)
            features = width = layer.units
        for role in PARAM_ROLES:
            slots.append(ParamSlot(len(slots), layer.name, role, w_shape if role == "W" else (width,)))
    return slots


def check_params(architecture_name: str, params: Any, source: str) -> list[LayerWeights]:
    """Check count, shapes, dtypes and values of `params` and group them by layer.

    Raises PipelineError naming the array (index, layer, role), the expected and the actual.
    """
    layout = param_layout(architecture_name)
    if not isinstance(params, (list, tuple)):
        raise PipelineError(f"{source}: 'params' is a {type(params).__name__}, expected a list of numpy arrays")
    if len(params) != len(layout):
        layers = len(layout) // len(PARAM_ROLES)
        raise PipelineError(
            f"{source}: 'params' holds {len(params)} arrays, expected {len(layout)} for {architecture_name} "
            f"({layers} layers x {len(PARAM_ROLES)}: {', '.join(PARAM_ROLES)}, in Lasagne order)"
        )
    for slot, array in zip(layout, params):
        _check_array(slot, array, source)
    grouped = [layout[i : i + len(PARAM_ROLES)] for i in range(0, len(layout), len(PARAM_ROLES))]
    return [
        LayerWeights(slots[0].layer, *(params[slot.index] for slot in slots))  # type: ignore[arg-type]
        for slots in grouped
    ]


def _check_array(slot: ParamSlot, array: Any, source: str) -> None:
    where = f"{source}: params[{slot.index}] ({slot.layer} {slot.role})"
    if not isinstance(array, np.ndarray):
        raise PipelineError(f"{where} is a {type(array).__name__}, expected a numpy array")
    if array.shape != slot.shape:
        raise PipelineError(f"{where} has shape {array.shape}, expected {slot.shape}")
    if array.dtype != np.float32:
        raise PipelineError(f"{where} has dtype {array.dtype}, expected float32 (Theano floatX)")
    if not np.all(np.isfinite(array)):
        raise PipelineError(f"{where} contains NaN or infinite values")
    if slot.role == "inv_std" and np.any(array <= 0):
        raise PipelineError(
            f"{where} has {int(np.sum(array <= 0))} values <= 0; inv_std = 1/sqrt(var + eps) is positive "
            "(are the arrays in the order beta, gamma, mean, inv_std?)"
        )
