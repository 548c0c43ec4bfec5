"""A pickle reader for untrusted files: plain data and numpy arrays, built by this module only.

Python's unpickler (even with a restricted `find_class`) runs the file's program: it calls what
the file names with arguments the file chooses, sets object state with BUILD (numpy's
`dtype.__setstate__` with a crafted state crashes the interpreter or reads heap memory), sizes
its memo by the largest index it sees, and trusts sizes and nesting. This reader interprets the
opcodes itself (`pickletools.genops` only decodes them) and never calls anything the file names:

- values: None, bool, int (at most 64 bits), float, str, bytes, tuple, list, dict (keys are
  str, bytes, int, float, bool or None), set, frozenset;
- numpy arrays only through the pattern numpy writes (`_reconstruct(ndarray, (0,), b'b')`,
  then BUILD with `(1, shape, dtype, is_fortran, raw bytes)`), with dtypes only through
  `dtype(code, False, True)` + BUILD `(3, byte order, None, None, None, -1, -1, 0)`; the
  reader checks every field of both states, then builds the array itself from a validated
  (dtype code, byte order, shape, raw bytes) tuple with `numpy.frombuffer` and copies it;
- any other global, any object-creating or extension opcode is refused before anything runs.

Bounds: opcode count, memo index, integer size, nesting depth (checked without recursion),
total bytes allocated (a budget proportional to the file), no cycles, nothing after STOP.
Errors are `Refused` (the file asks for something unsafe) or `Malformed` (not a pickle).
"""

from __future__ import annotations

import io
import math
import pickletools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.core.errors import first_line
from stages.core.untrusted import shown


class Malformed(Exception):
    """The bytes are not a well-formed pickle (truncated, garbage, inconsistent)."""


class Refused(Exception):
    """The pickle asks for something this reader never does; nothing has been executed."""


class RefusedGlobal(Refused):
    """The pickle names a global outside the allow-list (module and name as written)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"the pickle asks for the global '{shown(module, 80)}.{shown(name, 80)}'")
        self.module, self.name = module, name


@dataclass(frozen=True)
class Limits:
    max_ops: int = 2_000_000  # an upstream pickle has a few hundred opcodes
    max_memo_index: int = 1 << 20
    max_int_bits: int = 64
    max_depth: int = 32  # the upstream dict is 3 levels deep
    max_dims: int = 8
    fixed_budget: int = 16 << 20  # bytes, plus `budget_per_byte` per byte of the file
    budget_per_byte: int = 4


# --------------------------------------------------------------------------------------------
# Globals: tokens that only the patterns below accept; none of them is ever called by the file
# --------------------------------------------------------------------------------------------


class _Global:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<global {self.name}>"


RECONSTRUCT, NDARRAY, DTYPE, SCALAR = _Global("_reconstruct"), _Global("ndarray"), _Global("dtype"), _Global("scalar")
ORDERED_DICT, SET, FROZENSET, ENCODE = _Global("OrderedDict"), _Global("set"), _Global("frozenset"), _Global("encode")
BYTES = _Global("bytes")

# (module, name) as written in the file: Python 2 pickles say numpy.core.multiarray and
# __builtin__, Python 3 ones numpy._core.multiarray and builtins.
ALLOWED_GLOBALS: dict[tuple[str, str], _Global] = {
    **{(module, "_reconstruct"): RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): NDARRAY,
    ("numpy", "dtype"): DTYPE,
    **{(module, "set"): SET for module in ("__builtin__", "builtins")},
    **{(module, "frozenset"): FROZENSET for module in ("__builtin__", "builtins")},
    **{(module, "bytes"): BYTES for module in ("__builtin__", "builtins")},  # b"" at protocol < 3
    ("collections", "OrderedDict"): ORDERED_DICT,
    ("_codecs", "encode"): ENCODE,  # how Python 3 writes bytes at protocol 2
}

_DTYPE_CODE = re.compile(r"^(b1|[iu][1248]|f[248])$")
_BYTE_ORDERS = frozenset("<>|=")
_SCALAR_TYPES = (str, bytes, int, float, bool, type(None))


class _DtypeSpec:
    """What `numpy.dtype(code, ...)` stands for until its state is checked: code and byte order."""

    __slots__ = ("code", "order", "built")

    def __init__(self, code: str) -> None:
        self.code, self.order, self.built = code, "=", False

    def build(self, state: Any) -> None:
        if self.built:
            raise Refused("a dtype is given its state twice")
        if not isinstance(state, tuple) or len(state) not in (8, 9):
            raise Refused(f"unexpected dtype state {shown(state, 120)}")
        version, order, subarray, names, fields, elsize, alignment, flags = state[:8]
        metadata = state[8] if len(state) == 9 else None
        if (
            not isinstance(order, str)  # before the set lookup: hashing a deep tuple recurses in C
            or version not in (3, 4)
            or isinstance(version, bool)
            or order not in _BYTE_ORDERS
            or subarray is not None
            or names is not None
            or fields is not None
            or metadata is not None
            or elsize != -1
            or alignment != -1
            or flags != 0
            or any(isinstance(v, bool) for v in (elsize, alignment, flags))
        ):
            raise Refused(
                f"dtype state {shown(state, 120)} is not that of a plain numeric dtype "
                "(only a byte order may be set: no sub-arrays, fields, flags or metadata)"
            )
        self.order, self.built = order, True

    def dtype(self) -> np.dtype:
        base = np.dtype(self.code)
        order = "|" if base.itemsize == 1 else ("=" if self.order == "|" else self.order)
        return base.newbyteorder(order) if order != "|" else base

    def __repr__(self) -> str:
        return f"dtype({self.code!r})"


class _ArraySpec:
    """What `_reconstruct(ndarray, (0,), b'b')` stands for until BUILD gives it checked data."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __repr__(self) -> str:
        return "<array>" if self.array is None else f"<array {self.array.dtype} {self.array.shape}>"


