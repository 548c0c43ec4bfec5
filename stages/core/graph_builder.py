"""A small onnx.helper graph builder shared by every graph the pipeline writes itself.

Used by a family's own converter (one that writes its graph node by node) and the
preprocessing graphs (stages/preprocess_graph/). Names are given by the caller, scoped like
"blur/row/Add", so a graph reads like the code that built it and its bytes do not depend on
the order in which helper objects were created.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
    """Collects nodes and initializers; every tensor and node gets a readable, scoped name."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value: np.ndarray) -> str:
        if name in self._names:
            raise AssertionError(f"duplicate tensor name {name}")
        self._names.add(name)
        array = np.asarray(value)
        # np.ascontiguousarray makes a 0-d array 1-d; a scalar must stay rank 0 (Range, Clip, CumSum's axis)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array) if array.ndim else array, name))
        return name

    def ints(self, name: str, values: Sequence[int]) -> str:
        return self.const(name, np.array(values, dtype=np.int64))

    def op(self, op_type: str, inputs: Sequence[str], name: str, output: str | None = None, **attrs) -> str:
        """Add one node named `name`; its single output is `output` or `<name>:0`."""
        out = output or f"{name}:0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def ops(self, op_type: str, inputs: Sequence[str], name: str, outputs: int, **attrs) -> list[str]:
        """Add one node with `outputs` outputs, named `<name>:0`, `<name>:1`, ..."""
        outs = [f"{name}:{index}" for index in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=name, **attrs))
        return outs

    def reduce_max(self, x: str, axes: Sequence[int], name: str) -> str:
        """ReduceMax with keepdims=1; opset 18 moved `axes` from an attribute to an input."""
        if self.opset >= 18:
            return self.op("ReduceMax", [x, self.ints(f"{name}/axes", axes)], name, keepdims=1)
        return self.op("ReduceMax", [x], name, axes=list(axes), keepdims=1)

    def scalar(self, name: str, value: float | int, dtype: type) -> str:
        """A 0-d constant of `dtype` (np.float64, np.int64, np.uint8, ...)."""
        return self.const(name, np.array(value, dtype=dtype))
