"""Test vectors (step `vectors` of stage `derive`): they pass in ONNX Runtime for Python and Node.js, catch a tampered
vector or model, and their bytes do not depend on the CPU's instruction sets."""

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
from conftest import REPO, run_step, shared_fixture
from onnx import numpy_helper

ONNXRUNTIME_NODE = "onnxruntime-node@1.30.0"
PNGJS = "pngjs@7.0.0"  # the PNG decoder of examples/node/pipeline.mjs (pinned in its package.json too)
NODE_SCRIPT = REPO / "tests" / "node" / "check_vectors.mjs"
PIPELINE_SCRIPT = REPO / "examples" / "node" / "pipeline.mjs"


def vector_models() -> tuple[str, ...]:
    """One model of each family and input kind (the other SigNets share their family's code)."""
    return ("cleaning", "siamese", "signet", "signet_spp_300dpi", "signet_pth")


@pytest.fixture(scope="module")
def vectors_project(published_project: Path) -> Path:
    """The shared build's project: `dvc repro` ran the vectors stage of every model already."""
    for model in vector_models():
        assert (published_project / "models" / model / "test_vectors.json").is_file(), model
    return published_project


def cli(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "signature_onnx", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and (p.name == "test_vectors.json" or p.parent.name.startswith("test_data_set_"))
    }


@pytest.mark.parametrize("model", vector_models())
def test_every_models_vectors_pass_in_onnx_runtime(vectors_project: Path, model: str):
    folder = vectors_project / "models" / model
    assert [p.name for p in sorted(folder.glob("test_data_set_*"))] == ["test_data_set_0", "test_data_set_1"]
    graph = onnx.load(folder / "model.onnx")
    for test_set in folder.glob("test_data_set_*"):
        names = [onnx.load_tensor(str(p)).name for p in sorted(test_set.glob("input_*.pb"))]
        assert names == [i.name for i in graph.graph.input]
    result = cli(vectors_project, "check-vectors", str(folder))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == 4  # model.onnx's two sets, then pipeline.onnx's (raw pixels in)
    assert "pipeline_test_data/test_data_set_1: ok" in result.stdout
    pixels = onnx.load_tensor(str(folder / "pipeline_test_data" / "test_data_set_0" / "input_0.pb"))
    assert pixels.data_type == onnx.TensorProto.UINT8 and len(pixels.dims) == 3 and pixels.dims[2] == 3


def test_a_tampered_pipeline_vector_fails(vectors_project: Path, tmp_path: Path):
    folder = tmp_path / "signet_pth"
    shutil.copytree(vectors_project / "models" / "signet_pth", folder, copy_function=shutil.copyfile)
    path = folder / "pipeline_test_data" / "test_data_set_0" / "input_0.pb"
    tensor = onnx.load_tensor(str(path))
    pixels = numpy_helper.to_array(tensor).copy()
    ink = np.argwhere(pixels[..., 0] < 100)[0]
    pixels[ink[0], ink[1]] = 255  # one ink pixel turned to paper: the features move
    pixels[pixels.shape[0] // 2 :, :] = 255  # and the lower half erased
    path.write_bytes(numpy_helper.from_array(pixels, tensor.name).SerializeToString())
    result = cli(vectors_project, "check-vectors", str(folder))
    assert result.returncode == 1
    assert "pipeline_test_data/test_data_set_0: FAILED" in result.stdout and "test_data_set_0: ok" in result.stdout


def test_a_tampered_expected_output_fails_naming_the_element(vectors_project: Path, tmp_path: Path):
    folder = tmp_path / "signet"
    shutil.copytree(vectors_project / "models" / "signet", folder, copy_function=shutil.copyfile)
    path = folder / "test_data_set_1" / "output_1.pb"
    tensor = onnx.load_tensor(str(path))
    values = numpy_helper.to_array(tensor).copy()
    values[1, 7] += 1e-3
    path.write_bytes(numpy_helper.from_array(values, tensor.name).SerializeToString())
    result = cli(vectors_project, "check-vectors", str(folder))
    assert result.returncode == 1
    assert "test_data_set_1: FAILED" in result.stdout and "test_data_set_0: ok" in result.stdout
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "fc2, element (1, 7)" in error[0], result.stderr


def test_a_perturbed_model_fails_its_vectors(vectors_project: Path, tmp_path: Path):
    folder = tmp_path / "signet_spp_300dpi"
    shutil.copytree(vectors_project / "models" / "signet_spp_300dpi", folder, copy_function=shutil.copyfile)
    model = onnx.load(folder / "model.onnx")
    weight = next(t for t in model.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] += 0.05
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, folder / "model.onnx")
    result = cli(vectors_project, "check-vectors", str(folder))  # refused at load: not the model its lineage names
    assert result.returncode == 1 and "sha256" in result.stderr, result.stdout + result.stderr
    result = cli(vectors_project, "check-vectors", str(folder), "--no-integrity-check")
    assert result.returncode == 1 and "FAILED" in result.stdout, result.stdout + result.stderr


