"""The four faster variants of an fp32 ONNX model, each a pure function of it and params
(why each one's bytes cannot depend on the CPU: the package docstring, stages/speedups/__init__.py).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stages.core import onnx_graph
from stages.core.errors import PipelineError

Arrays = dict[str, np.ndarray]
log = logging.getLogger(__name__)
# ORT 1.31.1 BASIC-level optimizers that compute new tensor values from constants (names as the
# library registers them; `disabled_optimizers` takes transformer and rewrite-rule names).
ARITHMETIC_OPTIMIZERS = (
    "ConstantFolding",
    "ConvBNFusion",
    "ConvAddFusion",
    "ConvMulFusion",
    "MatMul_BatchNormalization_Fusion",
    "MatMulScaleFusion",
    "DivMulFusion",
)


def _ort():
    import onnxruntime as ort

    return ort


# ---- optimized ----------------------------------------------------------------------------------


def build_optimized(fp32: onnx.ModelProto, disabled: Sequence[str] = ARITHMETIC_OPTIMIZERS) -> onnx.ModelProto:
    """ORT_ENABLE_BASIC rewrites saved offline, the optimizers in `disabled` off."""
    ort = _ort()
    with tempfile.TemporaryDirectory() as work:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(work) / "optimized.onnx")
        ort.InferenceSession(
            onnx_graph.serialize(fp32), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled)
        )
        return onnx.load(options.optimized_model_filepath)


def check_optimized(model: onnx.ModelProto, fp32: onnx.ModelProto, label: str) -> dict[str, int]:
    """Every float constant of `model` is a constant of `fp32` as stored, reshaped or transposed."""
    from stages.core.weight_trace import WeightTracer, graph_constants, summary

    tracer = WeightTracer(dict(graph_constants(fp32)))
    return summary(tracer.trace_model(model, label))


# ---- fp16, int8 dynamic -------------------------------------------------------------------------


def build_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's converter appends the input Casts at the end of the node list; the nodes are then put
    back in dependency order, which ONNX requires."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.ModelProto.FromString(onnx_graph.serialize(fp32)), keep_io_types=True)
    onnx_graph.sort_topologically(model.graph)
    return model


def build_int8_dynamic(fp32: onnx.ModelProto, op_types: Sequence[str], per_channel: bool) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "int8_dynamic.onnx"
        quantize_dynamic(
            fp32, out, op_types_to_quantize=list(op_types), per_channel=per_channel, weight_type=QuantType.QInt8
        )
        return onnx.load(out)


# ---- int8 static: exact rewrites ----------------------------------------------------------------


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _subpixel_weights(w: np.ndarray) -> np.ndarray:
    """ConvTranspose weights (C, O, 3, 3), stride 2, pads (0, 0, 1, 1) -> Conv weights (4*O, C, 2, 2).

    Output pixel (2p + a, 2q + b) of the ConvTranspose sums x[h, v] * w[c, o, i, j] over
    2h + i = 2p + a, 2v + j = 2q + b. On x padded by one row and column before, a 2x2 Conv tap
    (t, u) reads x[p + t - 1, q + u - 1]: phase a = 0 takes kernel row i = 2 at t = 0 and i = 0 at
    t = 1; phase a = 1 takes i = 1 at t = 1 and nothing at t = 0 (an exact zero). Same for columns.
    DepthToSpace (DCR) puts channel (a * 2 + b) * O + o at (2p + a, 2q + b).
    """
    taps = {(0, 0): 2, (0, 1): 0, (1, 1): 1}  # (phase, conv tap) -> ConvTranspose kernel index
    channels, outputs = w.shape[:2]
    out = np.zeros((2, 2, outputs, channels, 2, 2), dtype=w.dtype)
    for (a, t), i in taps.items():
        for (b, u), j in taps.items():
            out[a, b, :, :, t, u] = w[:, :, i, j].T
    result = out.reshape(4 * outputs, channels, 2, 2)
    # exactness: every element of w appears once, bit for bit; every other element is +0.0
    moved = sorted(result.view(np.uint32).ravel().tolist())
    expected = sorted(w.view(np.uint32).ravel().tolist() + [0] * (result.size - w.size))
    if moved != expected:
        raise PipelineError("int8_static: the ConvTranspose rewrite is not an exact rearrangement (a bug)")
    return result


def exact_rewrites(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """The graph with each stride-2 3x3 ConvTranspose (pads 0,0,1,1) replaced by Conv + DepthToSpace."""
    model = onnx.ModelProto.FromString(onnx_graph.serialize(model))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, done = [], []
    for node in graph.node:
        attrs = _attributes(node)
        weight = initializers.get(node.input[1]) if node.op_type == "ConvTranspose" and len(node.input) > 1 else None
        if (
            weight is None
            or list(attrs.get("strides", [])) != [2, 2]
            or list(attrs.get("kernel_shape", [])) != [3, 3]
            or list(attrs.get("pads", [])) != [0, 0, 1, 1]
            or attrs.get("group", 1) != 1
            or list(attrs.get("dilations", [1, 1])) != [1, 1]
            or attrs.get("output_padding")
            or attrs.get("output_shape")
            or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        conv_weight = f"{node.name}/subpixel_weight"
        graph.initializer.append(numpy_helper.from_array(_subpixel_weights(w), conv_weight))
        inputs = [node.input[0], conv_weight]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(initializers[node.input[2]])
            graph.initializer.append(numpy_helper.from_array(np.tile(bias, 4), f"{node.name}/subpixel_bias"))
            inputs.append(f"{node.name}/subpixel_bias")
        phases = f"{node.name}/subpixel:0"
        nodes.append(
            helper.make_node(
                "Conv", inputs, [phases], name=f"{node.name}/subpixel", kernel_shape=[2, 2], pads=[1, 1, 0, 0]
            )
        )
        nodes.append(
            helper.make_node(
                "DepthToSpace", [phases], list(node.output), name=f"{node.name}/depth_to_space", blocksize=2, mode="DCR"
            )
        )
        done.append(node.name)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model, done


# ---- int8 static: float64 ranges ----------------------------------------------------------------


def float64_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy computing in float64: float32 initializers, constants, casts, inputs and outputs widened."""
    model = onnx.ModelProto.FromString(onnx_graph.serialize(model))
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[index].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name)
            )
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
            elif (
                node.op_type == "Constant" and attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT
            ):
                attribute.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float64), attribute.t.name)
                )
    del graph.value_info[:]
    return model


