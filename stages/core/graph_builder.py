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

    def branch(self) -> GraphBuilder:
        """A builder for a subgraph of this graph (an `If` branch): its own nodes and constants
        (the subgraph's initializers: `onnx.compose.add_prefix` renames a subgraph's reads of the
        outer graph's node outputs, not of its initializers), names unique across both. So a
        branch reads only node outputs of the graphs around it, never their constants (the
        renamed graph would then read a missing name, which onnx.checker refuses)."""
        sub = GraphBuilder(self.opset)
        sub._names = self._names
        return sub

    def if_else(
        self,
        condition: str,
        then: tuple[GraphBuilder, str],
        otherwise: tuple[GraphBuilder, str],
        elem_type: int,
        name: str,
    ) -> str:
        """An `If` node: the output `then[1]` of the nodes of branch builder `then[0]` where the bool
        scalar `condition` holds, else `otherwise[1]`; only the branch taken runs. `elem_type` is
        both outputs' element type (an onnx.TensorProto code)."""
        branches = {}
        for key, (builder, output) in (("then_branch", then), ("else_branch", otherwise)):
            value = helper.make_tensor_value_info(output, elem_type, None)
            branches[key] = helper.make_graph(builder.nodes, f"{name}/{key}", [], [value], builder.initializers)
        return self.op("If", [condition], name, **branches)

    def scalar(self, name: str, value: float | int, dtype: type) -> str:
        """A 0-d constant of `dtype` (np.float64, np.int64, np.uint8, ...)."""
        return self.const(name, np.array(value, dtype=dtype))
