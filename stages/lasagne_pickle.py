"""The sigver_wiwd Lasagne pickles: their layer layout, safe loading, and a writer of the format.

Upstream (MODELS.md section 3): `signet.pkl`, `signetf_lambda0.95.pkl`, `signetf_lambda0.999.pkl`
(SigNet, fixed 150x220 input) and `signet_spp_300dpi.pkl`, `signet_spp_600dpi.pkl` (SigNet-SPP,
any input size), each a Python 2 protocol-2 pickle of a dict::

    {'input_size': (150, 220), 'img_size': (170, 242), 'params': [35 numpy float32 arrays]}

`params` is `lasagne.layers.get_all_param_values(net['fc2'])`: layer after layer, a conv gives
W (out, in, kh, kw) and a dense layer W (in, out), each followed by its batch norm's beta, gamma,
mean and inv_std (four vectors). No layer has a bias (Lasagne's `batch_norm` removes it).

Loading: a pickle can call any importable function while it loads, so `load_lasagne_pickle`
never uses Python's unpickler: `stages.safe_pickle` interprets the opcodes itself, builds plain
containers and numpy arrays (from a checked dtype code, byte order, shape and raw bytes) and
refuses any other global (os.system, builtins.open, ...), bounded in memory, depth and size.

This module holds no converter or oracle code: `stages.signet_onnx` builds the ONNX graph from
`ARCHITECTURES`, while `stages.oracle` keeps its own, independent copy of the layer facts.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages import safe_pickle
from stages.errors import PipelineError
from stages.untrusted import shown, shown_names, shown_repr

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

    variant: str
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

# Upstream file name -> the sigver_wiwd module (architecture) it is loaded with.
UPSTREAM_FILES = {
    "signet.pkl": "signet",
    "signetf_lambda0.95.pkl": "signet",
    "signetf_lambda0.999.pkl": "signet",
    "signet_spp_300dpi.pkl": "signet_spp_300dpi",
    "signet_spp_600dpi.pkl": "signet_spp_600dpi",
}
INPUT_SIZE = (150, 220)
IMG_SIZE = (170, 242)
# The largest upstream pickle (SigNet) holds 15.8 M float32 weights, 63 MB.
MAX_PICKLE_BYTES = 256 * 1024 * 1024


def architecture(variant: str) -> Architecture:
    try:
        return ARCHITECTURES[variant]
    except KeyError:
        raise PipelineError(f"unknown SigNet variant {variant!r}; known: {sorted(ARCHITECTURES)}") from None


def variant_of_file(filename: str) -> str:
    """The architecture an upstream pickle is loaded with, from its upstream file name."""
    try:
        return UPSTREAM_FILES[Path(filename).name]
    except KeyError:
        raise PipelineError(
            f"{filename}: not a known SigNet pickle name; expected one of {sorted(UPSTREAM_FILES)} "
            "(the name selects the architecture, as sigver_wiwd pairs each file with its module)"
        ) from None


def _conv_out(size: int, layer: Conv) -> int:
    return (size + 2 * layer.pad - layer.size) // layer.stride + 1


def _pool_out(size: int, layer: Pool) -> int:
    # ignore_border=True: a window must fit entirely, so an input shorter than the window gives < 1.
    return (size - layer.size) // layer.stride + 1


def spatial_sizes(variant: str, height: int, width: int) -> list[tuple[str, int, int]]:
    """(layer, rows, cols) after every conv and pool layer, up to the last feature map.

    Sizes can come out < 1 for a too-small input; `check_input_size` turns that into an error.
    """
    sizes = []
    for layer in architecture(variant).layers:
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


def _axis_minimum(variant: str) -> int:
    """Smallest side length for which every conv/pool output keeps >= 1 row.

    Every output size is non-decreasing in the input size, so the first length that works is
    the minimum and every longer one works too. The two axes share the arithmetic.
    """
    for side in range(1, 100_000):
        if all(h >= 1 for _name, h, _w in spatial_sizes(variant, side, side)):
            return side
    raise AssertionError("unreachable: the layer arithmetic always admits large inputs")


def spp_min_input_size(variant: str) -> tuple[int, int]:
    """Smallest (rows, cols) an SPP model accepts: 37x37 at 300 dpi, 57x57 at 600 dpi.

    Derived from the layer arithmetic: conv output floor((n + 2 pad - k) / stride) + 1, pool
    output floor((n - size) / stride) + 1, each must stay >= 1. At conv5 the map is then at
    least 1x1, and the "kaiming" pyramid never has an empty bin for a map of h >= 1 rows:
    bin r of level n spans floor(r h / n) .. ceil((r + 1) h / n), and
    ceil((r + 1) h / n) >= (r + 1) h / n > r h / n >= floor(r h / n), so it holds >= 1 row
    (and ends at most at h). So no larger minimum is needed for the pyramid.
    """
    if architecture(variant).fixed_input is not None:
        raise PipelineError(f"{variant} takes a fixed {INPUT_SIZE[0]}x{INPUT_SIZE[1]} input, it has no minimum size")
    side = _axis_minimum(variant)
    return side, side


def check_input_size(variant: str, height: int, width: int, source: str) -> None:
    """Refuse, with a clear message, an image an SPP model cannot take.

    Called before any runtime sees the image: ONNX Runtime's MaxPool alone would not fail on a
    too-short input but compute meaningless features (the converted graph's guard stops it
    with a terse Reshape error; this message says what to do).
    """
    min_h, min_w = spp_min_input_size(variant)
    if height < min_h or width < min_w:
        raise PipelineError(
            f"{source}: the image is {height}x{width} (rows x cols), smaller than the smallest input "
            f"{variant} accepts, {min_h}x{min_w}; pad it to at least that size"
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
    _name, rows, cols = spatial_sizes(arch.variant, *arch.fixed_input)[-1]
    return channels * rows * cols


def param_layout(variant: str) -> list[ParamSlot]:
    """Every array of `params`, in Lasagne order, with its layer, role and expected shape."""
    arch = architecture(variant)
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


def check_params(variant: str, params: Any, source: str) -> list[LayerWeights]:
    """Check count, shapes, dtypes and values of `params` and group them by layer.

    Raises PipelineError naming the array (index, layer, role), the expected and the actual.
    """
    layout = param_layout(variant)
    if not isinstance(params, (list, tuple)):
        raise PipelineError(f"{source}: 'params' is a {type(params).__name__}, expected a list of numpy arrays")
    if len(params) != len(layout):
        layers = len(layout) // len(PARAM_ROLES)
        raise PipelineError(
            f"{source}: 'params' holds {len(params)} arrays, expected {len(layout)} for {variant} "
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


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LasagnePickle:
    """The loaded, not yet layout-checked content of an upstream pickle."""

    input_size: tuple[int, int]
    img_size: tuple[int, int]
    params: list[Any]


def safe_unpickle(data: bytes, source: str) -> Any:
    """Read a pickle with `stages.safe_pickle` (plain data and checked numpy arrays only; Python 2
    strings decoded as latin1, as upstream needs); nothing the file names is ever called."""
    try:
        return safe_pickle.load(data)
    except safe_pickle.RefusedGlobal as exc:
        raise PipelineError(
            f"{source}: refused to load: the pickle asks for the global '{shown(exc.module, 80)}.{shown(exc.name, 80)}'. "
            "Only numpy arrays, dtypes and plain containers are admitted, because any other global can "
            "run code while unpickling; nothing was executed. Is this really an upstream SigNet pickle?"
        ) from None
    except safe_pickle.Refused as exc:
        raise PipelineError(f"{source}: refused to load: {exc}; nothing was executed") from None
    except safe_pickle.Malformed as exc:
        raise PipelineError(f"{source}: not a readable pickle ({exc})") from None
    except MemoryError:
        raise PipelineError(f"{source}: not a readable pickle (it needs more memory than this machine has)") from None


def _pair(value: Any, key: str, source: str) -> tuple[int, int]:
    if (
        not isinstance(value, (tuple, list)) or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise PipelineError(f"{source}: '{key}' is {shown_repr(value)}, expected a pair of positive ints (rows, cols)")
    return int(value[0]), int(value[1])


def load_lasagne_pickle(path: Path) -> LasagnePickle:
    """Read an upstream pickle safely and check its top-level structure (not the layer shapes)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise PipelineError(f"{path}: {size} bytes, more than any SigNet pickle ({MAX_PICKLE_BYTES} at most); refused")
        data = path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found") from None
    if data.startswith(b"PK\x03\x04"):  # sigver_wiwd distributes the pickles inside zip archives
        raise PipelineError(
            f"{path}: is a zip archive, not a pickle; sigver_wiwd ships the models as "
            f"signet_models.zip / signet_spp_models.zip: name the member in the address (...zip#{path.name}) "
            "or take the file out of the archive"
        )
    content = safe_unpickle(data, str(path))
    if not isinstance(content, dict):
        raise PipelineError(f"{path}: holds a {type(content).__name__}, expected a dict with input_size, img_size, params")
    missing = [key for key in ("input_size", "img_size", "params") if key not in content]
    if missing:
        raise PipelineError(f"{path}: the dict lacks {missing}; it has {shown_names(content)}")
    params = content["params"]
    if not isinstance(params, (list, tuple)):
        raise PipelineError(f"{path}: 'params' is a {type(params).__name__}, expected a list of numpy arrays")
    return LasagnePickle(
        _pair(content["input_size"], "input_size", str(path)),
        _pair(content["img_size"], "img_size", str(path)),
        list(params),
    )