def _float64_kernels() -> list[type]:
    """ReferenceEvaluator's Conv and MaxPool for the plain 2-D cases, done as `stages.core.float64_layers`
    (im2col + one matrix product; a strided window maximum): the reference's own loops take minutes on a
    224 x 224 page. Anything else falls back to the reference implementation. The evaluator matches a
    new op by its class name, hence the names."""
    from onnx.reference.ops.op_conv import Conv as ReferenceConv
    from onnx.reference.ops.op_max_pool import MaxPool as ReferenceMaxPool

    from stages.core.float64_layers import conv2d, max_pool

    def square(values) -> bool:
        return values is None or len(set(values)) == 1

    class Conv(ReferenceConv):
        op_domain = ""

        def _run(
            self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None, pads=None, strides=None
        ):
            plain = (
                X.ndim == 4
                and (group or 1) == 1
                and list(dilations or [1, 1]) == [1, 1]
                and auto_pad in (None, "NOTSET", b"NOTSET")
                and square(strides)
                and W.shape[2] == W.shape[3]
            )
            if not plain:
                return super()._run(X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
            top, left, bottom, right = pads or [0, 0, 0, 0]
            padded = np.pad(X, ((0, 0), (0, 0), (top, bottom), (left, right)))
            out = np.stack([conv2d(image, W, (strides or [1])[0], 0) for image in padded])
            if B is not None:
                out = out + B.reshape(1, -1, 1, 1)
            return (out.astype(X.dtype),)

    class MaxPool(ReferenceMaxPool):
        op_domain = ""

        def _run(
            self,
            x,
            auto_pad=None,
            ceil_mode=None,
            dilations=None,
            kernel_shape=None,
            pads=None,
            storage_order=None,
            strides=None,
        ):
            plain = (
                x.ndim == 4
                and not ceil_mode
                and list(dilations or [1, 1]) == [1, 1]
                and auto_pad in (None, "NOTSET", b"NOTSET")
                and not any(pads or [])
                and square(kernel_shape)
                and square(strides)
                and len(self.output) == 1
            )
            if not plain:
                return super()._run(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides)
            size = kernel_shape[0]
            return (
                np.stack([max_pool(image, size, (strides or [1])[0], "int8_static ranges") for image in x]).astype(
                    x.dtype
                ),
            )  # ONNX: strides default 1

    return [Conv, MaxPool]


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 tensors of a graph: float inputs and every node output of float type."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
    }
    names = [v.name for v in model.graph.input if types.get(v.name) == TensorProto.FLOAT]
    names += [out for node in model.graph.node for out in node.output if out and types.get(out) == TensorProto.FLOAT]
    return names


