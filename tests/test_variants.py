"""Stage `variants`: faster variants published only within their tolerances, the same bytes under
other CPU kernels, loadable by the package; the builders' exactness checks catch what they claim."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import REPO, ort_session, run_step
from onnx import TensorProto, helper, numpy_helper

from stages.core.params import read_params_file

MODEL = "signet_pth"  # batch-norm nodes (what the optimized variant must not fold), dynamic batch
ALL_VARIANTS = ("optimized", "fp16", "int8_dynamic", "int8_static")
LOOSE = {"min_cosine": 0.5, "max_abs_error": 100.0}
CAPPED_KERNELS = {  # as tests/test_vectors.py: other BLAS kernels asked for, AVX paths off
    "OPENBLAS_CORETYPE": "Sandybridge",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OPENCV_CPU_DISABLE": "AVX,AVX2,FMA3,AVX_512F,AVX512_SKX,AVX512_ICL",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-AVX512F,-FMA,-AVX",
}


def with_variants(project: Path, name: str, variants: dict, model: str = MODEL) -> str:
    """A params file in `project` whose `model` builds exactly `variants`; returns its name."""
    params = read_params_file(project / "params.yaml")
    params["models"][model]["variants"] = variants
    params["families"][params["models"][model]["family"]].pop("variants", None)  # none merged in from the family
    (project / name).write_text(yaml.safe_dump(params, sort_keys=False))
    return name


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def variants_project(published_project: Path) -> Path:
    """published_project with every variant of MODEL built once (tolerances loose: all published)."""
    params = with_variants(published_project, "params_variants.yaml", {v: dict(LOOSE) for v in ALL_VARIANTS})
    run_step(published_project, "variants", MODEL, "--params", params)
    return published_project


def test_every_variant_is_published_as_a_model_folder(variants_project: Path):
    folder = variants_project / "models" / MODEL / "variants"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ALL_VARIANTS)
    preprocessing = (variants_project / "models" / MODEL / "preprocessing.json").read_bytes()
    fp32 = onnx.load(variants_project / "models" / MODEL / "model.onnx")
    for variant in ALL_VARIANTS:
        assert (folder / variant / "preprocessing.json").read_bytes() == preprocessing
        model = onnx.load(folder / variant / "model.onnx")
        metadata = {p.key: p.value for p in model.metadata_props}
        assert metadata["variant"] == variant and metadata["model"] == MODEL
        assert [i.name for i in model.graph.input] == [i.name for i in fp32.graph.input]
    record = json.loads((variants_project / "reports" / MODEL / "variants.json").read_text())
    for variant in ALL_VARIANTS:
        entry = record["variants"][variant]
        assert entry["published"] is True and entry["min_cosine"] >= 0.5
        assert not {"ms_per_call", "fp32_ms_per_call", "speedup_vs_fp32"} & set(entry)  # a build times nothing
    static = onnx.load(folder / "int8_static" / "model.onnx")
    assert sum(n.op_type == "QuantizeLinear" for n in static.graph.node) > 5
    assert record["variants"]["optimized"]["recipe"]["constants"]["constants"] > 0


def test_the_package_loads_a_variant_folder(variants_project: Path, tmp_path: Path):
    from signature_onnx import AutoORTModel, IntegrityError, ModelFolder
    from signature_onnx.models import ORTModelForSignatureFeatures
    from stages.core.drawings import drawn_page, page_gray

    variant = variants_project / "models" / MODEL / "variants" / "int8_static"
    image = tmp_path / "scan.png"
    from PIL import Image

    Image.fromarray(page_gray(drawn_page(7, 300, 520, False))).save(image)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "signature_onnx",
            "embed",
            str(image),
            "--model",
            str(variant),
            "--out",
            str(tmp_path / "f.npy"),
        ],
        cwd=variants_project,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "f.npy").shape == (1, 2048)
    # the provenance is the model's (built-in stand-in), copied into the variant's own lineage.json
    assert "built-in stand-in" in result.stderr
    with pytest.warns(UserWarning):
        model = AutoORTModel.from_pretrained(variant)
    assert isinstance(model, ORTModelForSignatureFeatures) and model.folder.source.startswith("built-in stand-in")
    # a copied variant folder, away from its model, keeps its provenance and its integrity check
    alone = tmp_path / "alone"
    shutil.copytree(variant, alone, copy_function=shutil.copyfile)
    assert ModelFolder.open(alone).source.startswith("built-in stand-in")
    lineage = json.loads((alone / "lineage.json").read_text())
    assert (
        lineage["variant"] == "int8_static"
        and lineage["onnx"]["sha256"] == hashlib.sha256((alone / "model.onnx").read_bytes()).hexdigest()
    )
    assert (
        lineage["parent"]["sha256"]
        == hashlib.sha256((variants_project / "models" / MODEL / "model.onnx").read_bytes()).hexdigest()
    )
    (alone / "model.onnx").write_bytes((alone / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(IntegrityError):
        ModelFolder.open(alone).model_bytes()


def test_variant_bytes_do_not_depend_on_the_cpus_kernels(variants_project: Path, tmp_path: Path):
    """Rebuilt with other BLAS kernels requested and numpy's, OpenCV's and glibc's AVX paths off:
    every variant (the float64 calibration ranges of int8_static included) has the same bytes."""
    capped = tmp_path / "capped"
    capped.mkdir()
    for name in ("params.yaml", "params_variants.yaml"):
        shutil.copy2(variants_project / name, capped / name)
    for package in ("stages", "signature_onnx"):
        shutil.copytree(REPO / package, capped / package, ignore=shutil.ignore_patterns("__pycache__"))
    (capped / "models" / MODEL).mkdir(parents=True, exist_ok=True)
    for name in (
        "model.onnx",
        "preprocessing.json",
        "lineage.json",
        "test_vectors.json",
        "test_data_set_0",
        "test_data_set_1",
    ):
        source = variants_project / "models" / MODEL / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, capped / "models" / MODEL / name)
    env = {**os.environ, "PYTHONPATH": str(capped), **CAPPED_KERNELS}
    result = subprocess.run(
        [sys.executable, "-m", "stages.variants", MODEL, "--params", "params_variants.yaml"],
        cwd=capped,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = digests(variants_project / "models" / MODEL / "variants")
    assert len(expected) == len(ALL_VARIANTS) * len(digests(variants_project / "models" / MODEL / "variants" / "fp16"))
    assert digests(capped / "models" / MODEL / "variants") == expected


def test_a_variant_outside_its_tolerance_is_not_published(variants_project: Path):
    tight = with_variants(
        variants_project,
        "params_tight.yaml",
        {
            "fp16": {"min_cosine": 0.999, "max_abs_error": 1.0e-6},  # fp16 is off by ~1e-2: refused
            "int8_dynamic": dict(LOOSE),
        },
    )
    result = run_step(variants_project, "variants", MODEL, "--params", tight)
    assert "fp16: NOT published" in result.stderr and "max_abs_error 1e-06" in result.stderr, result.stderr
    folder = variants_project / "models" / MODEL / "variants"
    assert sorted(p.name for p in folder.iterdir()) == ["int8_dynamic"]
    record = json.loads((variants_project / "reports" / MODEL / "variants.json").read_text())
    refused = record["variants"]["fp16"]
    assert refused["published"] is False and "max |variant - fp32|" in refused["failure"]
    assert refused["max_abs_error"] > 1.0e-6  # the measured delta is recorded beside the reason
    assert record["variants"]["int8_dynamic"]["published"] is True
    # leave the shared project as the fixture made it
    run_step(variants_project, "variants", MODEL, "--params", "params_variants.yaml")


@pytest.mark.parametrize(
    "variants, words",
    [
        ({"int8_statc": dict(LOOSE)}, ["models.signet_pth.variants.int8_statc", "Extra inputs are not permitted"]),
        ({"int8_static": {**LOOSE, "range_bits": "4"}}, ["models.signet_pth.variants.int8_static.range_bits"]),
        # no family default for `optimized`: its entry must give both tolerances
        (
            {"optimized": {"min_cosine": 0.999}},
            ["models.signet_pth.variants.optimized.max_abs_error", "Field required"],
        ),
        (
            {"fp16": {**LOOSE, "decision_agreement": 1.0}},
            ["variants.fp16.decision_agreement", "no validation.decision_output"],
        ),
    ],
)
def test_bad_variant_params_fail_in_one_error_line(project: Path, variants: dict, words: list[str]):
    params = with_variants(project, "params_bad.yaml", variants)
    result = run_step(project, "variants", MODEL, "--params", params, check=False)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_the_variants_stage_needs_the_published_model(project: Path):
    result = run_step(project, "variants", MODEL, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: models/{MODEL}/model.onnx: not found")


# ---- the builders' own checks ---------------------------------------------------------------------


def test_the_optimized_variants_trace_catches_an_arithmetic_optimizer(variants_project: Path):
    """With ORT's ConvBNFusion left on, new conv weights are computed: the trace refuses them."""
    from stages.core.errors import PipelineError
    from stages.speedups.builders import ARITHMETIC_OPTIMIZERS, build_optimized, check_optimized

    fp32 = onnx.load(variants_project / "models" / MODEL / "model.onnx")
    assert check_optimized(build_optimized(fp32), fp32, "optimized")["constants"] > 0
    fused = build_optimized(fp32, [name for name in ARITHMETIC_OPTIMIZERS if name != "ConvBNFusion"])
    assert sum(n.op_type == "BatchNormalization" for n in fused.graph.node) < sum(
        n.op_type == "BatchNormalization" for n in fp32.graph.node
    )
    with pytest.raises(PipelineError, match="not an upstream tensor"):
        check_optimized(fused, fp32, "optimized")