def test_vector_bytes_do_not_depend_on_the_cpus_instruction_sets(vectors_project: Path, tmp_path: Path):
    """Rebuilt with other BLAS kernels requested, numpy's, OpenCV's and glibc's AVX paths off: same bytes."""
    capped = tmp_path / "capped"
    capped.mkdir()
    shutil.copy2(vectors_project / "params.yaml", capped / "params.yaml")
    shutil.copytree(REPO / "stages", capped / "stages", dirs_exist_ok=True)
    shutil.copytree(REPO / "signature_onnx", capped / "signature_onnx", dirs_exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(capped),
        "OPENBLAS_CORETYPE": "Sandybridge",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        "OPENCV_CPU_DISABLE": "AVX,AVX2,FMA3,AVX_512F,AVX512_SKX,AVX512_ICL",
        "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-AVX512F,-FMA,-AVX",
    }
    for model in ("signet", "signet_spp_300dpi"):
        for part in (f"data/raw/{model}", f"models/{model}"):
            shutil.copytree(vectors_project / part, capped / part, dirs_exist_ok=True, copy_function=shutil.copyfile)
        for test_set in (capped / "models" / model).glob("test_data_set_*"):
            shutil.rmtree(test_set)
        result = subprocess.run(
            [sys.executable, "-m", "stages.vectors", model], cwd=capped, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert digests(capped / "models" / model) == digests(vectors_project / "models" / model)


UNPINNED = """
import hashlib, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from onnx import load_tensor, numpy_helper
from stages.core.params import model_spec
from stages.families.lasagne_signet.pickle_file import load_checked
from stages.families.lasagne_signet.oracle import LasagneOracle
spec = model_spec("signet")
variant = spec.network.architecture
content, _ = load_checked(Path("data/raw/signet") / spec.files[0], variant)
x = numpy_helper.to_array(load_tensor("models/signet/test_data_set_1/input_0.pb"))
print(hashlib.sha256(LasagneOracle(variant, content.params)(x)["fc1"].tobytes()).hexdigest())  # float64 bits
"""


def test_unpinned_blas_kernels_would_change_the_float64_bits(vectors_project: Path):
    """Why the stage pins its kernels: the same float64 oracle under the CPU's own OpenBLAS kernel and
    under Prescott's gives other float64 bits (on this machine kind, with AVX512)."""
    runs = {}
    for kernel in ("", "Prescott"):
        env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_CORETYPE"}
        if kernel:
            env["OPENBLAS_CORETYPE"] = kernel
        result = subprocess.run(
            [sys.executable, "-c", UNPINNED, str(REPO)], cwd=vectors_project, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-2000:]
        runs[kernel] = result.stdout.strip()
    if not cpu_has_avx2():
        pytest.skip("this CPU's own OpenBLAS kernel is an SSE one: nothing to compare")
    assert runs["Prescott"] != runs[""]


def cpu_has_avx2() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__

    return bool(__cpu_features__.get("AVX2"))


def test_the_vectors_stage_needs_the_published_model(project: Path):
    result = run_step(project, "vectors", "signet", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: models/signet/model.onnx: not found")


# ---- a second runtime: onnxruntime-node --------------------------------------------------------


@pytest.fixture(scope="module")
def onnxruntime_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding onnxruntime-node from the npm registry (its CPU binaries ship in the package;
    --ignore-scripts skips the install script, which would try to download more)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("node and npm are required in CI (.ci/run installs them)")
        pytest.skip("node/npm not installed")
    folder = tmp_path_factory.mktemp("node")
    result = subprocess.run(
        [
            "npm",
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            ONNXRUNTIME_NODE,
            PNGJS,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        message = f"npm install {ONNXRUNTIME_NODE} failed: {result.stderr[-1500:]}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def node_check(folder: Path, model_dir: Path) -> tuple[int, dict]:
    result = subprocess.run(["node", str(NODE_SCRIPT), str(model_dir)], cwd=folder, capture_output=True, text=True)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize("model", vector_models())
def test_every_models_vectors_pass_in_onnxruntime_node(vectors_project: Path, onnxruntime_node: Path, model: str):
    code, report = node_check(onnxruntime_node, vectors_project / "models" / model)
    assert code == 0, report
    sets = ["test_data_set_0", "test_data_set_1"]
    assert [s["name"] for s in report["sets"]] == sets + [f"pipeline_test_data/{name}" for name in sets]  # pixels in
    assert all(s["passed"] for s in report["sets"])


def test_node_catches_a_tampered_vector(vectors_project: Path, onnxruntime_node: Path, tmp_path: Path):
    folder = tmp_path / "cleaning"
    shutil.copytree(vectors_project / "models" / "cleaning", folder, copy_function=shutil.copyfile)
    path = folder / "test_data_set_0" / "output_0.pb"
    tensor = onnx.load_tensor(str(path))
    values = numpy_helper.to_array(tensor).copy()
    values[0, 100, 100, 1] += 1e-3
    path.write_bytes(numpy_helper.from_array(values, tensor.name).SerializeToString())
    code, report = node_check(onnxruntime_node, folder)
    assert code == 1
    assert not report["sets"][0]["passed"] and report["sets"][1]["passed"]
    assert report["sets"][0]["failure"].startswith(f"output[{(100 * 224 + 100) * 3 + 1}]")


# ---- an application without Python: examples/node/pipeline.mjs --------------------------------


def node_pipeline(folder: Path, model_dir: Path, *images: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["node", str(PIPELINE_SCRIPT), str(model_dir), *map(str, images)], cwd=folder, capture_output=True, text=True
    )


def test_the_example_package_json_pins_what_the_tests_install():
    pinned = json.loads((PIPELINE_SCRIPT.parent / "package.json").read_text())["dependencies"]
    assert {f"{name}@{version}" for name, version in pinned.items()} == {ONNXRUNTIME_NODE, PNGJS}


@pytest.mark.parametrize("model", ["signet_pth", "signet", "signet_spp_300dpi"])
def test_node_turns_a_png_into_the_features_embed_gives(
    vectors_project: Path, onnxruntime_node: Path, tmp_path: Path, model: str
):
    scan = shared_fixture("signatures", "001_01.png")
    folder = vectors_project / "models" / model
    result = node_pipeline(onnxruntime_node, folder, scan)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] == {"input": True}
    out = tmp_path / "features.npy"
    embedded = cli(vectors_project, "embed", "--model", str(folder), "--out", str(out), "-q", str(scan))
    assert embedded.returncode == 0, embedded.stderr
    python = np.load(out)[0]
    node = np.array(report["outputs"]["fc2"]["data"], dtype=np.float32)
    tolerance = json.loads((folder / "test_vectors.json").read_text())["tolerance"]
    assert node.shape == python.shape
    assert np.all(np.abs(node - python) <= tolerance["atol"] + tolerance["rtol"] * np.abs(python)), np.abs(
        node - python
    ).max()


def test_node_verifies_a_pair_as_the_package_does(vectors_project: Path, onnxruntime_node: Path):
    a, b = shared_fixture("signatures", "001_01.png"), shared_fixture("signatures", "001_02.png")
    folder = vectors_project / "models" / "siamese"
    result = node_pipeline(onnxruntime_node, folder, a, b)
    assert result.returncode == 0, result.stderr
    logit = json.loads(result.stdout)["outputs"]["output2"]["data"][0]
    verified = cli(vectors_project, "verify", "--model", str(folder), "--json", str(a), str(b))
    assert verified.returncode == 0, verified.stderr
    assert abs(logit - json.loads(verified.stdout)["logit"]) <= 1e-4


def test_node_refuses_a_blank_page_with_one_error_line(vectors_project: Path, onnxruntime_node: Path, tmp_path: Path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), "white").save(blank)
    result = node_pipeline(onnxruntime_node, vectors_project / "models" / "signet_pth", blank)
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the preprocessing refuses the image for input")
