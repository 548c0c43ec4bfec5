"""Loading a PyTorch checkpoint without running it, and checking the state dicts it holds.

`torch_load` reads with `torch.load(weights_only=True)` (tensors and plain containers only) after
its own scan of the zip archive and the pickle's globals, so a hostile file is refused with a
one-line reason before torch sees it; `check_keys`, `check_tensor` and `load_state` admit only
string keys and dense, finite tensors of exactly the expected dtype and shape.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.untrusted import shown, shown_names, shown_repr


def check_tensor(value: object, where: str, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A dense CPU tensor of exactly `dtype` and `shape`, all finite; else PipelineError naming `where`.

    Nothing is cast: a complex64, float64 or int32 weight is refused rather than converted.
    """
    if not isinstance(value, torch.Tensor) or type(value) not in (torch.Tensor, torch.nn.Parameter):
        raise PipelineError(f"{where} is a {type(value).__name__}, expected a tensor")
    if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
        raise PipelineError(f"{where} is a {value.layout} {value.device.type} tensor, expected a dense CPU tensor")
    if tuple(value.shape) != tuple(shape):
        raise PipelineError(f"{where} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    if value.dtype != dtype:
        raise PipelineError(f"{where} has dtype {value.dtype}, expected {dtype}; nothing is converted")
    if value.is_floating_point():
        bad = int((~torch.isfinite(value)).sum())
        if bad:
            raise PipelineError(f"{where} holds {bad} NaN or infinite values")
    return value


def check_keys(mapping: object, where: str) -> dict:
    """A dict whose keys are all strings (a checkpoint's state dict or head); else PipelineError."""
    if not isinstance(mapping, dict):
        raise PipelineError(f"{where} is a {type(mapping).__name__}, expected a dict of named tensors")
    odd = [key for key in mapping if not isinstance(key, str)]
    if odd:
        raise PipelineError(
            f"{where} has {len(odd)} key(s) that are not strings, e.g. {shown_repr(odd[0], 60)} "
            f"({type(odd[0]).__name__}); expected parameter names"
        )
    return mapping


def load_state(module: nn.Module, state: object, source: str) -> None:
    """Load a state dict strictly: string keys, exactly the architecture's, each tensor of the
    expected dtype and shape and finite; the first that is not names itself."""
    check_keys(state, f"{source}: the state_dict")
    assert isinstance(state, dict)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise PipelineError(
            f"{source}: state_dict keys differ from the architecture: missing {shown_names(missing, 5)}, "
            f"unexpected {shown_names(extra, 5)}"
        )
    for key, tensor in expected.items():
        check_tensor(state[key], f"{source}: {key}", tensor.dtype, tuple(tensor.shape))
    module.load_state_dict(state, strict=True)


# A checkpoint is read whole by torch; the largest upstream one (sigver's .pth) is about 68 MB.
MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024
_GLOBAL_PATTERNS = (
    re.compile(r"GLOBAL (\S+) was not an allowed global"),
    re.compile(r"unsupported GLOBAL (\S+) whose module"),
    re.compile(r"Unsupported global: GLOBAL (\S+)"),
)
# Lines of torch's refusal that advise turning the protection off or point to its documentation.
_ADVICE = re.compile(
    r"weights_only|Weights only load failed|trust|add_safe_globals|safe_globals|documentation", re.IGNORECASE
)


def _check_archive(path: Path) -> None:
    """A zip checkpoint (what torch.save writes) must be plain: unique names, stored members
    (torch never compresses, so a deflated member can only be a bomb), sizes within the file.
    A legacy (pre-1.6, not zip) checkpoint is a few pickles followed by raw storage bytes.
    Either way the pickles' globals are scanned first (see `_scan_globals`)."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise PipelineError(
            f"{path}: {size} bytes, more than any upstream checkpoint ({MAX_CHECKPOINT_BYTES} at most); refused"
        )
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            handle.seek(0)
            _scan_globals(path, handle, pickles=5)  # magic, protocol, sys_info, content, storage keys
            return
    try:
        with zipfile.ZipFile(path) as bundle:
            infos = bundle.infolist()
            names = [info.filename for info in infos]
            if len(set(names)) != len(names):
                twice = sorted(name for name, count in Counter(names).items() if count > 1)
                raise PipelineError(
                    f"{path}: refused: the checkpoint archive holds {shown_names(twice, 3)} more than once"
                )
            for info in infos:
                if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                    raise PipelineError(
                        f"{path}: refused: the checkpoint member '{shown(info.filename, 80)}' is compressed, encrypted or "
                        "larger than the file; torch.save writes every member stored as is"
                    )
            program = [info for info in infos if info.filename.endswith("/data.pkl") or info.filename == "data.pkl"]
            if len(program) != 1:
                raise PipelineError(f"{path}: not a loadable PyTorch checkpoint (the archive has no single data.pkl)")
            with bundle.open(program[0]) as handle:
                _scan_globals(path, io.BytesIO(handle.read()), pickles=1)
    except PipelineError:
        raise
    except Exception as exc:  # zipfile raises BadZipFile, ValueError, struct.error, ... for a damaged file
        raise PipelineError(
            f"{path}: not a loadable PyTorch checkpoint (a damaged zip: {shown(str(exc), 120)})"
        ) from None


_GLOBAL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,15}$")


def _scan_globals(path: Path, stream, pickles: int) -> None:
    """Decode (never run) the first `pickles` pickles of `stream` and refuse any global whose
    module or name is not a plain dotted identifier: torch's own refusal of such a name runs
    regular expressions that take minutes on a long one, and would print it raw."""
    try:
        for _ in range(pickles):
            for opcode, arg, _position in pickletools.genops(stream):
                if opcode.name == "GLOBAL":
                    module, _, name = str(arg).partition(" ")
                    if not (_GLOBAL_NAME.match(module) and _GLOBAL_NAME.match(name)) or len(arg) > 200:
                        raise PipelineError(
                            f"{path}: refused to load: the checkpoint asks for the global '{shown(module, 80)}.{shown(name, 80)}'. "
                            "Only tensors and plain containers are admitted; nothing was executed. "
                            "Is this really the upstream checkpoint?"
                        )
    except PipelineError:
        raise
    except Exception:  # not decodable: torch's own reader reports it
        return


def _torch_refusal(path: Path, exc: BaseException) -> PipelineError:
    """torch's weights-only refusal as one line naming the global, without its advice to disable the check."""
    message = str(exc)
    for pattern in _GLOBAL_PATTERNS:
        found = pattern.search(message)
        if found:
            return PipelineError(
                f"{path}: refused to load: the checkpoint asks for the global '{shown(found.group(1).rstrip('.,'), 100)}'. "
                "Only tensors and plain containers are admitted, because any other global can run code while "
                "unpickling; nothing was executed. Is this really the upstream checkpoint?"
            )
    lines = [line.strip() for line in message.splitlines() if line.strip() and not _ADVICE.search(line)]
    reason = lines[0] if lines else type(exc).__name__
    return PipelineError(f"{path}: not a loadable PyTorch checkpoint ({shown(reason, 160)})")


def torch_load(path) -> object:
    """`torch.load(weights_only=True)` admitting tensors and plain containers only (no numpy, no
    other global), after checking the zip container; every failure is one PipelineError line."""
    path = Path(path)
    try:
        _check_archive(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found") from None
    except PipelineError:
        raise
    except MemoryError:
        raise PipelineError(
            f"{path}: not a loadable PyTorch checkpoint (it needs more memory than this machine has)"
        ) from None
    except Exception as exc:
        raise _torch_refusal(path, exc) from None


def checkpoint_path(raw: Path, spec: ModelSpec) -> Path:
    """The model's one checkpoint file in its folder (params `files`)."""
    if len(spec.files) != 1:
        raise PipelineError(f"family torch_sigver: files must list exactly one checkpoint, got {spec.files}")
    return Path(raw) / spec.files[0]