def conv_transpose_model(channels: int = 3, outputs: int = 4, size: int = 5) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((channels, outputs, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b")
    node = helper.make_node(
        "ConvTranspose", ["x", "w", "b"], ["y"], name="up", strides=[2, 2], kernel_shape=[3, 3], pads=[0, 0, 1, 1]
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs, 2 * size, 2 * size])],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_conv_transpose_rewrite_computes_the_same_function():

    from stages.speedups.builders import exact_rewrites

    model = conv_transpose_model()
    rewritten, replaced = exact_rewrites(model)
    assert replaced == ["up"] and [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    x = np.random.default_rng(1).standard_normal((1, 3, 5, 5)).astype(np.float32)
    run = lambda m: ort_session(m.SerializeToString()).run(None, {"x": x})[0]  # noqa: E731
    expected, got = run(model), run(rewritten)
    assert np.abs(got - expected).max() < 1e-5
    # a wrong tap (what a mistaken rewrite would do) is caught by the comparison above
    broken = onnx.ModelProto.FromString(rewritten.SerializeToString())
    weight = next(i for i in broken.graph.initializer if i.name.endswith("subpixel_weight"))
    values = numpy_helper.to_array(weight).copy()
    values[:, :, [0, 1]] = values[:, :, [1, 0]]
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    assert np.abs(run(broken) - expected).max() > 1e-2


def test_ranges_are_rounded_outward_to_a_coarse_grid():
    from stages.speedups.builders import outward

    assert outward(5.0, 4, up=True) == 5.0 and outward(5.01, 4, up=True) == 5.5
    assert outward(-5.01, 4, up=False) == -5.5 and outward(5.01, 4, up=False) == 5.0
    assert outward(0.0, 4, up=True) == 0.0
    value = 3.7312345678
    for neighbour in (np.nextafter(value, 0), np.nextafter(value, 10)):  # last-bit noise does not move it
        assert outward(float(neighbour), 4, up=True) == outward(value, 4, up=True) == 3.75


def test_float32_ranges_equal_the_float64_rule_and_the_margin_is_proven(variants_project: Path, monkeypatch):
    """int8_static's ranges come from ONNX Runtime in float32; an end within FLOAT32_MARGIN of a
    grid point is settled in float64 instead. On two calibration inputs: the result equals the
    float64 computation of every end; the measured float32 error is 100x inside the margin; and
    with the margin forced wide (most ends unsettled) the float64 fallback still gives the same."""
    from stages.core.params import model_spec
    from stages.speedups import builders, checks

    spec = model_spec(MODEL, variants_project / "params_variants.yaml")
    rewritten, _ = builders.exact_rewrites(onnx.load(variants_project / "models" / MODEL / "model.onnx"))
    calibration = checks.calibration_inputs(spec, 1)[:2]
    exact = builders.float64_ranges(rewritten, calibration)
    by_float64 = {
        n: (builders.outward(lo, 4, up=False), builders.outward(hi, 4, up=True)) for n, (lo, hi) in exact.items()
    }
    ranges, settling = builders.int8_static_ranges(rewritten, calibration, 4)
    assert ranges == by_float64 and settling["tensors"] == len(exact)
    extremes = builders.float32_extremes(rewritten, calibration)
    for name, (low, high) in exact.items():
        scale = max(abs(low), abs(high)) or 1.0
        gap = max(abs(extremes[name][:, 0].min() - low), abs(extremes[name][:, 1].max() - high)) / scale
        assert gap < builders.FLOAT32_MARGIN / 100, (name, gap)
    # another CPU's float32 results, anywhere within half the margin: the same ranges
    rng = np.random.default_rng(0)

    def noisy(model, feeds):
        # exact zeros (ReLU, pooling, padding) stay exact on every CPU
        return {
            name: values
            + (values != 0)
            * rng.uniform(-0.5, 0.5, values.shape)
            * builders.FLOAT32_MARGIN
            * (np.abs(values).max() or 1.0)
            for name, values in extremes.items()
        }

    with monkeypatch.context() as patch:
        patch.setattr(builders, "float32_extremes", noisy)
        for _ in range(5):
            assert builders.int8_static_ranges(rewritten, calibration, 4)[0] == by_float64
    monkeypatch.setattr(builders, "FLOAT32_MARGIN", 2.0**-5)
    wide, settling = builders.int8_static_ranges(rewritten, calibration, 4)
    assert settling["endpoints_in_float64"] > 10 and wide == by_float64


def test_an_end_near_a_grid_point_is_not_settled_in_float32():
    from stages.speedups.builders import FLOAT32_MARGIN, settled

    assert settled(5.3, 5.3, 4, up=True) and settled(0.0, 5.3, 4, up=False)
    assert not settled(5.0 + FLOAT32_MARGIN, 5.0, 4, up=True)  # 5.0 is a grid point: either side rounds apart
    assert not settled(1e-9, 5.0, 4, up=False)  # near zero, the sign is not certain


def test_every_variant_passes_the_onnx_checker(variants_project: Path):
    """ONNX Runtime runs graphs out of order; the checker (full) and strict shape inference do not
    accept them, and other runtimes need not run them: every published variant passes both."""
    for variant in ALL_VARIANTS:
        model = onnx.load(variants_project / "models" / MODEL / "variants" / variant / "model.onnx")
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)


