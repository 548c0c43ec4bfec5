"""Writing the upstream pickle format (Python 2 cPickle, protocol 2), for the built-in stand-ins.

The stand-ins must be the upstream format byte for byte so that the loading code under test is
the code that reads the real files; the writer admits plain data and numpy arrays only.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

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
