"""The patch step refuses what does not match params, each time in one line naming the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import copy_project, run_step

from stages.core.params import read_params_file


@pytest.fixture
def siamese_project(built_project: Path, tmp_path: Path) -> Path:
    project = copy_project(tmp_path / "p")
    for part in ("data/raw/siamese", "data/interim/siamese"):
        shutil.copytree(built_project / part, project / part, copy_function=shutil.copyfile)
    return project


def edit_params(project: Path, edit) -> None:
    params = read_params_file(project / "params.yaml")
    edit(params["models"]["siamese"]["onnx"])
    (project / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda onnx: onnx["inputs"][0].update(source_name="image"),
            "the converted graph has no input 'image' (it has ['img1', 'img2'])",
        ),
        (lambda onnx: onnx["inputs"][0].update(dtype="float32"), "'img1' is UINT8, params say float32"),
        (lambda onnx: onnx["outputs"][0].update(shape=[1, 1024]), "the patched graph is not valid ONNX"),
        (lambda onnx: onnx["outputs"][2].update(source_name="score"), "has no output 'score'"),
    ],
)
def test_patch_refuses_params_that_do_not_match_the_graph(siamese_project: Path, edit, message: str):
    before = (siamese_project / "data/interim/siamese/patched.onnx").read_bytes()
    edit_params(siamese_project, edit)
    result = run_step(siamese_project, "patch", "siamese", check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert (siamese_project / "data/interim/siamese/patched.onnx").read_bytes() == before


def test_damaged_intermediate_files_get_one_line(siamese_project: Path):
    converted = siamese_project / "data/interim/siamese/converted.onnx"
    converted.write_bytes(converted.read_bytes()[:1000])
    result = run_step(siamese_project, "patch", "siamese", check=False)
    assert result.returncode == 1 and "not a readable ONNX file" in result.stderr and "Traceback" not in result.stderr

    patched = siamese_project / "data/interim/siamese/patched.onnx"
    patched.write_bytes(patched.read_bytes()[:1000])
    result = run_step(siamese_project, "validate", "siamese", check=False)
    assert (
        result.returncode == 1 and "ONNX Runtime cannot load it" in result.stderr and "Traceback" not in result.stderr
    )
    assert not (siamese_project / "models").exists()
