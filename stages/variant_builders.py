"""Faster variants of a published model: each a pure function of the fp32 `model.onnx` and params.

Four variants (params `models.<name>.variants`, each with its own tolerances):

- `optimized`: ONNX Runtime's provider-independent graph rewrites (ORT_ENABLE_BASIC) saved offline
  (`optimized_model_filepath`), with every BASIC-level optimizer that computes new values from
  constants disabled (`ARITHMETIC_OPTIMIZERS`: ConstantFolding, ConvBNFusion, ConvAddFusion,
  ConvMulFusion, MatMul_BatchNormalization_Fusion, MatMulScaleFusion, DivMulFusion).
  What is left only rewires, renames or drops nodes (Identity, Dropout, Unsqueeze, Cast
  eliminations...). Why its bytes are CPU-independent: no arithmetic is done on a weight, and
  `check_optimized` proves it on every build: every float constant of the result is traced,
  bit for bit, to a constant of the fp32 graph (copy, reshape or transpose) with
  `stages.weight_trace`, otherwise nothing is published.
- `fp16`: `onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)`.
  CPU-independent: each float32 weight becomes float16 by numpy's float32 -> float16 cast
  (round to nearest even, after clipping to the float16 range), which is correctly rounded
  whether numpy uses its software loop or the F16C instruction; nothing else is computed.
- `int8_dynamic`: `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations scaled
  at run time) of the op types params name (MatMul/Gemm by default: ORT's ConvInteger has no
  fast CPU kernel). CPU-independent: per weight tensor (or channel) the quantizer takes min and
  max (exact), computes scale = (max - min) / 255 in float64 and the zero point with single
  IEEE operations, then `round(w / scale) + zero_point` element-wise in numpy: every step is one
  correctly rounded IEEE 754 operation per element (division, rint, add), identical with any
  SIMD width; there is no reduction whose order could change (min/max are exact).
- `int8_static`: QDQ static quantization (uint8 activations, int8 weights, per channel by
  default) whose activation ranges no CPU changes. First exact rewrites (`exact_rewrites`): a
  stride-2 3x3 ConvTranspose (the cleaning decoder; ORT has no quantized ConvTranspose kernel)
  becomes a 2x2 Conv with four times the output channels followed by DepthToSpace, whose weights
  are the ConvTranspose's elements moved into place plus exact zeros (checked element by element
  in `_subpixel_weights`). Then the range of every float tensor is measured in float64 on drawn
  calibration signatures (integer-only drawing, `stages.vectors.drawn_page`, through the
  model's own preprocessing) by `onnx.reference.ReferenceEvaluator` on a float64 copy of the
  graph, its convolutions done by `stages.oracle.conv2d` (im2col + one float64 matrix product),
  all under the pinned kernels of the vectors stage (`stages.vectors.PINNED_KERNELS`: OpenBLAS
  Prescott, numpy's baseline loops, re-exec'd by `stages.variants`), so every machine performs
  the same IEEE operations (the argument of `stages/vectors.py`). Each range is then rounded
  OUTWARD to `range_bits` significant bits (`outward`), so a last-bit difference would have to
  straddle a grid point to move it. The ranges go to ORT's quantizer through its calibration
  cache file (`quantize_static(calibration_cache_path=...)`, which then runs no inference), and
  the quantizer's own arithmetic (scales, zero points, weight and bias rounding) is element-wise
  numpy, CPU-independent as for `int8_dynamic`.

Each variant is validated against ONNX Runtime running the fp32 model on the validation inputs of
the validate stage (drawn signatures and the user's `validation.image_dirs`): max |variant - fp32|
per output, the minimum cosine (per row of an embedding output; per sample otherwise) and the
decision agreement (the sign of a decision logit). Outside its tolerances a variant is not
published and the reason is recorded. The figures (and speed, ms per call) are CPU-dependent:
they go to `models/<name>/variants.json`, a top-level DVC metric outside dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stages import onnx_tools
from stages.config import ModelSpec, VariantTolerance
from stages.errors import PipelineError

Arrays = dict[str, np.ndarray]
SPP_STROKE_SIZE = (150, 220)  # SigNet-SPP calibration strokes: the fixed SigNets' input size
VARIANTS = ("optimized", "fp16", "int8_dynamic", "int8_static")
# ORT 1.31.1 BASIC-level optimizers that compute new tensor values from constants (names as the
# library registers them; `disabled_optimizers` takes transformer and rewrite-rule names).
ARITHMETIC_OPTIMIZERS = (
    "ConstantFolding", "ConvBNFusion", "ConvAddFusion", "ConvMulFusion",
    "MatMul_BatchNormalization_Fusion", "MatMulScaleFusion", "DivMulFusion",
)


def _ort():
    import onnxruntime as ort

    return ort


def session(model: bytes, threads: int | None = None):
    """A CPU session of serialized ONNX bytes (ORT_ENABLE_ALL, as users load models)."""
    ort = _ort()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def finish(model: onnx.ModelProto, fp32: onnx.ModelProto, variant: str, recipe: dict) -> bytes:
    """The variant's bytes: the fp32 file's metadata (lineage) plus what it is a variant of and how."""
    entries = {
        **onnx_tools.metadata_of(fp32),
        "variant": variant,
        "variant_of_sha256": hashlib.sha256(onnx_tools.serialize(fp32)).hexdigest(),
        "variant_recipe": json.dumps(recipe, sort_keys=True),
    }
    onnx_tools.set_metadata(model, entries, fp32.model_version, fp32.doc_string)
    return onnx_tools.serialize(model)


# ---- optimized ----------------------------------------------------------------------------------


def build_optimized(fp32: onnx.ModelProto, disabled: Sequence[str] = ARITHMETIC_OPTIMIZERS) -> onnx.ModelProto:
    """ORT_ENABLE_BASIC rewrites saved offline, the optimizers in `disabled` off."""
    ort = _ort()
    with tempfile.TemporaryDirectory() as work:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(work) / "optimized.onnx")
        ort.InferenceSession(onnx_tools.serialize(fp32), options, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))
        return onnx.load(options.optimized_model_filepath)


def check_optimized(model: onnx.ModelProto, fp32: onnx.ModelProto, label: str) -> dict[str, int]:
    """Every float constant of `model` is a constant of `fp32` as stored, reshaped or transposed."""
    from stages.weight_trace import WeightTracer, graph_constants, summary

    tracer = WeightTracer(dict(graph_constants(fp32)))
    return summary(tracer.trace_model(model, label))


# ---- fp16, int8 dynamic -------------------------------------------------------------------------


def build_fp16(fp32: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(onnx.ModelProto.FromString(onnx_tools.serialize(fp32)), keep_io_types=True)


def build_int8_dynamic(fp32: onnx.ModelProto, op_types: Sequence[str], per_channel: bool) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "int8_dynamic.onnx"
        quantize_dynamic(fp32, out, op_types_to_quantize=list(op_types), per_channel=per_channel, weight_type=QuantType.QInt8)
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
    model = onnx.ModelProto.FromString(onnx_tools.serialize(model))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, done = [], []
    for node in graph.node:
        attrs = _attributes(node)
        weight = initializers.get(node.input[1]) if node.op_type == "ConvTranspose" and len(node.input) > 1 else None
        if (
            weight is None or list(attrs.get("strides", [])) != [2, 2] or list(attrs.get("kernel_shape", [])) != [3, 3]
            or list(attrs.get("pads", [])) != [0, 0, 1, 1] or attrs.get("group", 1) != 1
            or list(attrs.get("dilations", [1, 1])) != [1, 1] or attrs.get("output_padding") or attrs.get("output_shape")
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
        nodes.append(helper.make_node("Conv", inputs, [phases], name=f"{node.name}/subpixel", kernel_shape=[2, 2], pads=[1, 1, 0, 0]))
        nodes.append(helper.make_node("DepthToSpace", [phases], list(node.output), name=f"{node.name}/depth_to_space", blocksize=2, mode="DCR"))
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
    model = onnx.ModelProto.FromString(onnx_tools.serialize(model))
    graph = model.graph
    for index, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float64), init.name))
    for value in (*graph.input, *graph.output):
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.DOUBLE
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                attribute.i = TensorProto.DOUBLE
            elif node.op_type == "Constant" and attribute.name == "value" and attribute.t.data_type == TensorProto.FLOAT:
                attribute.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attribute.t).astype(np.float64), attribute.t.name))
    del graph.value_info[:]
    return model


def _float64_conv():
    """ReferenceEvaluator's Conv, done as `stages.oracle.conv2d` (im2col + one matrix product) for
    the plain case; anything else falls back to the reference implementation."""
    from onnx.reference.ops.op_conv import Conv

    from stages.oracle import conv2d

    class Float64Conv(Conv):
        op_domain = ""

        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None, pads=None, strides=None):
            strides = list(strides or [1, 1])
            plain = (
                X.ndim == 4 and (group or 1) == 1 and list(dilations or [1, 1]) == [1, 1] and auto_pad in (None, "NOTSET", b"NOTSET")
                and strides[0] == strides[1] and W.shape[2] == W.shape[3]
            )
            if not plain:
                return super()._run(X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
            top, left, bottom, right = pads or [0, 0, 0, 0]
            padded = np.pad(X, ((0, 0), (0, 0), (top, bottom), (left, right)))
            out = np.stack([conv2d(image, W, strides[0], 0) for image in padded])
            if B is not None:
                out = out + B.reshape(1, -1, 1, 1)
            return (out.astype(X.dtype),)

    return Float64Conv


def float_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of the float32 tensors of a graph: float inputs and every node output of float type."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)}
    names = [v.name for v in model.graph.input if types.get(v.name) == TensorProto.FLOAT]
    names += [out for node in model.graph.node for out in node.output if out and types.get(out) == TensorProto.FLOAT]
    return names


def float64_ranges(model: onnx.ModelProto, feeds: Sequence[Arrays]) -> dict[str, tuple[float, float]]:
    """(min, max) over the calibration inputs of every float tensor, computed in float64."""
    from onnx.reference import ReferenceEvaluator

    names = float_tensors(model)
    evaluator = ReferenceEvaluator(float64_graph(model), new_ops=[_float64_conv()])
    ranges: dict[str, tuple[float, float]] = {}
    for inputs in feeds:
        wide = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in inputs.items()}
        results = dict(zip(names, evaluator.run(names, wide)))
        for name, values in results.items():
            low, high = float(np.min(values)), float(np.max(values))
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))
    return ranges


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


def coarse_ranges(ranges: dict[str, tuple[float, float]], bits: int) -> dict[str, tuple[float, float]]:
    return {name: (outward(low, bits, up=False), outward(high, bits, up=True)) for name, (low, high) in ranges.items()}


def build_int8_static(
    fp32: onnx.ModelProto, calibration: Sequence[Arrays], bits: int, per_channel: bool
) -> tuple[onnx.ModelProto, dict]:
    """QDQ static int8 of the exactly rewritten graph, ranges from `float64_ranges` rounded outward."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    rewritten, replaced = exact_rewrites(fp32)
    ranges = coarse_ranges(float64_ranges(rewritten, calibration), bits)
    data = TensorsData(CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in sorted(ranges.items())})
    with tempfile.TemporaryDirectory() as work:
        cache, out = Path(work) / "ranges.json", Path(work) / "int8_static.onnx"
        save_tensors_data(data, cache)
        quantize_static(
            rewritten, out, None, quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=cache,
        )
        quantized = onnx.load(out)
    return quantized, {"rewritten": replaced, "ranged_tensors": len(ranges)}