def float64_ranges(model: onnx.ModelProto, feeds: Sequence[Arrays]) -> dict[str, tuple[float, float]]:
    """(min, max) over the calibration inputs of every float tensor, computed in float64."""
    from onnx.reference import ReferenceEvaluator

    names = float_tensors(model)
    evaluator = ReferenceEvaluator(float64_graph(model), new_ops=_float64_kernels())
    ranges: dict[str, tuple[float, float]] = {}
    for inputs in feeds:
        wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
        results = dict(zip(names, evaluator.run(names, wide)))
        for name, values in results.items():
            low, high = float(np.min(values)), float(np.max(values))
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))
    return ranges


def float32_extremes(model: onnx.ModelProto, feeds: Sequence[Arrays]) -> dict[str, np.ndarray]:
    """Per calibration input, (min, max) of every float tensor, by ONNX Runtime in float32 with graph
    optimizations off (every tensor computed as the graph writes it): name -> array (inputs, 2)."""
    ort = _ort()
    names = float_tensors(model)
    exposed = onnx.ModelProto.FromString(onnx_graph.serialize(model))
    outputs = {value.name for value in exposed.graph.output}
    exposed.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names if name not in outputs
    )
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(onnx_graph.serialize(exposed), options, providers=["CPUExecutionProvider"])
    extremes = {name: np.empty((len(feeds), 2)) for name in names}
    for index, inputs in enumerate(feeds):
        for name, values in zip(names, session.run(names, dict(inputs))):
            extremes[name][index] = float(np.min(values)), float(np.max(values))
    return extremes


def outward(value: float, bits: int, up: bool) -> float:
    """`value` rounded away from the inside of a range to `bits` significant bits (0 stays 0).

    The grid step near v is 2**(exponent(v) - bits); a float64 value whose last bits differ on
    another machine lands on the same grid point unless it straddles one exactly."""
    if value == 0.0 or not math.isfinite(value):
        return value
    mantissa, exponent = math.frexp(abs(value))  # abs(value) = mantissa * 2**exponent, 0.5 <= mantissa < 1
    scaled = math.ldexp(mantissa, bits)  # exact
    away = (value > 0) == up
    steps = math.ceil(scaled) if away else math.floor(scaled)
    return math.copysign(math.ldexp(steps, exponent - bits), value)


# How far a float32 min or max of a tensor may lie from exact arithmetic, on any CPU, as a fraction
# of the tensor's largest magnitude. A bound measured, not derived: against float64 the gap is at
# most 2.5e-7 on the cleaning graph, ~500x below this, and tests/test_variants.py checks it stays
# 100x below on every run (a CPU whose float32 results moved by more would need a larger margin).
FLOAT32_MARGIN = 2.0**-13


def settled(value: float, scale: float, bits: int, up: bool) -> bool:
    """True when every value within FLOAT32_MARGIN * scale of `value` rounds outward (`outward`) to
    the same grid point: then no CPU's float32 result, nor the exact value, can round elsewhere.
    An exact zero is settled: ReLU, max pooling and padding give exact zeros in any arithmetic;
    a zero made by cancellation would stand for a value below float32's resolution of the
    tensor's scale, which the quantizer's scale (max - min) / 255 in float32 cannot see."""
    if value == 0.0:
        return True
    margin = FLOAT32_MARGIN * scale
    below, above = value - margin, value + margin
    return (below > 0) == (above > 0) and outward(below, bits, up) == outward(above, bits, up)


