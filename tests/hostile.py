"""Hostile inputs, as an adversary would craft them, and the harness that runs them safely.

Generators (each returns {case id: Hostile}, the bytes of the model's upstream file(s) plus
a fragment the single error line must contain):
- `pickles()`: Lasagne pickles for `signet.pkl`: dtype state from the file (flags, sub-array,
  fields, sizes), object arrays, memo, depth, integer and allocation bombs, self-repeating
  values in messages, tuple keys, trailing bytes, refused opcodes, untrusted global names;
- `checkpoints(state)`: PyTorch checkpoints for `convnet_best_loss.pt`: numpy and code
  globals, complex/int/NaN weights, mixed-type keys, deep nesting, crafted pickles inside the
  zip, compressed (bomb) and duplicate zip members; full size (63 MB), each made when its case
  runs (`Hostile.made`);
- `savedmodel_graphs(pb)`: `saved_model.pb` variants (edited as protobuf, no TensorFlow needed):
  file, py_func, print and string-format ops in functions, calls of missing or checkpoint
  functions, TF1-style graphs, huge constants, garbage;
- `zip_archive(...)`, `pickle_with_global(...)` for the source tests.

Harness: `stage` runs a stage under RLIMIT_AS (2 GiB), a memory limit (1 GiB of peak resident
memory) and a timeout, forked from a warm interpreter (tests/warm_stages.py); `run_limited` runs
any command in a new process under the same limits; `snapshot` records every file (path, sha256)
under a folder to prove nothing else changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import warm_stages

# A stage fed a hostile input may hold at most 1 GiB of memory (peak resident set, measured per
# run). The address space is capped higher, at 2 GiB, as the guard that stops a runaway
# allocation: torch, OpenCV and scikit-image map about 1.2 GB of address space at import
# without touching it, so an address-space cap of 1 GiB would fail every run that imports them.
MEMORY_LIMIT = 1 << 30  # bytes of peak resident memory
ADDRESS_SPACE_LIMIT = 2 << 30
TIMEOUT = 180  # seconds
# Runs the command under the address-space cap, waits for it with wait4 (which reports the
# child's own peak RSS), writes that peak to the file named by argv[1] and exits with its status.
_MEASURED_RUN = """
import os, resource, subprocess, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
child = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss * 1024))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
"""


@dataclass(frozen=True)
class Hostile:
    """Files to place (relative name -> bytes, or a function that makes them when the case runs:
    a full-size checkpoint is 63 MB) and a regex the one error line must match."""

    files: dict[str, bytes] | Callable[[], dict[str, bytes]]
    expect: str

    def made(self) -> dict[str, bytes]:
        """The files' bytes (made now when `files` is a function)."""
        return self.files() if callable(self.files) else self.files