def _dtype_spec(args: tuple) -> _DtypeSpec:
    if not 1 <= len(args) <= 3:
        raise Refused(f"unexpected numpy dtype arguments {shown(args, 120)}")
    code, align, copy = (*args, *(None, False, True)[len(args) :])
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str):
        raise Refused(f"refused dtype specification {shown(code, 80)}")
    if not _DTYPE_CODE.match(code):
        raise Refused(
            f"refused dtype {shown(code, 40)!r}: only plain numeric dtypes are allowed (bool, int, uint, float)"
        )
    if align not in (0, False) or copy not in (1, True):
        raise Refused(f"unexpected numpy dtype arguments {shown(args, 120)}")
    return _DtypeSpec(code)


def _array_spec(args: tuple) -> _ArraySpec:
    if len(args) != 3 or args[0] is not NDARRAY or args[1] != (0,) or args[2] not in (b"b", "b"):
        raise Refused(f"unexpected numpy _reconstruct arguments {shown(args, 120)}")
    return _ArraySpec()


def _raw(data: Any, what: str) -> bytes:
    """A Python 2 str (read as latin1 text) or bytes as raw bytes."""
    if isinstance(data, str):
        try:
            return data.encode("latin1")
        except UnicodeEncodeError:
            raise Refused(f"{what} holds text that is not raw bytes") from None
    if isinstance(data, bytes):
        return data
    raise Refused(f"{what} is a {type(data).__name__}, expected raw bytes")


def _scalar(args: tuple) -> Any:
    if len(args) != 2 or not isinstance(args[0], _DtypeSpec):
        raise Refused(f"unexpected numpy scalar arguments {shown(args, 120)}")
    dtype = args[0].dtype()
    raw = _raw(args[1], "a numpy scalar")
    if len(raw) != dtype.itemsize:
        raise Malformed("malformed numpy scalar data")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))[0]


# --------------------------------------------------------------------------------------------
# The interpreter
# --------------------------------------------------------------------------------------------