# ---- validation against the fp32 model ----------------------------------------------------------


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


@dataclass
class VariantCheck:
    """Variant vs fp32 ONNX Runtime outputs, sample by sample: the deltas and the first violation."""

    tolerance: VariantTolerance
    embedding_outputs: list[str]
    decision_output: str | None
    decision_atol: float
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    decisions: int = 0
    agreed: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, sample: str, fp32: Arrays, got: Arrays) -> None:
        for name, ref in fp32.items():
            ref64, got64 = ref.astype(np.float64), got[name].astype(np.float64)
            stats = self.outputs.setdefault(name, {"max_abs_error": 0.0})
            if not np.all(np.isfinite(got64)):
                self._fail(f"output {name!r}, sample {sample!r}: non-finite values")
                continue
            error = float(np.max(np.abs(got64 - ref64)))
            stats["max_abs_error"] = max(stats["max_abs_error"], error)
            if error > self.tolerance.max_abs_error:
                self._fail(f"output {name!r}, sample {sample!r}: max |variant - fp32| {error:.3g} > max_abs_error {self.tolerance.max_abs_error:g}")
            if name == self.decision_output:
                for r, g in zip(ref64.ravel(), got64.ravel()):
                    self.decisions += 1
                    self.agreed += int(np.sign(r) == np.sign(g) or abs(r) <= self.decision_atol)
                continue
            rows = ref64.shape[0] if name in self.embedding_outputs else 1
            a, b = ref64.reshape(rows, -1), got64.reshape(rows, -1)
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cosine = float(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)))
            stats["min_cosine"] = min(stats.get("min_cosine", 1.0), cosine)
            if cosine < self.tolerance.min_cosine:
                self._fail(f"output {name!r}, sample {sample!r}: cosine {cosine:.6f} < min_cosine {self.tolerance.min_cosine:g}")

    def _fail(self, message: str) -> None:
        if len(self.failures) < 3:
            self.failures.append(message)

    def result(self) -> dict:
        summary: dict = {"outputs": {n: {k: _sig(v) for k, v in s.items()} for n, s in self.outputs.items()}}
        cosines = [s["min_cosine"] for s in self.outputs.values() if "min_cosine" in s]
        summary["min_cosine"] = _sig(min(cosines)) if cosines else None
        summary["max_abs_error"] = _sig(max(s["max_abs_error"] for s in self.outputs.values()))
        if self.decision_output:
            agreement = self.agreed / max(self.decisions, 1)
            summary["decision_agreement"] = _sig(agreement)
            wanted = self.tolerance.decision_agreement
            if wanted is not None and agreement < wanted:
                self._fail(f"output {self.decision_output!r}: decision agreement {agreement:.4f} < decision_agreement {wanted:g}")
        return summary