@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def limited_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a limited run: this one, one thread per library, quiet TensorFlow."""
    return {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        **(env or {}),
    }


def held_to_limits(what: str, peak: int, timed_out: bool, timeout: float, stderr: str) -> None:
    """Fail the caller when the run timed out or its peak resident memory exceeds MEMORY_LIMIT."""
    if timed_out:
        raise AssertionError(f"{what} ran longer than {timeout} s:\n{stderr[-2000:]}")
    if peak > MEMORY_LIMIT:
        raise AssertionError(f"{what} held {peak / 2**20:.0f} MiB, over the {MEMORY_LIMIT / 2**20:.0f} MiB limit")


def run_limited(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Outcome:
    """Run `args` under the address-space cap and a timeout; fail the caller when it times out or
    its peak resident memory exceeds MEMORY_LIMIT."""
    environment = limited_env(env)
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak_rss"
        wrapper = [sys.executable, "-c", _MEASURED_RUN.format(limit=ADDRESS_SPACE_LIMIT), str(peak_file), *args]
        start = time.monotonic()
        process = subprocess.Popen(
            wrapper, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            held_to_limits(" ".join(args), 0, True, timeout, err)
        peak = int(peak_file.read_text()) if peak_file.exists() else 0
    held_to_limits(" ".join(args), peak, False, timeout, err)
    return Outcome(process.returncode, out, err, time.monotonic() - start)


def stage(project: Path, step: str, model: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT) -> Outcome:
    """`python -m stages.<step> MODEL` in `project`, as dvc.yaml runs it, under the limits: forked
    from a warm interpreter (tests/warm_stages.py), or a new process where none is free."""
    environment = limited_env({"PYTHONPATH": str(project), **(env or {})})
    start = time.monotonic()
    warm = warm_stages.run(
        project,
        f"stages.{step}",
        [model],
        environment,
        warm_stages.preload_for(project, model),
        ADDRESS_SPACE_LIMIT,
        timeout,
    )
    if warm is None:
        return run_limited([sys.executable, "-m", f"stages.{step}", model], project, environment, timeout)
    held_to_limits(f"stages.{step} {model}", warm.peak, warm.timed_out, timeout, warm.stderr)
    return Outcome(warm.code, warm.stdout, warm.stderr, time.monotonic() - start)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> sha256), to prove that a run changed nothing."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------------------------
# Pickle opcodes (protocol 2) for hand-written hostile pickles
# --------------------------------------------------------------------------------------------

PROTO2 = b"\x80\x02"
STOP = b"."


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode("latin1") + b"\n" + name.encode("latin1") + b"\n"


def binstring(data: bytes) -> bytes:
    return (b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))) + data


def binint(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def tuple_(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


NONE, TRUE, FALSE, EMPTY_DICT, EMPTY_LIST, MARK = b"N", b"\x88", b"\x89", b"}", b"]", b"("


def dtype_with_state(code: bytes, state: bytes) -> bytes:
    """numpy.dtype(code, 0, 1) followed by BUILD with the given (file-chosen) state."""
    return global_("numpy", "dtype") + tuple_(binstring(code), binint(0), binint(1)) + b"R" + state + b"b"


def plain_dtype_state(
    order: bytes = b"<",
    flags: int = 0,
    elsize: int = -1,
    subarray: bytes = NONE,
    names: bytes = NONE,
    fields: bytes = NONE,
) -> bytes:
    return tuple_(binint(3), binstring(order), subarray, names, fields, binint(elsize), binint(-1), binint(flags))


def array(shape: tuple[int, ...], dtype: bytes, data: bytes, fortran: bool = False) -> bytes:
    """numpy's own pattern: _reconstruct(ndarray, (0,), 'b') + BUILD (1, shape, dtype, fortran, data)."""
    return (
        global_("numpy.core.multiarray", "_reconstruct")
        + tuple_(global_("numpy", "ndarray"), tuple_(binint(0)), binstring(b"b"))
        + b"R"
        + tuple_(binint(1), tuple_(*(binint(n) for n in shape)), dtype, TRUE if fortran else FALSE, data)
        + b"b"
    )


def upstream_dict(params: bytes, input_size: bytes | None = None) -> bytes:
    """{'input_size': ..., 'img_size': (170, 242), 'params': <params>} as the upstream file holds it."""
    size = input_size if input_size is not None else tuple_(binint(150), binint(220))
    return (
        EMPTY_DICT
        + MARK
        + binstring(b"input_size")
        + size
        + binstring(b"img_size")
        + tuple_(binint(170), binint(242))
        + binstring(b"params")
        + params
        + b"u"
    )


def pickle_with_global(module: str, name: str) -> bytes:
    return PROTO2 + global_(module, name) + tuple_(binstring(b"id")) + b"R" + STOP