_REFUSED_OPCODES = {
    "INST": "creates an object",
    "OBJ": "creates an object",
    "NEWOBJ": "creates an object",
    "NEWOBJ_EX": "creates an object",
    "PERSID": "uses a persistent id",
    "BINPERSID": "uses a persistent id",
    "EXT1": "uses the extension registry",
    "EXT2": "uses the extension registry",
    "EXT4": "uses the extension registry",
    "BYTEARRAY8": "holds a bytearray",
    "NEXT_BUFFER": "uses out-of-band buffers",
    "READONLY_BUFFER": "uses out-of-band buffers",
    "LONG4": "holds an integer of unbounded size",
}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_INTS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1"})
_TEXTS = frozenset(
    {
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "UNICODE",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE8",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "FLOAT",
        "BINFLOAT",
    }
)
_MARK = object()


class _Machine:
    def __init__(self, size: int, limits: Limits) -> None:
        self.limits = limits
        self.budget = limits.fixed_budget + limits.budget_per_byte * size
        self.spent = 0
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}

    # Bookkeeping --------------------------------------------------------------------------
    def spend(self, amount: int) -> None:
        self.spent += amount
        if self.spent > self.budget:
            raise Refused(
                f"the pickle would need more than {self.budget} bytes of memory (the file holds far less data)"
            )

    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise Malformed("the pickle pops from an empty stack")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise Malformed("the pickle reads an empty stack")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise Malformed("the pickle closes a mark it never opened")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def key(self, value: Any) -> Any:
        if not isinstance(value, _SCALAR_TYPES):
            raise Refused(f"a dict key or set item is a {type(value).__name__}; only strings and numbers are admitted")
        return value

    def integer(self, value: int) -> int:
        if not isinstance(value, bool) and value.bit_length() > self.limits.max_int_bits:
            raise Refused(
                f"the pickle holds an integer of {value.bit_length()} bits (at most {self.limits.max_int_bits})"
            )
        return value

    # Opcodes ------------------------------------------------------------------------------
    def run(self, data: bytes) -> Any:
        stream = io.BytesIO(data)
        ops = 0
        for opcode, arg, position in pickletools.genops(stream):
            ops += 1
            if ops > self.limits.max_ops:
                raise Refused(f"the pickle has more than {self.limits.max_ops} opcodes")
            name = opcode.name
            try:
                if name == "STOP":
                    result = self.pop()
                    if stream.tell() != len(data):
                        raise Refused(f"{len(data) - stream.tell()} bytes follow the end of the pickle")
                    return result
                self.step(name, arg)
            except (Refused, Malformed) as exc:
                exc.args = (f"{exc} (opcode {name} at byte {position})",)
                raise
        raise Malformed("the pickle has no STOP")

    def step(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _REFUSED_OPCODES:
            raise Refused(f"the pickle {_REFUSED_OPCODES[name]}, which plain data never needs")
        if name in ("PROTO", "FRAME"):
            if name == "PROTO" and not 0 <= arg <= 5:
                raise Malformed(f"unknown pickle protocol {arg}")
            return
        if name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name in _INTS:
            stack.append(self.integer(arg))
        elif name in _TEXTS:
            if isinstance(arg, (str, bytes)):
                self.spend(len(arg) + 64)
            stack.append(arg)
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name == "POP":
            if len(stack) > (self.marks[-1] if self.marks else 0):
                stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(self.top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            index = len(self.memo) if name == "MEMOIZE" else arg
            if not 0 <= index < self.limits.max_memo_index:
                raise Refused(f"memo index {index} is beyond {self.limits.max_memo_index}")
            self.spend(64)
            self.memo[index] = self.top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise Malformed(f"memo index {arg} is used before it is defined")
            stack.append(self.memo[arg])
        elif name == "EMPTY_LIST":
            self.spend(64)
            stack.append([])
        elif name == "EMPTY_DICT":
            self.spend(64)
            stack.append({})
        elif name == "EMPTY_SET":
            self.spend(64)
            stack.append(set())
        elif name in ("TUPLE", "LIST", "FROZENSET"):
            items = self.pop_mark()
            self.spend(64 + 8 * len(items))
            if name == "TUPLE":
                stack.append(tuple(items))
            elif name == "LIST":
                stack.append(items)
            else:
                stack.append(frozenset(self.key(item) for item in items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            items = [self.pop() for _ in range(count)][::-1]
            self.spend(64 + 8 * count)
            stack.append(tuple(items))
        elif name == "DICT":
            items = self.pop_mark()
            if len(items) % 2:
                raise Malformed("a dict with an odd number of items")
            self.spend(64 + 48 * len(items))
            stack.append({self.key(items[i]): items[i + 1] for i in range(0, len(items), 2)})
        elif name == "APPEND":
            value = self.pop()
            self.container(list).append(value)
            self.spend(8)
        elif name == "APPENDS":
            items = self.pop_mark()
            self.container(list).extend(items)
            self.spend(8 * len(items))
        elif name == "SETITEM":
            value, key = self.pop(), self.pop()
            self.container(dict)[self.key(key)] = value
            self.spend(96)
        elif name == "SETITEMS":
            items = self.pop_mark()
            if len(items) % 2:
                raise Malformed("SETITEMS with an odd number of items")
            target = self.container(dict)
            self.spend(96 * len(items) // 2)
            for i in range(0, len(items), 2):
                target[self.key(items[i])] = items[i + 1]
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target = self.container(set)
            self.spend(48 * len(items))
            target.update(self.key(item) for item in items)
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attribute = arg.partition(" ")
            else:
                attribute, module = self.pop(), self.pop()
                if not isinstance(module, str) or not isinstance(attribute, str):
                    raise Malformed("STACK_GLOBAL needs two strings")
            token = ALLOWED_GLOBALS.get((module, attribute))
            if token is None:
                raise RefusedGlobal(module, attribute)
            stack.append(token)
        elif name == "REDUCE":
            args = self.pop()
            function = self.pop()
            stack.append(self.reduce(function, args))
        elif name == "BUILD":
            state = self.pop()
            target = self.top()
            self.build(target, state)
        else:  # pragma: no cover - every opcode of protocols 0..5 is handled above
            raise Refused(f"opcode {name} is not supported")

    def container(self, kind: type) -> Any:
        target = self.top()
        if type(target) is not kind:
            raise Refused(f"the pickle adds items to a {type(target).__name__}, expected a {kind.__name__}")
        return target

    def reduce(self, function: Any, args: Any) -> Any:
        if not isinstance(function, _Global):
            raise Refused(
                f"the pickle calls a {type(function).__name__}; only numpy's array and dtype patterns are admitted"
            )
        if not isinstance(args, tuple):
            raise Malformed("REDUCE arguments are not a tuple")
        if function is RECONSTRUCT:
            return _array_spec(args)
        if function is DTYPE:
            return _dtype_spec(args)
        if function is SCALAR:
            return _scalar(args)
        if function is BYTES:
            if args != ():
                raise Refused(f"unexpected bytes arguments {shown(args, 120)}")
            return b""
        if function is ENCODE:
            if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
                raise Refused(f"unexpected _codecs.encode arguments {shown(args, 120)}")
            self.spend(len(args[0]))
            return _raw(args[0], "encoded text")
        if function in (ORDERED_DICT, SET, FROZENSET):
            if len(args) > 1:
                raise Refused(f"unexpected {function.name} arguments {shown(args, 120)}")
            items = list(args[0]) if args and isinstance(args[0], (list, tuple)) else None
            if args and items is None:
                raise Refused(f"unexpected {function.name} arguments {shown(args, 120)}")
            items = items or []
            self.spend(64 + 96 * len(items))
            if function is ORDERED_DICT:
                pairs = []
                for pair in items:
                    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                        raise Refused("OrderedDict items are not key-value pairs")
                    pairs.append((self.key(pair[0]), pair[1]))
                return dict(pairs)
            values = [self.key(item) for item in items]
            return set(values) if function is SET else frozenset(values)
        raise Refused(f"the pickle calls numpy.{function.name} outside numpy's array pattern")

    def build(self, target: Any, state: Any) -> None:
        if isinstance(target, _DtypeSpec):
            target.build(state)
            return
        if not isinstance(target, _ArraySpec):
            raise Refused(
                f"the pickle sets the state of a {type(target).__name__}; only numpy arrays and dtypes have one"
            )
        if target.array is not None:
            raise Refused("an array is given its state twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5) or (len(state) == 5 and state[0] != 1):
            raise Refused(f"unexpected numpy array state {shown(state, 120)}")
        shape, dtype_spec, fortran, data = state[-4:]
        if (
            not isinstance(shape, tuple)
            or len(shape) > self.limits.max_dims
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 40 for n in shape)
        ):
            raise Refused(f"array shape {shown(shape, 120)} is not a tuple of at most {self.limits.max_dims} sizes")
        if not isinstance(dtype_spec, _DtypeSpec):
            raise Refused(f"an array's dtype is a {type(dtype_spec).__name__}, expected numpy.dtype(code)")
        if fortran not in (0, 1):
            raise Refused(f"an array's is_fortran flag is {shown(fortran, 40)}")
        dtype = dtype_spec.dtype()
        count = math.prod(shape)
        expected = count * dtype.itemsize
        length = len(data) if isinstance(data, (str, bytes)) else -1
        if length != expected:
            raise Refused(
                f"an array of shape {shape} and dtype {dtype_spec.code} needs {expected} bytes, "
                f"its data has {length if length >= 0 else 'none'}"
            )
        self.spend(2 * expected + 128)
        raw = _raw(data, "an array's data")
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        if dtype.kind == "b" and flat.size and int(flat.view(np.uint8).max()) > 1:
            raise Refused("a boolean array holds bytes other than 0 and 1")
        array = flat.reshape(shape, order="F" if fortran else "C")
        target.array = np.array(array, dtype=dtype.newbyteorder("="), order="C", copy=True)


# --------------------------------------------------------------------------------------------
# The result: placeholders replaced, nesting bounded, cycles refused, all without recursion
# --------------------------------------------------------------------------------------------


def _children(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    return []


def _finish(root: Any, limits: Limits) -> Any:
    """Replace array/dtype placeholders, refuse cycles, bare globals and too deep nesting."""
    done: dict[int, Any] = {}
    on_path: set[int] = set()
    work: list[tuple[Any, bool]] = [(root, False)]
    while work:
        value, expanded = work.pop()
        if isinstance(value, _Global):
            raise Refused(f"the data holds the bare global {value.name}")
        if isinstance(value, (_ArraySpec, _DtypeSpec)):
            continue
        if not isinstance(value, (list, tuple, dict)):
            continue
        key = id(value)
        if expanded:
            on_path.discard(key)
            done[key] = _rebuild(value, done)
            continue
        if key in done:
            continue
        if key in on_path:
            raise Refused("the data refers to itself (a cycle); plain model data never does")
        if len(on_path) >= limits.max_depth:
            raise Refused(f"the data is nested more than {limits.max_depth} levels deep")
        on_path.add(key)
        work.append((value, True))
        work.extend((child, False) for child in _children(value) if id(child) not in done)
    return _convert(root, done)


def _convert(value: Any, done: dict[int, Any]) -> Any:
    if isinstance(value, _ArraySpec):
        if value.array is None:
            raise Malformed("an array has no data (its BUILD is missing)")
        return value.array
    if isinstance(value, _DtypeSpec):
        return value.dtype().newbyteorder("=")
    if isinstance(value, (list, tuple, dict)):
        return done[id(value)]
    return value


def _rebuild(value: Any, done: dict[int, Any]) -> Any:
    if isinstance(value, list):
        return [_convert(item, done) for item in value]
    if isinstance(value, tuple):
        return tuple(_convert(item, done) for item in value)
    return {key: _convert(item, done) for key, item in value.items()}


def load(data: bytes, limits: Limits = Limits()) -> Any:
    """The value the pickle `data` describes, built from plain types and numpy arrays only.

    Raises Refused (naming what the file asked for) or Malformed; nothing the file names is
    ever imported or called.
    """
    machine = _Machine(len(data), limits)
    try:
        result = machine.run(data)
    except (Refused, Malformed):
        raise
    except (ValueError, EOFError, UnicodeDecodeError, OverflowError, IndexError, KeyError, TypeError) as exc:
        # pickletools' decoding errors: truncated arguments, unknown opcodes, bad text.
        raise Malformed(f"{type(exc).__name__}: {shown(first_line(exc), 160)}") from None
    finally:
        machine.stack.clear()
        machine.memo.clear()
    return _finish(result, limits)