def ms_per_call(run: Callable[[], object], repeat: int) -> float:
    """Median wall-clock ms of `repeat` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def build(variant: str, fp32: onnx.ModelProto, spec: ModelSpec, calibration: Callable[[int], list[Arrays]]) -> tuple[bytes, dict]:
    """The variant's bytes and its recipe (what was done), ORT's quantizer advice kept out of the log."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "Please consider to run pre-processing...", per-tensor notes
    try:
        return _build(variant, fp32, spec, calibration)
    finally:
        logging.disable(previous)


def _build(variant: str, fp32: onnx.ModelProto, spec: ModelSpec, calibration: Callable[[int], list[Arrays]]) -> tuple[bytes, dict]:
    settings = getattr(spec.variants, variant)
    if variant == "optimized":
        model = build_optimized(fp32)
        recipe: dict = {"level": "ORT_ENABLE_BASIC", "disabled_optimizers": list(ARITHMETIC_OPTIMIZERS)}
        recipe["constants"] = check_optimized(model, fp32, "optimized variant")
    elif variant == "fp16":
        model, recipe = build_fp16(fp32), {"keep_io_types": True}
    elif variant == "int8_dynamic":
        model = build_int8_dynamic(fp32, settings.op_types, settings.per_channel)
        recipe = {"op_types": list(settings.op_types), "per_channel": settings.per_channel, "weights": "QInt8"}
    elif variant == "int8_static":
        model, details = build_int8_static(fp32, calibration(settings.calibration_samples), settings.range_bits, settings.per_channel)
        recipe = {"format": "QDQ", "activations": "QUInt8", "weights": "QInt8", "per_channel": settings.per_channel,
                  "range_bits": settings.range_bits, "calibration_samples": settings.calibration_samples,
                  **details}
    else:
        raise PipelineError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return finish(model, fp32, variant, recipe), recipe