def pickles() -> dict[str, Hostile]:
    """Hostile `signet.pkl` files; every one must be refused before anything it names runs."""
    f4 = plain_dtype_state()
    good = dtype_with_state(b"f4", f4)
    nested_lists = 100_000
    ansi_name = "\x1b[31mred\x1b[0m" + "x" * 1_000_000
    big = os.urandom(8 << 20)
    cases = {
        # numpy's dtype.__setstate__ with state from the file: flags, sub-array, fields, sizes.
        "dtype-flags": (dtype_with_state(b"f4", plain_dtype_state(flags=63)), "not that of a plain numeric dtype"),
        "dtype-subarray": (
            dtype_with_state(b"f4", plain_dtype_state(subarray=tuple_(good, tuple_(binint(1 << 30))))),
            "not that of a plain numeric dtype",
        ),
        "dtype-fields": (
            dtype_with_state(b"f4", plain_dtype_state(names=tuple_(binstring(b"a")), fields=EMPTY_DICT)),
            "not that of a plain numeric dtype",
        ),
        "dtype-elsize": (
            dtype_with_state(b"f4", plain_dtype_state(elsize=1 << 30)),
            "not that of a plain numeric dtype",
        ),
        "dtype-object": (
            global_("numpy", "dtype") + tuple_(binstring(b"O8"), binint(0), binint(1)) + b"R",
            "refused dtype 'O8'",
        ),
        "dtype-record": (
            global_("numpy", "dtype") + tuple_(binstring(b"V8"), binint(0), binint(1)) + b"R",
            "only plain numeric dtypes",
        ),
        # arrays whose data does not match their shape (a heap read) or which are built twice
        "array-short-data": (array((1 << 20,), good, binstring(b"\x00" * 16)), "needs 4194304 bytes, its data has 16"),
        "array-negative-shape": (array((-1,), good, binstring(b"")), "is not a tuple of at most"),
        "array-object-dtype-state": (
            array((2,), dtype_with_state(b"f4", plain_dtype_state(flags=63)), binstring(b"\x00" * 8)),
            "not that of a plain numeric dtype",
        ),
        # resource bombs in small files
        "memo-index": (EMPTY_LIST + b"r" + struct.pack("<I", 0x7FFFFFFF), "memo index 2147483647 is beyond"),
        "deep-nesting": (EMPTY_LIST * nested_lists + b"a" * (nested_lists - 1), "nested more than 32 levels"),
        "deep-marks": (MARK * nested_lists + b")" + b"t" * nested_lists, "nested more than 32 levels"),
        "huge-int-long4": (b"\x8b" + struct.pack("<i", 1 << 20) + b"\x7f" * (1 << 20), "integer of unbounded size"),
        "huge-int-long1": (b"\x8a\xff" + b"\x7f" * 255, r"integer of \d+ bits"),
        "huge-int-text": (b"L" + b"9" * 5000 + b"L\n", "not a readable pickle"),
        "self-repeating-list": (EMPTY_LIST + b"q\x00" + MARK + b"h\x00" * 1000 + b"e", "refers to itself"),
        # a value that repeats a 1 MB string a million times, to be shown in a message
        "repr-bomb": (
            upstream_dict(
                EMPTY_LIST,
                input_size=EMPTY_LIST
                + b"q\x01"
                + MARK
                + binstring(b"y" * (1 << 20))
                + b"q\x02"
                + b"h\x02" * 100_000
                + b"e",
            ),
            r"'input_size' is \[.{0,300}\.\.\.",
        ),
        "tuple-key": (EMPTY_DICT + tuple_(binint(1), binint(2)) + binint(3) + b"s", "dict key or set item is a tuple"),
        "repeated-tuple-key": (
            b"".join([binint(1), b"q\x00"] + [b"h\x00h\x00\x86q\x00" for _ in range(60)])
            + b"0"
            + EMPTY_DICT
            + b"h\x00"
            + binint(1)
            + b"s",
            "dict key or set item is a tuple",
        ),
        # one 8 MB string used as the data of 200 arrays: 1.6 GB if each were built
        "allocation": (
            binstring(big)
            + b"q\x05"
            + b"0"
            + EMPTY_LIST
            + MARK
            + b"".join(
                array((len(big),), dtype_with_state(b"u1", plain_dtype_state(order=b"|")), b"h\x05") for _ in range(200)
            )
            + b"e",
            "would need more than",
        ),
        "trailing-bytes": (upstream_dict(EMPTY_LIST), "bytes follow the end of the pickle"),
        # code and object creation
        "os-system": (global_("os", "system") + tuple_(binstring(b"touch /tmp/pwned")) + b"R", "global 'os.system'"),
        "newobj": (global_("numpy", "ndarray") + b")\x81", "creates an object"),
        "persistent-id": (b"P1\n", "persistent id"),
        "extension": (b"\x82\x01", "extension registry"),
        "global-name-escapes": (
            binstring(b"os") + b"X" + struct.pack("<i", len(ansi_name)) + ansi_name.encode() + b"\x93",
            r"global 'os\.\\x1b\[31mred",
        ),
    }
    result = {}
    for case, (body, expect) in cases.items():
        data = PROTO2 + body + STOP
        if case == "trailing-bytes":
            data += b"\x80\x02cos\nsystem\n."
        if case == "huge-int-text":
            data = b"L" + b"9" * 5000 + b"L\n."
        result[case] = Hostile({"signet.pkl": data}, expect)
    return result


