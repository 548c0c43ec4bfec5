"""Converter: a checked sigver_wiwd Lasagne network -> an ONNX graph built with onnx.helper.

Layout facts (docs/MODEL_FACTS.md, "Lasagne SigNet pickles") and how each becomes ONNX:
- conv W (out, in, kh, kw) is used as stored: Lasagne's flip_filters=False is cross-correlation,
  which is what ONNX Conv computes; `pad` becomes symmetric `pads`; no bias.
- batch norm at inference is (x - mean) * (gamma * inv_std) + beta: Sub, Mul, Add with the
  vectors broadcast per channel (shape (C, 1, 1) after a conv). gamma * inv_std is one float32
  product, as Theano formed it; ONNX BatchNormalization is not used because it would need a
  variance and an epsilon the pickle does not have.
- max pooling: MaxPool with ceil_mode 0 (Lasagne ignore_border=True drops incomplete windows).
- SigNet flattens (C, H, W) row-major: Flatten(axis=1) on NCHW gives index c*H*W + h*W + w.
- dense W is stored (in, out), transposed against torch.nn.Linear: MatMul(x, W) as stored.
- the "kaiming" pyramid: ONNX pooling attributes are static but the bins depend on the
  feature map size, so each bin is a Slice whose bounds are computed from the runtime shape
  (Shape -> Gather -> Mul/Add/Div in int64) and a ReduceMax; see `spatial_pyramid`.
- SPP graphs refuse an image smaller than `spp_min_input_size` (see `input_size_guard`):
  ONNX Runtime alone would compute garbage for it rather than fail.

Graph: input float32 [batch, 1, 150, 220] (SigNet) or [batch, 1, height, width] (SPP), values
0..255 (ink bright, background 0, NOT divided by 255); outputs `fc1` and `fc2`, float32
[batch, 2048], each after its ReLU. The patch step renames and reshapes I/O from params.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from stages.core.errors import PipelineError
from stages.core.graph_builder import GraphBuilder
from stages.families.lasagne_signet.layout import (
    Architecture,
    Conv,
    Dense,
    LayerWeights,
    Pool,
    SpatialPyramid,
    spp_min_input_size,
)

PRODUCER = "onnx"  # built with onnx.helper; patch pins producer_version to the onnx package


def batch_norm_relu(g: GraphBuilder, x: str, weights: LayerWeights, spatial: bool, output: str | None = None) -> str:
    """(x - mean) * (gamma * inv_std) + beta, then ReLU; vectors as (C, 1, 1) after a conv."""
    shape = (-1, 1, 1) if spatial else (-1,)
    scale = (weights.gamma * weights.inv_std).astype(np.float32)  # one float32 product, as Theano
    scope = weights.name
    x = g.op("Sub", [x, g.const(f"{scope}/bn/mean", weights.mean.reshape(shape))], f"{scope}/bn/Sub")
    x = g.op("Mul", [x, g.const(f"{scope}/bn/scale", scale.reshape(shape))], f"{scope}/bn/Mul")
    x = g.op("Add", [x, g.const(f"{scope}/bn/beta", weights.beta.reshape(shape))], f"{scope}/bn/Add")
    return g.op("Relu", [x], f"{scope}/Relu", output=output)


def spatial_pyramid(g: GraphBuilder, x: str, layer: SpatialPyramid) -> str:
    """The "kaiming" pyramid on x [N, C, h, w] with h, w known only at run time -> [N, C * bins].

    Bin `row` of level n spans rows floor(row * h / n) .. ceil((row + 1) * h / n) (end
    exclusive), the same for columns. With non-negative int64 operands, ONNX Div truncates,
    i.e. floors, so start = (row * h) / n and end = ((row + 1) * h + n - 1) / n exactly (no
    float rounding at any size). A bin is never empty for h, w >= 1 (see
    lasagne_pickle.spp_min_input_size). Each bin: Slice on axes (2, 3) -> ReduceMax -> [N, C, 1, 1];
    the bins are concatenated on axis 3 in level order, row-major -> [N, C, 1, bins], and
    Flatten(axis=1) gives index c * bins + bin, the order of Lasagne's flattened (N, C, bins).
    """
    scope = layer.name
    shape = g.op("Shape", [x], f"{scope}/Shape")
    height = g.op("Gather", [shape, g.ints(f"{scope}/h_index", [2])], f"{scope}/height", axis=0)  # [1]
    width = g.op("Gather", [shape, g.ints(f"{scope}/w_index", [3])], f"{scope}/width", axis=0)  # [1]
    axes = g.ints(f"{scope}/axes", [2, 3])
    bins = []
    for n in layer.levels:
        level = f"{scope}/level{n}"
        divisor = g.ints(f"{level}/n", [n])
        round_up = g.ints(f"{level}/n_minus_1", [n - 1])
        bounds = {}
        for axis_name, size in (("row", height), ("col", width)):
            for index in range(n):
                where = f"{level}/{axis_name}{index}"
                start = g.op(
                    "Div",
                    [g.op("Mul", [size, g.ints(f"{where}/i", [index])], f"{where}/start_Mul"), divisor],
                    f"{where}/start",
                )
                grown = g.op("Mul", [size, g.ints(f"{where}/i_plus_1", [index + 1])], f"{where}/end_Mul")
                end = g.op("Div", [g.op("Add", [grown, round_up], f"{where}/end_Add"), divisor], f"{where}/end")
                bounds[axis_name, index] = (start, end)
        for row in range(n):
            for col in range(n):
                where = f"{level}/bin_{row}_{col}"
                (top, bottom), (left, right) = bounds["row", row], bounds["col", col]
                starts = g.op("Concat", [top, left], f"{where}/starts", axis=0)
                ends = g.op("Concat", [bottom, right], f"{where}/ends", axis=0)
                region = g.op("Slice", [x, starts, ends, axes], f"{where}/Slice")
                bins.append(g.reduce_max(region, [2, 3], f"{where}/ReduceMax"))
    pooled = g.op("Concat", bins, f"{scope}/Concat", axis=3)  # [N, C, 1, bins]
    return g.op("Flatten", [pooled], f"{scope}/Flatten", axis=1)


def input_size_guard(g: GraphBuilder, image: str, min_rows: int, min_cols: int) -> str:
    """A float32 [1] tensor equal to 1.0 that ONNX Runtime cannot compute for a too-small image.

    Why: ORT's MaxPool rounds its output size toward zero, so an input shorter than a pool
    window gives one output row instead of an error, and a too-small image would silently
    produce meaningless features. Here deficit = max(min_rows - H, 0) + max(min_cols - W, 0),
    and a one-element tensor is reshaped to [1 + deficit]: for a valid image that is [1] (a
    no-op), otherwise ORT stops with a Reshape error naming this node's scope,
    `input_smaller_than_<rows>x<cols>`. The graph multiplies the pyramid by the result
    (x * 1.0 == x exactly), so valid inputs compute exactly what they would without it.
    """
    scope = f"input_smaller_than_{min_rows}x{min_cols}"
    shape = g.op("Shape", [image], f"{scope}/Shape")
    dims = g.op("Gather", [shape, g.ints(f"{scope}/hw_index", [2, 3])], f"{scope}/Gather", axis=0)
    short = g.op("Sub", [g.ints(f"{scope}/minimum", [min_rows, min_cols]), dims], f"{scope}/Sub")
    deficits = g.op("Max", [short, g.ints(f"{scope}/zero", [0])], f"{scope}/Max")
    rows_short = g.op("Gather", [deficits, g.ints(f"{scope}/row_index", [0])], f"{scope}/rows_short", axis=0)
    cols_short = g.op("Gather", [deficits, g.ints(f"{scope}/col_index", [1])], f"{scope}/cols_short", axis=0)
    total = g.op("Add", [rows_short, cols_short], f"{scope}/deficit")
    size = g.op("Add", [total, g.ints(f"{scope}/one", [1])], f"{scope}/size")
    one = g.const(f"{scope}/one_float", np.ones(1, dtype=np.float32))
    return g.op("Reshape", [one, size], f"{scope}/Reshape")


def _input_dims(arch: Architecture) -> list[int | str]:
    if arch.fixed_input is not None:
        return ["batch", 1, *arch.fixed_input]
    return ["batch", 1, "height", "width"]


def build_model(
    arch: Architecture,
    weights: Sequence[LayerWeights],
    *,
    opset: int,
    input_name: str = "input",
) -> onnx.ModelProto:
    """The whole network as an ONNX model; outputs are named after the dense layers (fc1, fc2)."""
    by_name = {w.name: w for w in weights}
    expected = [layer.name for layer in arch.weighted]
    if list(by_name) != expected:
        raise PipelineError(f"converter: weights for layers {list(by_name)}, expected {expected}")
    g = GraphBuilder(opset)
    x = input_name
    outputs = []
    spatial = True  # x is still an NCHW map (no pyramid has flattened it)
    for layer in arch.layers:
        if isinstance(layer, Conv):
            w = by_name[layer.name]
            x = g.op(
                "Conv",
                [x, g.const(f"{layer.name}/W", w.W)],
                f"{layer.name}/Conv",
                kernel_shape=[layer.size, layer.size],
                strides=[layer.stride, layer.stride],
                pads=[layer.pad] * 4,
                dilations=[1, 1],
                group=1,
            )
            x = batch_norm_relu(g, x, w, spatial=True)
        elif isinstance(layer, Pool):
            x = g.op(
                "MaxPool",
                [x],
                f"{layer.name}/MaxPool",
                kernel_shape=[layer.size, layer.size],
                strides=[layer.stride, layer.stride],
                pads=[0, 0, 0, 0],
                ceil_mode=0,
            )
        elif isinstance(layer, SpatialPyramid):
            x = spatial_pyramid(g, x, layer)
            guard = input_size_guard(g, input_name, *spp_min_input_size(arch.name))
            x = g.op("Mul", [x, guard], f"{layer.name}/checked")
            spatial = False
        elif isinstance(layer, Dense):
            if spatial:  # SigNet: the last pool's (C, H, W) map enters fc1 flattened
                x = g.op("Flatten", [x], f"{layer.name}/Flatten", axis=1)
                spatial = False
            w = by_name[layer.name]
            x = g.op("MatMul", [x, g.const(f"{layer.name}/W", w.W)], f"{layer.name}/MatMul")
            x = batch_norm_relu(g, x, w, spatial=False, output=layer.name)
            outputs.append(layer.name)
    graph = helper.make_graph(
        g.nodes,
        arch.name,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, _input_dims(arch))],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", 2048]) for name in outputs],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER)
    # The IR version the opset was released with, so any runtime that knows the opset loads it.
    model.ir_version = min(onnx.IR_VERSION, _ir_version_for(opset))
    return model


def spp_model(channels: int, levels: Sequence[int] = (4, 2, 1), opset: int = 17) -> onnx.ModelProto:
    """The pyramid alone: float32 [N, channels, h, w] -> [N, channels * bins], for proofs and tests."""
    g = GraphBuilder(opset)
    out = spatial_pyramid(g, "x", SpatialPyramid("spp", tuple(levels)))
    bins = sum(n * n for n in levels)
    graph = helper.make_graph(
        g.nodes,
        "spp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", channels, "height", "width"])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", channels * bins])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER)
    model.ir_version = min(onnx.IR_VERSION, _ir_version_for(opset))
    return model


def _ir_version_for(opset: int) -> int:
    for entry in helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ml opset[, training])
        if entry[2] == opset:
            return entry[1]
    return onnx.IR_VERSION
