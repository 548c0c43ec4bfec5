"""Reading an upstream Lasagne pickle without running it: top-level structure, then layer layout.

A pickle can call any importable function while it loads, so nothing here uses Python's
unpickler: `unpickler` (this package) interprets the opcodes itself, builds plain containers and
numpy arrays (from a checked dtype code, byte order, shape and raw bytes) and refuses any other
global (os.system, builtins.open, ...), bounded in memory, depth and size. The upstream dict is
`{'input_size': (150, 220), 'img_size': (170, 242), 'params': [numpy float32 arrays]}`
(docs/MODEL_FACTS.md, "Lasagne SigNet pickles"); `layout` checks the arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stages.core.errors import PipelineError
from stages.core.untrusted import read_bounded, shown, shown_names, shown_repr
from stages.families.lasagne_signet import unpickler
from stages.families.lasagne_signet.layout import LayerWeights, architecture, check_params

# The largest upstream pickle (SigNet) holds 15.8 M float32 weights, 63 MB.
MAX_PICKLE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LasagnePickle:
    """The loaded, not yet layout-checked content of an upstream pickle."""

    input_size: tuple[int, int]
    img_size: tuple[int, int]
    params: list[Any]


def safe_unpickle(data: bytes, source: str) -> Any:
    """Read a pickle with `stages.families.lasagne_signet.unpickler` (plain data and checked numpy arrays only; Python 2
    strings decoded as latin1, as upstream needs); nothing the file names is ever called."""
    try:
        return unpickler.load(data)
    except unpickler.RefusedGlobal as exc:
        raise PipelineError(
            f"{source}: refused to load: the pickle asks for the global '{shown(exc.module, 80)}.{shown(exc.name, 80)}'. "
            "Only numpy arrays, dtypes and plain containers are admitted, because any other global can "
            "run code while unpickling; nothing was executed. Is this really an upstream SigNet pickle?"
        ) from None
    except unpickler.Refused as exc:
        raise PipelineError(f"{source}: refused to load: {exc}; nothing was executed") from None
    except unpickler.Malformed as exc:
        raise PipelineError(f"{source}: not a readable pickle ({exc})") from None
    except MemoryError:
        raise PipelineError(f"{source}: not a readable pickle (it needs more memory than this machine has)") from None


def _pair(value: Any, key: str, source: str) -> tuple[int, int]:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise PipelineError(f"{source}: '{key}' is {shown_repr(value)}, expected a pair of positive ints (rows, cols)")
    return int(value[0]), int(value[1])


def load_lasagne_pickle(path: Path) -> LasagnePickle:
    """Read an upstream pickle safely and check its top-level structure (not the layer shapes)."""
    path = Path(path)
    data = read_bounded(path, MAX_PICKLE_BYTES, "SigNet pickle", "")
    if data.startswith(b"PK\x03\x04"):  # sigver_wiwd distributes the pickles inside zip archives
        raise PipelineError(
            f"{path}: is a zip archive, not a pickle; sigver_wiwd ships the models as "
            f"signet_models.zip / signet_spp_models.zip: name the member in the address (...zip#{path.name}) "
            "or take the file out of the archive"
        )
    content = safe_unpickle(data, str(path))
    if not isinstance(content, dict):
        raise PipelineError(
            f"{path}: holds a {type(content).__name__}, expected a dict with input_size, img_size, params"
        )
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


def load_checked(path: Path, architecture_name: str) -> tuple[LasagnePickle, list[LayerWeights]]:
    """Load safely and check the layer layout of `architecture_name`; SigNet must also say input_size 150x220."""
    content = load_lasagne_pickle(path)
    arch = architecture(architecture_name)
    if arch.fixed_input is not None and content.input_size != arch.fixed_input:
        raise PipelineError(
            f"{path}: input_size is {content.input_size}, expected {arch.fixed_input} "
            f"(the {architecture_name} dense layer is sized for it)"
        )
    return content, check_params(architecture_name, content.params, str(path))
