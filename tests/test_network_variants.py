"""What an upstream file holds is declared in params (`network`), never inferred from its name.

- The same bytes under another file name convert to the same graph (SigNet pickle, SigNet-F .pth).
- The Siamese notebook's two public variants (`projection2d` false / true) both convert and
  validate; a checkpoint of the other variant fails naming the key to set.
- A SigNet .pth whose forgery head contradicts `forgery_head` fails naming the key.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from conftest import REPO, copy_project, run_step

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec, model_spec, read_params_file
from stages.families import load_family
from stages.families.torch_sigver import siamese as torch_siamese


def spec(name: str, **network: bool) -> ModelSpec:
    base = model_spec(name, REPO / "params.yaml")
    return base.model_copy(update={"network": base.network.model_copy(update=network)}) if network else base


def renamed(base: ModelSpec, file: str) -> ModelSpec:
    return base.model_copy(update={"files": [file]})


@pytest.mark.parametrize(
    ("model", "other_name"), [("signet", "weights_v1.bin"), ("signet_f_lambda0_95_pth", "checkpoint.pt")]
)
def test_the_same_bytes_under_another_name_convert_to_the_same_graph(tmp_path: Path, model: str, other_name: str):
    original = spec(model)
    family = load_family(original.family)
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    family.write_builtin(first, original)
    shutil.copyfile(first / original.files[0], second / other_name)
    family.convert(first, original, tmp_path / "a.onnx")
    family.convert(second, renamed(original, other_name), tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


@pytest.fixture(scope="module")
def projection2d_project(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A scratch project whose one model is the Siamese notebook copy with projection2d (outputs
    (1, 2)), after its fetch stage: the builtin checkpoint of that variant, written once for the
    module (the other-variant test reads it, the pipeline test runs the later stages). Deleted
    when the module is done, unless one of its tests failed."""
    project = copy_project(tmp_path_factory.mktemp("projection2d") / "project")
    params = read_params_file(project / "params.yaml")
    siamese = params["models"]["siamese"]
    siamese["network"]["projection2d"] = True
    for output in siamese["onnx"]["outputs"][:2]:
        output["shape"] = [1, 2]
    params["models"] = {"siamese": siamese}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_step(project, "fetch", "siamese")
    failed = request.session.testsfailed
    yield project
    if request.session.testsfailed == failed:
        shutil.rmtree(project.parent)


@pytest.mark.parametrize("written_as", [False, True])
def test_a_siamese_checkpoint_of_the_other_variant_names_the_key(
    tmp_path: Path, written_as: bool, request: pytest.FixtureRequest
):
    if written_as:  # what write_builtin writes for this variant, written by the fetch stage
        raw = request.getfixturevalue("projection2d_project") / "data" / "raw" / "siamese"
    else:
        raw = tmp_path
        torch_siamese.write_builtin(raw, spec("siamese", projection2d=written_as))
    declared = spec("siamese", projection2d=not written_as)
    expected = f"network.projection2d: {str(written_as).lower()}"
    with pytest.raises(PipelineError, match=expected) as caught:
        torch_siamese.check_loadable(raw, declared)
    assert "probs.weight is (1, " in str(caught.value)


@pytest.mark.parametrize("written_as", [False, True])
def test_a_pth_whose_forgery_head_contradicts_params_names_the_key(tmp_path: Path, written_as: bool):
    family = load_family("torch_sigver")
    family.write_builtin(tmp_path, spec("signet_pth", forgery_head=written_as))
    with pytest.raises(PipelineError, match=f"network.forgery_head: {str(written_as).lower()}"):
        family.check_loadable(tmp_path, spec("signet_pth", forgery_head=not written_as))


def test_the_projection2d_variant_converts_and_validates(projection2d_project: Path):
    """The notebook copy whose outputs are the 2-d projections: every stage (fetch in the
    fixture), PyTorch and the independent oracle both agree with ONNX Runtime, and the outputs
    are (1, 2)."""
    project = projection2d_project
    siamese = read_params_file(project / "params.yaml")["models"]["siamese"]
    for step in ("convert", "validate"):  # convert patches too (stages/convert.py)
        run_step(project, step, "siamese")
    model = onnx.load(str(project / "models" / "siamese" / "model.onnx"))
    shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    assert shapes == [[1, 2], [1, 2], [1, 1]]
    metrics = json.loads((project / "reports" / "siamese" / "validation.json").read_text())
    assert metrics["independent_reference"]["reference"] == "NumPy float64 oracle"
    assert metrics["outputs"]["output0"]["max_abs_error"] <= siamese["validation"]["atol"]
    # The published graph really applies projection2d: its (2, 2048) weight is a constant of it.
    constants = [np.asarray(onnx.numpy_helper.to_array(t)).shape for t in model.graph.initializer]
    assert (2, 2048) in constants or (2048, 2) in constants
