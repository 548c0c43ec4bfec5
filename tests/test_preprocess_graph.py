"""preprocess.onnx and pipeline.onnx: how they are built and composed, how the build refuses a
drifted graph, and how the package uses them (`--preprocess onnx`). Each style's own proof is in
tests/test_preprocess_graph_<style>.py."""

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
from conftest import REPO, ort_session, shared_fixture
from subgraphs import all_initializers, all_nodes

from signature_onnx import AutoORTModel
from signature_onnx.errors import ImageError, IntegrityError, ModelFolderError
from stages.core.drawings import drawn_page
from stages.core.errors import PipelineError
from stages.core.params import PreprocessGraphSpec, model_spec
from stages.preprocess_graph import pipeline_model, preprocess_model
from stages.preprocess_graph.check import PreprocessFigures, check

# one model of each style and input kind
MODELS = ["cleaning", "siamese", "signet", "signet_spp_300dpi", "signet_pth"]


def built(name: str) -> onnx.ModelProto:
    spec = model_spec(name)
    return preprocess_model(spec.preprocessing.package_form(), spec.onnx.inputs, spec.onnx.opset, 8)


@pytest.mark.parametrize("name", MODELS)
def test_each_graph_passes_the_full_checker_with_standard_operators_only(name: str):
    model = built(name)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", model_spec(name).onnx.opset)]
    assert {node.domain for node in all_nodes(model.graph)} <= {""}
    spec = model_spec(name)
    assert [i.name for i in model.graph.input] == [f"{t.name}_pixels" for t in spec.onnx.inputs]
    assert [o.name for o in model.graph.output] == [n for t in spec.onnx.inputs for n in (t.name, f"{t.name}_valid")]


# Sizes that take every path of every style: enlargement (all rows, and rows picked: 500 x 3),
# OpenCV's integer factors (3 x 3, 2 x 3, 2 x 2), area tables, pages smaller and larger than the canvases.
OPTIMIZER_PAGES = [(184, 740), (672, 672), (448, 672), (448, 448), (500, 3), (359, 725), (90, 120), (1500, 2100)]


@pytest.mark.parametrize("name", MODELS)
def test_onnxruntimes_graph_optimizations_change_no_bit(name: str):
    """Applications run the graph with onnxruntime's default optimizations. Some rewrite float
    math (DivMulFusion turns Div(1, x) -> Mul into one Div, which rounds differently: 426 pixels of
    a real scan were off by one before the graphs used Reciprocal), so the graph must give the same
    bits with every optimization off (the operators as the ONNX standard defines them) and on."""
    import onnxruntime as ort

    data = built(name).SerializeToString()
    sessions = []
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        sessions.append(ort_session(data, optimization=level))
    inputs = [i.name for i in sessions[0].get_inputs()]
    for index, (height, width) in enumerate(OPTIMIZER_PAGES):
        feeds = {key: drawn_page(50 + index + k, height, width, name == "cleaning") for k, key in enumerate(inputs)}
        plain, optimized = (session.run(None, feeds) for session in sessions)
        for got, expected in zip(optimized, plain):  # bytes: -0.0 is not 0.0, a NaN equals itself
            assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), f"{name}: {height} x {width}"


def divisions_of_one(model: onnx.ModelProto) -> list[str]:
    """Div nodes, subgraphs included, whose numerator is a constant 1 (an initializer holding only ones)."""
    ones = {
        t.name
        for t in all_initializers(model.graph)
        if onnx.numpy_helper.to_array(t).size == 1 and onnx.numpy_helper.to_array(t) == 1
    }
    return [node.name for node in all_nodes(model.graph) if node.op_type == "Div" and node.input[0] in ones]


@pytest.mark.parametrize("name", MODELS)
def test_no_graph_divides_one_by_a_value(name: str):
    """1 / x is a Reciprocal: onnxruntime fuses a Div(1, x) that feeds a Mul into another Div
    (the test above shows what that costs), and whether it does depends on how many nodes read
    the Div, which any later edit may change."""
    assert divisions_of_one(built(name)) == []


