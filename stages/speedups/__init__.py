"""Faster variants of a published model: each a pure function of the fp32 `model.onnx` and params.

Modules: `builders` (the four variants), `checks` (variant vs fp32, speed, calibration inputs);
this package's `build` makes one variant and stamps its lineage.

Four variants (params `models.<name>.variants`, each with its own tolerances):

- `optimized`: ONNX Runtime's provider-independent graph rewrites (ORT_ENABLE_BASIC) saved offline
  (`optimized_model_filepath`), with every BASIC-level optimizer that computes new values from
  constants disabled (`ARITHMETIC_OPTIMIZERS`: ConstantFolding, ConvBNFusion, ConvAddFusion,
  ConvMulFusion, MatMul_BatchNormalization_Fusion, MatMulScaleFusion, DivMulFusion).
  What is left only rewires, renames or drops nodes (Identity, Dropout, Unsqueeze, Cast
  eliminations...). Why its bytes are CPU-independent: no arithmetic is done on a weight, and
  `check_optimized` proves it on every build: every float constant of the result is traced,
  bit for bit, to a constant of the fp32 graph (copy, reshape or transpose) with
  `stages.core.weight_trace`, otherwise nothing is published.
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
  calibration signatures (integer-only drawing, `stages.core.drawings.drawn_page`, through the
  model's own preprocessing) by `onnx.reference.ReferenceEvaluator` on a float64 copy of the
  graph, its convolutions done by `stages.core.float64_layers.conv2d` (im2col + one float64 matrix product),
  all under the pinned kernels of the vectors step (`stages.core.pinned_kernels.PINNED_KERNELS`: OpenBLAS
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
they go to `reports/<name>/variants.json`, outside the published folder, dvc.lock and git.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import numpy as np
import onnx

from stages.core import onnx_graph
from stages.core.errors import PipelineError, first_line
from stages.core.params import ModelSpec
from stages.speedups.builders import (
    ARITHMETIC_OPTIMIZERS,
    build_fp16,
    build_int8_dynamic,
    build_int8_static,
    build_optimized,
    check_optimized,
)

Arrays = dict[str, np.ndarray]
VARIANTS = ("optimized", "fp16", "int8_dynamic", "int8_static")


def finish(model: onnx.ModelProto, fp32: onnx.ModelProto, variant: str, recipe: dict) -> bytes:
    """The variant's bytes: the fp32 file's metadata (lineage) plus what it is a variant of and how,
    once `onnx.checker` (full check, strict shape inference) accepts the graph: a variant other
    runtimes could refuse is not built (PipelineError naming the checker's reason)."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PipelineError(f"{variant}: onnx.checker refuses the graph: {first_line(exc)}") from None
    parent_sha256 = hashlib.sha256(onnx_graph.serialize(fp32)).hexdigest()
    entries = {
        **onnx_graph.metadata_of(fp32),
        "variant": variant,
        "variant_of_sha256": parent_sha256,
        "variant_recipe": json.dumps(recipe, sort_keys=True),
    }
    # The parent's validation.* entries describe the parent's check, not this file's: say so first.
    doc = (
        f"{variant.upper()} VARIANT of the model below (its model.onnx sha256 {parent_sha256}), made by "
        f"{json.dumps(recipe, sort_keys=True)[:300]}; checked against it in ONNX Runtime within the tolerances "
        f"of its lineage.json (validation.* below are the parent's). The parent: {fp32.doc_string}"
    )
    onnx_graph.set_metadata(model, entries, fp32.model_version, doc)
    return onnx_graph.serialize(model)


def build(
    variant: str, fp32: onnx.ModelProto, spec: ModelSpec, calibration: Callable[[int], list[Arrays]]
) -> tuple[bytes, dict]:
    """The variant's bytes and its recipe (what was done), ORT's quantizer advice kept out of the log."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # "Please consider to run pre-processing...", per-tensor notes
    try:
        return _build(variant, fp32, spec, calibration)
    finally:
        logging.disable(previous)


def _build(
    variant: str, fp32: onnx.ModelProto, spec: ModelSpec, calibration: Callable[[int], list[Arrays]]
) -> tuple[bytes, dict]:
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
        model, details = build_int8_static(
            fp32, calibration(settings.calibration_samples), settings.range_bits, settings.per_channel
        )
        recipe = {
            "format": "QDQ",
            "activations": "QUInt8",
            "weights": "QInt8",
            "per_channel": settings.per_channel,
            "range_bits": settings.range_bits,
            "calibration_samples": settings.calibration_samples,
            **details,
        }
    else:
        raise PipelineError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return finish(model, fp32, variant, recipe), recipe