# --------------------------------------------------------------------------------------------
# PyTorch checkpoints
# --------------------------------------------------------------------------------------------


def torch_bytes(obj: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def replace_members(
    checkpoint: bytes,
    replace: dict[str, bytes] | None = None,
    compress: str | None = None,
    duplicate: str | None = None,
) -> bytes:
    """A copy of a torch zip with some members' bytes replaced, one compressed, or one twice."""
    source = zipfile.ZipFile(io.BytesIO(checkpoint))
    out = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
            for info in source.infolist():
                data = source.read(info.filename)
                for suffix, new in (replace or {}).items():
                    if info.filename.endswith(suffix):
                        data = new
                kind = zipfile.ZIP_DEFLATED if compress and info.filename.endswith(compress) else zipfile.ZIP_STORED
                bundle.writestr(info.filename, data, compress_type=kind)
                if duplicate and info.filename.endswith(duplicate):
                    bundle.writestr(info.filename, data, compress_type=kind)
    return out.getvalue()


def checkpoints(state: dict) -> dict[str, Hostile]:
    """Hostile `convnet_best_loss.pt` files built from a good Siamese state dict (full size, 63 MB:
    a tensor case is that good checkpoint but for one tensor). Each is made when its case runs
    (`Hostile.made`), so that no more than the cases running at once are ever in memory or on disk."""
    import numpy as np
    import torch

    def with_tensor(key: str, value: torch.Tensor) -> dict:
        return {"model": {**state, key: value}}

    weight = "model.conv_layers.conv1.conv.weight"
    shape = tuple(state[weight].shape)
    nan = state[weight].clone()
    nan[0, 0, 0, 0] = float("nan")
    made: list[bytes] = []

    def good() -> bytes:
        """The good checkpoint (made once), whose members the zip and pickle cases replace."""
        if not made:
            made.append(torch_bytes({"model": state}))
        return made[0]

    deep = PROTO2 + EMPTY_DICT + binstring(b"model") + EMPTY_LIST * 100_000 + b"a" * 99_999 + b"s" + STOP
    os_system = PROTO2 + global_("posix", "system") + tuple_(binstring(b"touch /tmp/pwned")) + b"R" + STOP
    ansi = PROTO2 + global_("\x1b[2J" + "m" * 100_000, "x") + b")R" + STOP
    memo = PROTO2 + EMPTY_LIST + b"r" + struct.pack("<I", 0x7FFFFFFF) + STOP
    cases = {
        "numpy-preds": (
            lambda: torch_bytes({"model": state, "preds": np.zeros(64, np.float32)}),
            r"refused to load: the checkpoint asks for the global 'numpy",
        ),
        "numpy-dtype": (lambda: torch_bytes({"model": state, "dtype": np.dtype("f4")}), r"asks for the global 'numpy"),
        "code-global": (
            lambda: replace_members(good(), {"data.pkl": os_system}),
            r"asks for the global 'posix\.system'",
        ),
        "global-name-escapes": (
            lambda: replace_members(good(), {"data.pkl": ansi}),
            r"\\x1b\[2Jmmm.*characters in all",
        ),
        "memo-index": (
            lambda: replace_members(good(), {"data.pkl": memo}),
            r"not a loadable PyTorch checkpoint|expected a dict",
        ),
        "huge-int": (
            lambda: replace_members(
                good(), {"data.pkl": PROTO2 + b"\x8b" + struct.pack("<i", 1 << 20) + b"\x7f" * (1 << 20) + STOP}
            ),
            "not a loadable PyTorch checkpoint",
        ),
        "complex64": (
            lambda: torch_bytes(with_tensor(weight, torch.zeros(shape, dtype=torch.complex64))),
            rf"{weight} has dtype torch\.complex64",
        ),
        "int32": (
            lambda: torch_bytes(with_tensor(weight, torch.zeros(shape, dtype=torch.int32))),
            rf"{weight} has dtype torch\.int32",
        ),
        "float64": (
            lambda: torch_bytes(with_tensor(weight, torch.zeros(shape, dtype=torch.float64))),
            rf"{weight} has dtype torch\.float64",
        ),
        "nan": (lambda: torch_bytes(with_tensor(weight, nan)), rf"{weight} holds 1 NaN or infinite values"),
        "sparse": (
            lambda: torch_bytes(with_tensor(weight, torch.zeros(shape).to_sparse())),
            rf"{weight} is a torch\.sparse_coo",
        ),
        "mixed-keys-state": (
            lambda: torch_bytes({"model": {**state, 7: torch.zeros(1)}}),
            "key\\(s\\) that are not strings",
        ),
        "mixed-keys-top": (lambda: torch_bytes({"model": state, 7: 1, (1, 2): 3}), "key\\(s\\) that are not strings"),
        "deep-nesting": (lambda: replace_members(good(), {"data.pkl": deep}), "the state_dict is a list"),
        "no-model-key": (
            lambda: torch_bytes({"\x1b[31mstate\nerror: forged": state}),
            r"found keys \['\\x1b\[31mstate\\nerror: forged'\]",
        ),
        "compressed-member": (lambda: replace_members(good(), compress="data/0"), "compressed, encrypted or larger"),
        "duplicate-member": (lambda: replace_members(good(), duplicate="data.pkl"), "more than once"),
        "garbage": (lambda: b"PK\x03\x04" + os.urandom(4096), "not a loadable PyTorch checkpoint"),
    }
    return {
        case: Hostile(lambda make=make: {"convnet_best_loss.pt": make()}, expect)
        for case, (make, expect) in cases.items()
    }


# --------------------------------------------------------------------------------------------
# SavedModel graphs, edited as protobuf (the pipeline's own minimal schema keeps unknown fields)
# --------------------------------------------------------------------------------------------


def _edit(pb: bytes, change) -> bytes:
    from stages.families.keras_cleaning.savedmodel_ops import _CLASSES

    model = _CLASSES["SavedModel"]()
    model.ParseFromString(pb)
    change(model.meta_graphs[0])
    return model.SerializeToString()


def _signature_function(meta):
    return next(
        f for f in meta.graph_def.library.function if f.signature.name.startswith("__inference_signature_wrapper")
    )


def _add_node(
    function, op: str, name: str = "hostile", call: str | None = None, shape: list[int] | None = None
) -> None:
    node = function.node_def.add(name=name, op=op)
    if call is not None:
        node.attr["f"].func.name = call
    if shape is not None:
        for size in shape:
            node.attr["value"].tensor.tensor_shape.dim.add(size=size)


def savedmodel_graphs(pb: bytes) -> dict[str, Hostile]:
    """Hostile `model/saved_model.pb` variants of a good one (the other SavedModel files stay good)."""

    def in_signature(op: str, **extra):
        return lambda meta: _add_node(_signature_function(meta), op, **extra)

    def in_new_function(op: str):
        def change(meta):
            function = meta.graph_def.library.function.add()
            function.signature.name = "__inference__initialize_77"
            _add_node(function, op)

        return change

    def save_function_called(meta):
        save = next(
            f for f in meta.graph_def.library.function if f.signature.name.startswith("__inference__traced_save")
        )
        _add_node(_signature_function(meta), "StatefulPartitionedCall", call=save.signature.name)

    def write_in_restore(meta):
        restore = next(
            f for f in meta.graph_def.library.function if f.signature.name.startswith("__inference__traced_restore")
        )
        _add_node(restore, "WriteFile")

    def tf1_style(meta):
        meta.ClearField("object_graph_def")

    def nested_attrs(meta):
        node = _signature_function(meta).node_def.add(name="deep", op="Identity")
        value = node.attr["x"]
        for _ in range(200):
            value = value.func.attr["x"]

    escaped = "\x1b[2J" + "W" * 100_000
    cases = {
        "write-file": (
            in_signature("WriteFile"),
            r"op 'WriteFile' \(node 'hostile'\) in function '__inference_signature_wrapper",
        ),
        "write-file-in-initializer": (
            in_new_function("WriteFile"),
            r"op 'WriteFile' .* in function '__inference__initialize_77'",
        ),
        "py-func": (in_signature("EagerPyFunc"), "op 'EagerPyFunc'"),
        "print": (in_signature("PrintV2"), "op 'PrintV2'"),
        "string-format": (in_signature("StringFormat"), "op 'StringFormat'"),
        "read-file": (in_signature("ReadFile"), "op 'ReadFile'"),
        "save-in-top-level": (lambda meta: _add_node_top(meta, "SaveV2"), "op 'SaveV2' .* in the top-level graph"),
        "op-name-escapes": (in_signature(escaped), r"op '\\x1b\[2JWWW"),
        "missing-function": (in_signature("StatefulPartitionedCall", call="__inference_nowhere_1"), "lacks"),
        "checkpoint-function-called": (save_function_called, "calls the checkpoint function"),
        "file-op-in-restore": (write_in_restore, r"op 'WriteFile' .* in function '__inference__traced_restore"),
        "tf1-style": (tf1_style, "expected one MetaGraph with an object graph"),
        "huge-constant": (in_signature("Const", shape=[1 << 20, 1 << 20]), "holds a constant of"),
        "nested-attributes": (nested_attrs, "not a readable SavedModel graph"),
    }
    result = {
        case: Hostile({"model/saved_model.pb": _edit(pb, change)}, expect) for case, (change, expect) in cases.items()
    }
    result["garbage"] = Hostile(
        {"model/saved_model.pb": b"\x0a\xff\xff\xff\xff\x0f" + os.urandom(64)}, "not a readable SavedModel graph"
    )
    return result


def _add_node_top(meta, op: str) -> None:
    meta.graph_def.node.add(name="hostile", op=op)


# A SavedModel whose resource initializer writes a file, made with TensorFlow itself. Run as
# `python -c WRITE_FILE_MODEL folder marker` (TensorFlow needs more than the 1 GiB limit).
WRITE_FILE_MODEL = r"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf

folder, marker = sys.argv[1], sys.argv[2]

class Planted(tf.saved_model.experimental.TrackableResource):
    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="planted_" + str(id(self)))

    def _initialize(self):
        tf.io.write_file(marker, "written by a SavedModel initializer")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=tf.constant(0.0))

class Model(tf.Module):
    def __init__(self):
        super().__init__()
        self.planted = Planted()

    @tf.function(input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32, name="input_1")])
    def serve(self, input_1):
        return {"conv2d_6": input_1}

model = Model()
tf.saved_model.save(model, folder, signatures={"serving_default": model.serve})
if os.path.exists(marker):
    os.remove(marker)  # saving ran the initializer once; the control below must prove loading does
tf.saved_model.load(folder)
print("live" if os.path.exists(marker) else "inert")
"""


def zip_archive(members: list[tuple[str, bytes]], extract_version: int | None = None) -> bytes:
    """A zip with these members in order (names may repeat); optionally a crafted
    "version needed to extract" in every header (64: a version Python's zipfile refuses)."""
    import warnings

    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a duplicate name
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
            for name, data in members:
                info = zipfile.ZipInfo(name)
                if extract_version is not None:
                    info.extract_version = extract_version
                bundle.writestr(info, data)
    return out.getvalue()


def pickled(value: object) -> bytes:
    return pickle.dumps(value, protocol=2)