def test_the_divisions_of_one_are_found():
    g = onnx.helper
    graph = g.make_graph(
        [g.make_node("Div", ["one", "x"], ["y"], name="inverse"), g.make_node("Div", ["x", "two"], ["z"], name="half")],
        "g",
        [g.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [
            g.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1]),
            g.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1]),
        ],
        [
            onnx.numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
    )
    assert divisions_of_one(g.make_model(graph)) == ["inverse"]
    # The same division inside an If branch, its 1 a constant of the branch, is found too.
    branch = g.make_graph(
        [g.make_node("Div", ["branch_one", "x"], ["w"], name="branch_inverse")],
        "then",
        [],
        [g.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [1])],
        [onnx.numpy_helper.from_array(np.array(1.0, np.float32), "branch_one")],
    )
    other = g.make_graph(
        [g.make_node("Identity", ["x"], ["v"])],
        "else",
        [],
        [g.make_tensor_value_info("v", onnx.TensorProto.FLOAT, [1])],
    )
    graph.node.append(g.make_node("If", ["flag"], ["u"], name="choice", then_branch=branch, else_branch=other))
    assert divisions_of_one(g.make_model(graph)) == ["inverse", "branch_inverse"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_onnxruntimes_reciprocal_is_one_divided_by_x(dtype: type):
    """The graphs' bit-exactness needs Reciprocal(x) == 1 / x correctly rounded. Eigen may compute
    it as an estimate refined by a Newton step on some CPUs or builds; this would show it."""
    kind = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Reciprocal", ["x"], ["y"])],
        "reciprocal",
        [onnx.helper.make_tensor_value_info("x", kind, ["n"])],
        [onnx.helper.make_tensor_value_info("y", kind, ["n"])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    session = ort_session(model.SerializeToString())
    rng = np.random.default_rng(17)
    bits = np.uint32 if dtype is np.float32 else np.uint64
    info = np.iinfo(bits)
    values = np.concatenate(
        [
            np.arange(1, 200_001, dtype=dtype),  # every image side, cell and pixel count the graphs see
            224.0 / np.arange(1, 20_001, dtype=dtype),  # dst / src scales
            rng.integers(0, info.max, 200_001, dtype=bits).view(dtype),  # any bit pattern (odd length: SIMD tails)
        ]
    )
    values = values[np.isfinite(values) & (values != 0)]
    got = session.run(None, {"x": values})[0]
    with np.errstate(over="ignore"):
        expected = (dtype(1) / values).astype(dtype)
    assert got.tobytes() == expected.tobytes(), f"{int((got != expected).sum())} of {values.size} differ"


def test_a_pair_may_have_two_sizes():
    """Two images of a verifier are independent: different sides must not clash in ONNX Runtime."""
    session = ort_session(built("siamese").SerializeToString())
    small, large = drawn_page(1, 240, 400, False), drawn_page(2, 900, 1300, False)
    outputs = session.run(None, {"input0_pixels": small, "input1_pixels": large})
    assert [o.shape for o in outputs] == [(150, 220), (), (150, 220), ()] and all(outputs[1::2])


def test_the_graph_bytes_do_not_depend_on_the_build():
    assert built("siamese").SerializeToString(deterministic=True) == built("siamese").SerializeToString(
        deterministic=True
    )


def test_figures_below_a_target_fail_naming_what_drifted():
    targets = PreprocessGraphSpec()
    fine = PreprocessFigures(images=200, exact=199, compared=200, max_gray_levels=1)
    check(fine, targets, "models.x")  # 99.5 % exact, 1 level: within the targets
    for figures, words in [
        (PreprocessFigures(images=100, exact=98, compared=100), "98/100 network inputs exactly equal"),
        (
            PreprocessFigures(images=10, exact=10, compared=10, max_gray_levels=2, worst="page_7"),
            "2 gray levels off on page_7",
        ),
        (PreprocessFigures(images=10, exact=10, compared=10, min_cosine=0.9999), "end-to-end cosine"),
        (
            PreprocessFigures(images=10, exact=9, compared=9, valid_disagreements=["blank (graph accepts it)"]),
            "valid flag disagrees",
        ),
    ]:
        with pytest.raises(PipelineError, match="drifts from the Python preprocessing") as failure:
            check(figures, targets, "models.x")
        assert words in str(failure.value)


# ---- the published folders (the session's one build) ------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_the_published_graphs_are_recorded_and_checked(published_project: Path, name: str):
    folder = published_project / "models" / name
    lineage = json.loads((folder / "lineage.json").read_text())
    for file in ("preprocess.onnx", "pipeline.onnx"):
        digest = hashlib.sha256((folder / file).read_bytes()).hexdigest()
        assert lineage["onnx"]["graphs"][file]["sha256"] == digest
    pipeline = onnx.load(folder / "pipeline.onnx")
    onnx.checker.check_model(pipeline, full_check=True)
    network = onnx.load(folder / "model.onnx")
    spec = model_spec(name)
    assert [o.name for o in pipeline.graph.output] == [o.name for o in network.graph.output] + [
        f"{t.name}_valid" for t in spec.onnx.inputs
    ]
    metadata = {p.key: p.value for p in pipeline.metadata_props}
    assert metadata["pipeline.model_sha256"] == hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    assert pipeline.doc_string.startswith("PIPELINE: preprocess.onnx")
    pages = json.loads((folder / "verdict.json").read_text())["preprocess_pages"]
    assert lineage["validation"]["preprocess_graph"] == {
        "min_exact_fraction": 0.99,
        "max_gray_levels": 1,
        "min_cosine": 0.99999,
    }
    measured = json.loads((published_project / "reports" / name / "validation.json").read_text())["preprocess_graph"]
    assert measured["images"] == pages and measured["exactly_equal"] >= 0.99 * measured["accepted"]


@pytest.mark.parametrize("name", ["signet_pth", "cleaning"])  # cleaning's graph has If subgraphs
def test_composing_again_gives_the_published_pipeline(published_project: Path, name: str):
    """pipeline.onnx is onnx.compose of the two published files (nothing else in between)."""
    folder = published_project / "models" / name
    spec = model_spec(name)
    composed = pipeline_model(onnx.load(folder / "preprocess.onnx"), onnx.load(folder / "model.onnx"), spec.onnx.inputs)
    published = onnx.load(folder / "pipeline.onnx")
    assert [n.SerializeToString() for n in composed.graph.node] == [n.SerializeToString() for n in published.graph.node]


def test_a_drifted_step_fails_the_build(published_project: Path, monkeypatch: pytest.MonkeyPatch):
    """The validate stage's check, with the blur of the sigver style widened (sigma 2 -> 2.5)."""
    from stages.preprocess_graph import gaussian, publish

    folder = published_project / "models" / "signet_pth"
    original = gaussian.gaussian_blur

    def wider(g, x, sigma, *args, **kwargs):
        return original(
            g, x, [s * 1.25 for s in sigma] if isinstance(sigma, (list, tuple)) else sigma * 1.25, *args, **kwargs
        )

    monkeypatch.setattr(gaussian, "gaussian_blur", wider)
    for module in list(sys.modules.values()):
        if (
            getattr(module, "__name__", "").startswith("stages.preprocess_graph.")
            and getattr(module, "gaussian_blur", None) is original
        ):
            monkeypatch.setattr(module, "gaussian_blur", wider)
    monkeypatch.chdir(published_project)
    with pytest.raises(PipelineError, match="drifts from the Python preprocessing"):
        publish.graphs("signet_pth", model_spec("signet_pth"), (folder / "model.onnx").read_bytes())


REAL_SCANS = ["001_01.png", "001_02.png", "001_forg_0119001_01.png"]


@pytest.mark.parametrize("name", ["signet", "signet_pth", "signet_spp_300dpi", "cleaning"])
def test_the_package_gets_the_same_network_inputs_from_the_graph(published_project: Path, name: str):
    folder = published_project / "models" / name
    python = AutoORTModel.from_pretrained(folder, threads=1)
    graph = AutoORTModel.from_pretrained(folder, threads=1, preprocess="onnx")
    for scan in REAL_SCANS:
        path = shared_fixture("signatures", scan)
        expected = (
            python.prepare(path)
            if name != "cleaning"
            else python.folder.preprocessing.network_input(
                python.folder.preprocessing.image(python.folder.preprocessing.load(path)), "float32"
            )
        )
        assert np.array_equal(graph.prepare_all([path])[0], expected), scan


def test_verify_with_the_graph_equals_verify_in_python(published_project: Path):
    folder = published_project / "models" / "siamese"
    a, b = (shared_fixture("signatures", s) for s in REAL_SCANS[:2])
    python = AutoORTModel.from_pretrained(folder, threads=1).verify(a, b)
    graph = AutoORTModel.from_pretrained(folder, threads=1, preprocess="onnx").verify(a, b)
    assert graph == python


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "signature_onnx", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_a_refused_image_is_one_error_line(published_project: Path, tmp_path: Path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("L", (300, 200), 255).save(blank)
    result = cli(
        tmp_path,
        "embed",
        "--model",
        str(published_project / "models" / "signet"),
        "--preprocess",
        "onnx",
        "--out",
        str(tmp_path / "f.npy"),
        str(blank),
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert (
        lines[-1].startswith("error: ")
        and "the preprocessing refuses it" in lines[-1]
        and "Traceback" not in result.stderr
    )


def test_a_tampered_or_missing_graph_is_refused(published_project: Path, tmp_path: Path):
    folder = tmp_path / "signet"
    shutil.copytree(published_project / "models" / "signet", folder, copy_function=shutil.copyfile)
    graph = folder / "preprocess.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 1
    graph.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="preprocess.onnx: sha256"):
        AutoORTModel.from_pretrained(folder, preprocess="onnx")
    AutoORTModel.from_pretrained(folder)  # the Python preprocessing does not read it
    graph.unlink()
    with pytest.raises(ModelFolderError, match="preprocess.onnx: missing"):
        AutoORTModel.from_pretrained(folder, preprocess="onnx")
    with pytest.raises(ValueError, match="preprocess must be one of"):
        AutoORTModel.from_pretrained(folder, preprocess="opencv")


def test_a_gray_array_gives_the_same_input_as_its_file(published_project: Path):
    from PIL import Image

    folder = published_project / "models" / "signet_pth"
    path = shared_fixture("signatures", REAL_SCANS[0])
    gray = np.array(Image.open(path).convert("L"))
    graph = AutoORTModel.from_pretrained(folder, threads=1, preprocess="onnx")
    python = AutoORTModel.from_pretrained(folder, threads=1)
    assert np.array_equal(graph.prepare(gray), python.prepare(gray))
    with pytest.raises(ImageError):
        graph.prepare(np.full((50, 60), 255, np.uint8))