def load_checked(path: Path, variant: str) -> tuple[LasagnePickle, list[LayerWeights]]:
    """Load safely and check the layer layout of `variant`; SigNet must also say input_size 150x220."""
    content = load_lasagne_pickle(path)
    arch = architecture(variant)
    if arch.fixed_input is not None and content.input_size != arch.fixed_input:
        raise PipelineError(
            f"{path}: input_size is {content.input_size}, expected {arch.fixed_input} "
            f"(the {variant} dense layer is sized for it)"
        )
    return content, check_params(variant, content.params, str(path))


# --------------------------------------------------------------------------------------------
# Writing the upstream format (for the built-in stand-ins)
# --------------------------------------------------------------------------------------------


_PLAIN_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: no objects, no records


class Py2PickleWriter:
    """Writes what Python 2's cPickle (protocol 2) wrote for the upstream dict, byte for byte
    deterministic: str as BINSTRING (decoded as latin1 on load), numpy arrays through
    numpy.core.multiarray._reconstruct, dtypes through numpy.dtype, globals memoised.

    Supports exactly the types an upstream pickle holds: dict, list, tuple, int, str, bool,
    None, float32/float64/int arrays.
    """

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._memo: dict[tuple[str, str], int] = {}
        self._next = 0

    def dumps(self, obj: Any) -> bytes:
        self._out.write(b"\x80\x02")  # PROTO 2
        self._save(obj)
        self._out.write(b".")  # STOP
        return self._out.getvalue()

    def _put(self) -> None:
        index, self._next = self._next, self._next + 1
        self._out.write(b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index))

    def _global(self, module: str, name: str) -> None:
        key = (module, name)
        if key in self._memo:
            index = self._memo[key]
            self._out.write(b"h" + bytes([index]) if index < 256 else b"j" + struct.pack("<I", index))
            return
        self._out.write(b"c" + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")
        self._memo[key] = self._next
        self._put()

    def _string(self, data: bytes) -> None:
        """A Python 2 `str` (bytes); Python 3 reads it back as str through latin1."""
        if len(data) < 256:
            self._out.write(b"U" + bytes([len(data)]) + data)
        else:
            self._out.write(b"T" + struct.pack("<i", len(data)) + data)
        self._put()

    def _int(self, value: int) -> None:
        if 0 <= value < 256:
            self._out.write(b"K" + bytes([value]))
        elif 0 <= value < 65536:
            self._out.write(b"M" + struct.pack("<H", value))
        elif -(2**31) <= value < 2**31:
            self._out.write(b"J" + struct.pack("<i", value))
        else:
            raise ValueError(f"integer {value} does not fit the format")

    def _tuple(self, items: Sequence[Any]) -> None:
        if not items:
            self._out.write(b")")
            return
        if len(items) > 3:
            self._out.write(b"(")
        for item in items:
            self._save(item)
        self._out.write({1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t"))
        self._put()

    def _dtype(self, dtype: np.dtype) -> None:
        self._global("numpy", "dtype")
        self._tuple((dtype.str[1:].encode("ascii"), 0, 1))
        self._out.write(b"R")
        self._put()
        order = b"|" if dtype.itemsize == 1 else b"<"
        self._tuple((3, order, None, None, None, -1, -1, 0))
        self._out.write(b"b")  # BUILD: dtype.__setstate__

    def _array(self, array: np.ndarray) -> None:
        if array.dtype.kind not in _PLAIN_KINDS or array.dtype.byteorder == ">":
            raise ValueError(f"unsupported array dtype {array.dtype}")
        array = np.ascontiguousarray(array)
        self._global("numpy.core.multiarray", "_reconstruct")
        self._global("numpy", "ndarray")  # args: (numpy.ndarray, (0,), 'b')
        self._tuple((0,))
        self._string(b"b")
        self._out.write(b"\x87")  # TUPLE3
        self._put()
        self._out.write(b"R")
        self._put()
        self._out.write(b"(")  # state: (1, shape, dtype, is_fortran, data)
        self._int(1)
        self._tuple(tuple(int(n) for n in array.shape))
        self._dtype(array.dtype)
        self._out.write(b"\x89")  # NEWFALSE: C order
        self._string(array.tobytes())
        self._out.write(b"t")
        self._put()
        self._out.write(b"b")  # BUILD: ndarray.__setstate__

    def _save(self, obj: Any) -> None:
        if obj is None:
            self._out.write(b"N")
        elif isinstance(obj, bool):
            self._out.write(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            self._int(obj)
        elif isinstance(obj, bytes):
            self._string(obj)
        elif isinstance(obj, str):
            self._string(obj.encode("ascii"))
        elif isinstance(obj, tuple):
            self._tuple(obj)
        elif isinstance(obj, list):
            self._out.write(b"]")
            self._put()
            for start in range(0, len(obj), 1000):  # cPickle batches APPENDS by 1000
                self._out.write(b"(")
                for item in obj[start : start + 1000]:
                    self._save(item)
                self._out.write(b"e")
        elif isinstance(obj, dict):
            self._out.write(b"}")
            self._put()
            self._out.write(b"(")
            for key, value in obj.items():
                self._save(key)
                self._save(value)
            self._out.write(b"u")
        elif isinstance(obj, np.ndarray):
            self._array(obj)
        else:
            raise TypeError(f"type {type(obj).__name__} is not part of the upstream format")


def dump_py2_pickle(content: dict[str, Any]) -> bytes:
    """Serialise `content` in the upstream format (Python 2, protocol 2)."""
    return Py2PickleWriter().dumps(content)