def test_nodes_are_put_in_dependency_order_and_an_unsortable_graph_is_refused():
    from stages.core.errors import PipelineError
    from stages.core.onnx_graph import sort_topologically
    from stages.speedups import finish

    first = helper.make_node("Relu", ["x"], ["a"], name="first")
    second = helper.make_node("Neg", ["a"], ["y"], name="second")
    graph = helper.make_graph(
        [second, first],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model, full_check=True)
    with pytest.raises(PipelineError, match="onnx.checker refuses the graph"):  # the stage's last check
        finish(onnx.ModelProto.FromString(model.SerializeToString()), model, "fp16", {})
    sort_topologically(model.graph)
    assert [n.name for n in model.graph.node] == ["first", "second"]
    onnx.checker.check_model(model, full_check=True)
    cycle = helper.make_graph(
        [helper.make_node("Neg", ["b"], ["a"]), helper.make_node("Neg", ["a"], ["b"])],
        "c",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2])],
    )
    with pytest.raises(PipelineError, match="nothing produces or a cycle"):
        sort_topologically(cycle)


def test_a_variant_that_misses_its_test_vectors_is_named_by_the_check_vectors_rule():
    """The variants step publishes a variant only if it meets the parent's test vectors within its atol."""
    from types import SimpleNamespace

    from stages.variants import vectors_failure

    expected = {"fc2": np.array([[1.0, 2.0]], np.float32)}

    class Session:
        def __init__(self, output: np.ndarray):
            self.output = output

        def get_outputs(self):
            return [SimpleNamespace(name="fc2")]

        def run(self, names, feeds):
            return [self.output]

    sets = [({"input": np.zeros((1, 1), np.float32)}, expected)]
    assert vectors_failure(Session(np.array([[1.05, 2.0]], np.float32)), sets, atol=0.1) is None
    missed = vectors_failure(Session(np.array([[1.5, 2.0]], np.float32)), sets, atol=0.1)
    assert missed.startswith("test_data_set_0: fc2, element (0, 0)") and "> atol 0.1" in missed
    assert "NaN" in vectors_failure(Session(np.array([[np.nan, 2.0]], np.float32)), sets, atol=0.1)
