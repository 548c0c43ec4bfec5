"""Study: why the SigNet models' int8_static variant misses cosine 0.999, and what would change it.

Issue 12 asks for an int8 SigNet at least 2x faster than fp32 with cosine >= 0.999. The variants
stage builds int8_static as one QDQ graph (every Conv and MatMul quantized) and refuses it for
every SigNet (cosine 0.96-0.99). This prints, for one model, side by side in one run, against
ONNX Runtime fp32 on the validate stage's inputs (min cosine over outputs and samples, max |diff|,
ms per call timed interleaved with fp32):

- `int8 all`: what the stage builds (`stages.speedups.builders`, same ranges, same quantizer);
- `int8, keep <node> float`: mixed precision, one Conv/MatMul at a time left in float32;
- `folded fp32` and `folded int8 ...`: the same after folding each per-channel affine that
  follows a Conv or MatMul (Lasagne's Sub/Mul/Add batch norm, or a BatchNormalization node) into
  its weights and bias, so that each layer has one quantized output instead of four.

The fold is study code, not a pipeline step: it rounds new weights (float64 products rounded once
to float32), which the variants step would have to argue machine-independent before using it.
Not a test: it prints figures and asserts nothing. Needs a built project (`dvc repro`).

    python benchmarks/int8_signet_study.py [--model signet] [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_unfused_bn import interleaved_medians  # noqa: E402

from stages.core import onnx_graph  # noqa: E402
from stages.core.cli import report_errors  # noqa: E402
from stages.core.errors import PipelineError  # noqa: E402
from stages.core.params import VariantTolerance, model_spec  # noqa: E402
from stages.core.paths import user_images  # noqa: E402
from stages.families import load_family  # noqa: E402
from stages.speedups import builders, checks  # noqa: E402

Arrays = dict[str, np.ndarray]
AFFINE_OPS = ("Sub", "Mul", "Add")


def _affine_chain(
    node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]], constants: dict[str, np.ndarray]
) -> list[onnx.NodeProto]:
    """The per-channel affine nodes that alone consume `node`'s output: Sub/Mul/Add by a constant,
    or one BatchNormalization."""
    chain: list[onnx.NodeProto] = []
    current = node.output[0]
    while len(consumers.get(current, [])) == 1:
        after = consumers[current][0]
        if after.op_type == "BatchNormalization" and not chain and after.input[0] == current:
            chain.append(after)
            break
        if after.op_type not in AFFINE_OPS or after.input[0] != current or after.input[1] not in constants:
            break
        chain.append(after)
        current = after.output[0]
    return chain


def fold_affine(model: onnx.ModelProto) -> onnx.ModelProto:
    """Each Conv/MatMul followed by a per-channel affine becomes one Conv (or MatMul + Add) with
    weight * scale and bias (bias - mean) * scale + beta, computed in float64, rounded once."""
    model = onnx.ModelProto.FromString(onnx_graph.serialize(model))
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    nodes, folded = list(graph.node), set()
    for node in list(nodes):
        if node.op_type not in ("Conv", "MatMul") or node.input[1] not in constants:
            continue
        chain = _affine_chain(node, consumers, constants)
        if not chain:
            continue
        weight = constants[node.input[1]]
        conv = node.op_type == "Conv"
        channels = weight.shape[0] if conv else weight.shape[1]
        scale = np.ones(channels)
        shift = constants[node.input[2]] if len(node.input) > 2 else np.zeros(channels)
        for step in chain:
            if step.op_type == "BatchNormalization":
                gamma, beta, mean, var = (constants[name] for name in step.input[1:5])
                epsilon = next((a.f for a in step.attribute if a.name == "epsilon"), 1e-5)
                factor = gamma / np.sqrt(var + np.float64(np.float32(epsilon)))
                scale, shift = scale * factor, (shift - mean) * factor + beta
                continue
            value = np.broadcast_to(constants[step.input[1]].reshape(-1), (channels,))
            if step.op_type == "Mul":
                scale, shift = scale * value, shift * value
            else:
                shift = shift - value if step.op_type == "Sub" else shift + value
        per_channel = scale.reshape(-1, *[1] * (weight.ndim - 1)) if conv else scale.reshape(1, -1)
        weight_name, bias_name = f"{node.name}/folded_weight", f"{node.name}/folded_bias"
        graph.initializer.extend(
            [
                numpy_helper.from_array((weight * per_channel).astype(np.float32), weight_name),
                numpy_helper.from_array(shift.astype(np.float32), bias_name),
            ]
        )
        result = chain[-1].output[0]
        if conv:
            node.input[:] = [node.input[0], weight_name, bias_name]
            node.output[0] = result
        else:
            product = f"{node.name}/folded:0"
            node.input[1], node.output[0] = weight_name, product
            nodes.insert(
                nodes.index(node) + 1,
                helper.make_node("Add", [product, bias_name], [result], name=f"{node.name}/folded_add"),
            )
        folded.update(step.name for step in chain)
    del graph.node[:]
    graph.node.extend(n for n in nodes if n.name not in folded)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model


# What the variants step would ask of an int8_static SigNet (params no longer build one: it is refused).
STUDIED = VariantTolerance(min_cosine=0.999, max_abs_error=3.0)


def accuracy(session, spec, samples: list[tuple[str, Arrays]], references: list[Arrays]) -> tuple[float, float]:
    """(min cosine, max |build - fp32|) over every output and sample, by the variants step's own
    comparison (`checks.VariantCheck`), unrounded."""
    check = checks.VariantCheck(STUDIED, spec.validation.embedding_outputs, None, spec.validation.atol)
    names = [o.name for o in session.get_outputs()]
    for (sample, feeds), reference in zip(samples, references):
        check.add(sample, reference, dict(zip(names, session.run(names, feeds))))
    stats = check.outputs.values()
    return min(s.get("min_cosine", 1.0) for s in stats), max(s["max_abs_error"] for s in stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="signet", help="a SigNet model of params.yaml (default: signet)")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    args = parser.parse_args()
    os.chdir(REPO)
    logging.disable(logging.WARNING)  # the quantizer's per-tensor advice
    spec = model_spec(args.model, Path("params.yaml"))
    if not spec.network.architecture.startswith("signet"):
        raise PipelineError(f"--model {args.model}: this study is for the SigNet models")
    fp32_bytes = (REPO / "models" / args.model / "model.onnx").read_bytes()
    fp32 = onnx.load_from_string(fp32_bytes)
    samples = load_family(spec.family).validation_inputs(spec, spec.validation.samples, user_images(args.model, spec))
    settings = spec.variants.int8_static or STUDIED  # params build no int8_static for a SigNet: the study's defaults
    calibration = checks.calibration_inputs(spec, settings.calibration_samples)
    fp32_session = quiet_session(fp32_bytes, args.threads)
    outputs = [o.name for o in fp32_session.get_outputs()]
    references = [dict(zip(outputs, fp32_session.run(outputs, feeds))) for _sample, feeds in samples]

    builds: dict[str, bytes] = {}
    rewritten = builders.exact_rewrites(fp32)[0]
    for label, model in (("", rewritten), ("folded ", fold_affine(rewritten))):
        print(f"computing the float64 ranges of the {label or 'unfolded '}graph ...", flush=True)
        ranges, _settling = builders.int8_static_ranges(model, calibration, settings.range_bits)
        if label:
            builds["folded fp32"] = onnx_graph.serialize(model)
        builds[f"{label}int8 all"] = onnx_graph.serialize(builders.quantize_qdq(model, ranges, settings.per_channel))
        for node in (n.name for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")):
            quantized = builders.quantize_qdq(model, ranges, settings.per_channel, keep_float=[node])
            builds[f"{label}int8, keep {node} float"] = onnx_graph.serialize(quantized)
    timed = samples[0][1]
    print(
        f"\n{args.model}: {len(samples)} validation samples, {args.threads} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print("ms: median per call, each build timed interleaved with fp32 (two sessions at a time, no spin-waiting)")
    print(f"{'build':58} {'min cosine':>10} {'max |diff|':>10} {'fp32 ms':>8} {'ms':>7} {'vs fp32':>7}")
    for label, data in builds.items():
        session = quiet_session(data, args.threads)
        cosine, error = accuracy(session, spec, samples, references)
        ms = interleaved_medians(
            {"fp32": lambda: fp32_session.run(None, timed), "build": lambda: session.run(None, timed)}, args.rounds
        )
        print(
            f"{label:58} {cosine:10.5f} {error:10.3g} {ms['fp32']:8.2f} {ms['build']:7.2f} {ms['fp32'] / ms['build']:6.2f}x",
            flush=True,
        )


def quiet_session(data: bytes, threads: int) -> ort.InferenceSession:
    """A CPU session whose threads sleep when idle, so that two sessions timed in turn do not
    take each other's cores by spin-waiting."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


if __name__ == "__main__":
    sys.exit(report_errors(main))