# ---- calibration inputs -------------------------------------------------------------------------


def calibration_inputs(spec: ModelSpec, count: int) -> list[Arrays]:
    """Input sets from drawn signatures, integer-only drawing (so the ranges' inputs are the same
    bits on every machine), other seeds than the test vectors' and the validation's:
    - `count` drawn pages (`stages.vectors.drawn_page`) through the model's own preprocessing
      (cluttered pages for the cleaning model; pairs for a verifier; varied sizes for SPP);
    - for signature models, `count` more strokes drawn straight at the network's input size
      (`stages.calibration.signature_field_images`, ink bright), as the validate stage's
      `stroke_samples`, scaled as the network takes them (uint8, or / input_divisor)."""
    from stages.calibration import signature_field_images
    from stages.vectors import _gray, drawn_page

    style = spec.preprocessing.package_form()
    names = [t.name for t in spec.onnx.inputs]
    dtype = spec.onnx.inputs[0].dtype
    seed = spec.source.seed * 100 + 50

    def signature(index: int) -> np.ndarray:
        height, width = 240 + 29 * index, 420 + 53 * index
        if style.spp:  # from the smallest accepted size up
            height, width = style.input_size[0] + 23 * index, style.input_size[1] + 41 * index
        return style.network_input(style.image(_gray(drawn_page(seed + index, height, width, False))), dtype)

    if style.style == "rgb":
        return [{names[0]: style.network_input(style.image(drawn_page(seed + k, *style.input_size, True)), dtype)} for k in range(count)]
    size = SPP_STROKE_SIZE if style.spp else tuple(style.input_size)
    strokes = [
        image if dtype == "uint8" else (image.astype(np.float32) / np.float32(style.input_divisor))[None, None]
        for image in signature_field_images(seed * 10 + 7, count, [size])
    ]
    if len(names) == 2:
        pairs = [(signature(2 * k), signature(2 * k + 1)) for k in range(count)] + list(zip(strokes, strokes[1:] + strokes[:1]))
        return [{names[0]: a, names[1]: b} for a, b in pairs]
    return [{names[0]: signature(k)} for k in range(count)] + [{names[0]: image} for image in strokes]