def int8_static_ranges(
    rewritten: onnx.ModelProto, calibration: Sequence[Arrays], bits: int
) -> tuple[dict[str, tuple[float, float]], dict[str, int]]:
    """The activation ranges of `rewritten` (after `exact_rewrites`) over the calibration inputs, each
    rounded outward to `bits` significant bits, and how they were settled.

    Every tensor's min and max come from ONNX Runtime in float32 (`float32_extremes`), fast. A
    rounded endpoint is kept when it is `settled` (no value within the margin rounds elsewhere);
    otherwise the exact value decides, computed in float64 (`float64_ranges`, as the rest would have
    been) on the only inputs that can hold the extreme: those whose float32 value lies within twice
    the margin of it. The result equals the float64 computation over every input, at a fraction
    of its cost (on the cleaning model 1.5 s against 55 s)."""
    extremes = float32_extremes(rewritten, calibration)
    ranges: dict[str, tuple[float, float]] = {}
    unsettled: dict[tuple[str, int], set[int]] = {}
    for name, per_input in extremes.items():
        if not np.isfinite(per_input).all():
            raise PipelineError(
                f"int8_static: tensor {name!r} is not finite on a calibration input; its range has no meaning"
            )
        low, high = float(per_input[:, 0].min()), float(per_input[:, 1].max())
        scale = max(abs(low), abs(high))
        ranges[name] = (outward(low, bits, up=False), outward(high, bits, up=True))
        for side, value in ((0, low), (1, high)):
            if not settled(value, scale, bits, up=side == 1):
                near = np.abs(per_input[:, side] - value) <= 2 * FLOAT32_MARGIN * scale
                unsettled[(name, side)] = {int(i) for i in np.flatnonzero(near)}
    inputs = sorted(set().union(*unsettled.values())) if unsettled else []
    if inputs:
        exact = float64_ranges(rewritten, [calibration[i] for i in inputs])
        for (name, side), _near in unsettled.items():
            bounds = list(ranges[name])
            bounds[side] = outward(exact[name][side], bits, up=side == 1)
            ranges[name] = (bounds[0], bounds[1])
    return ranges, {"tensors": len(ranges), "endpoints_in_float64": len(unsettled), "float64_inputs": len(inputs)}


def quantize_qdq(
    rewritten: onnx.ModelProto,
    ranges: dict[str, tuple[float, float]],
    per_channel: bool,
    keep_float: Sequence[str] = (),
) -> onnx.ModelProto:
    """ORT's QDQ static quantizer (uint8 activations, int8 weights) given `ranges` through its
    calibration cache, so it runs no inference; the nodes named in `keep_float` stay float32."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    data = TensorsData(
        CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in sorted(ranges.items())}
    )
    with tempfile.TemporaryDirectory() as work:
        cache, out = Path(work) / "ranges.json", Path(work) / "int8_static.onnx"
        save_tensors_data(data, cache)
        quantize_static(
            rewritten,
            out,
            None,
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            calibration_cache_path=cache,
            nodes_to_exclude=list(keep_float),
        )
        return onnx.load(out)


def build_int8_static(
    fp32: onnx.ModelProto, calibration: Sequence[Arrays], bits: int, per_channel: bool
) -> tuple[onnx.ModelProto, dict]:
    """QDQ static int8 of the exactly rewritten graph, ranges from `int8_static_ranges`. The recipe
    holds nothing that depends on the CPU (how many ends float32 settled does: it is only logged)."""
    rewritten, replaced = exact_rewrites(fp32)
    ranges, settling = int8_static_ranges(rewritten, calibration, bits)
    log.info(
        "int8_static ranges: %d tensors, %d of their %d ends settled in float32, the rest in float64 on %d inputs",
        settling["tensors"],
        2 * settling["tensors"] - settling["endpoints_in_float64"],
        2 * settling["tensors"],
        settling["float64_inputs"],
    )
    return quantize_qdq(rewritten, ranges, per_channel), {"rewritten": replaced, "ranged_tensors": len(ranges)}
