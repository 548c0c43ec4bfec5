"""Rebuilds give identical bytes: the stand-ins, and the ONNX files once normalised by patch.

A rebuild is compared with the session's one build (`built_project`), never with a second build
of its own: the shared build ran in other processes on this CPU's own kernels.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
import yaml
from conftest import CAPPED_REBUILD, REPO, STEPS, copy_project, run_step
from onnx import helper

from stages.core import onnx_graph
from stages.core.digests import sha256_file as file_digest
from stages.core.params import model_spec, read_params_file


def digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def renumber_generated(model: onnx.ModelProto, offset: int) -> None:
    """Shift every exporter-generated number (`onnx::Conv_156`, `Conv_3`), as another trace would."""
    import re

    shift = lambda name: re.sub(
        r"(onnx::\w+?_|_output_|__)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + offset}", name
    )
    for node in model.graph.node:
        node.name = shift(node.name)
        node.input[:] = [shift(n) for n in node.input]
        node.output[:] = [shift(n) for n in node.output]
    for init in model.graph.initializer:
        init.name = shift(init.name)


def test_exporter_generated_names_are_normalised_away(built_project: Path, monkeypatch):
    """The real siamese export, and a copy whose generated names differ: patched bytes are equal."""
    from stages.patch import patch_model

    monkeypatch.chdir(built_project)
    spec = model_spec("siamese", REPO / "params.yaml")
    converted = built_project / "data" / "interim" / "siamese" / "converted.onnx"
    original, renamed = onnx.load(str(converted)), onnx.load(str(converted))
    renumber_generated(renamed, 1000)
    names = lambda m: {i.name for i in m.graph.initializer}
    assert names(original) != names(renamed) and any(n.startswith("onnx::") for n in names(original))
    patched = [onnx_graph.serialize(patch_model(m, "siamese", spec)) for m in (original, renamed)]
    assert patched[0] == patched[1]
    assert patched[0] == (built_project / "data" / "interim" / "siamese" / "patched.onnx").read_bytes()


def tiny_model(prefix: str, doc: str) -> onnx.ModelProto:
    """Relu(x * w) with exporter-style generated names carrying `prefix`."""
    weight = helper.make_tensor(f"onnx::Mul_{prefix}", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    nodes = [
        helper.make_node(
            "Mul", ["x", f"onnx::Mul_{prefix}"], [f"t__{prefix}"], name=f"block/Mul__{prefix}", doc_string=doc
        ),
        helper.make_node("Relu", [f"t__{prefix}"], ["y"], name=f"block/Relu__{prefix}"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        [weight],
        doc_string=doc,
    )
    model = helper.make_model(graph, producer_name="pytorch", doc_string=doc)
    model.producer_version = f"2.13.0+build{prefix}"
    return model


def normalised(model: onnx.ModelProto) -> bytes:
    onnx_graph.canonical_names(model)
    onnx_graph.strip_documentation(model)
    onnx_graph.pin_producer(model)
    return onnx_graph.serialize(model)


def test_generated_names_doc_strings_and_producer_strings_are_normalised():
    first = normalised(tiny_model("12", "/home/alice/export.py:40"))
    second = normalised(tiny_model("345", "/tmp/bob/export.py:41"))
    assert first == second
    model = onnx.load_from_string(first)
    assert [n.name for n in model.graph.node] == ["block/Mul_0", "block/Relu_1"]
    assert model.graph.initializer[0].name == "block/Mul_0/in1"
    assert model.producer_version == "2.13.0"
    onnx.checker.check_model(model, full_check=True)


def test_unknown_producer_is_refused():
    model = tiny_model("1", "")
    model.producer_name = "mystery-exporter"
    with pytest.raises(Exception, match="unexpected ONNX producer"):
        onnx_graph.pin_producer(model)


def test_interrupted_fetch_leaves_the_previous_folder(built_project: Path, tmp_path: Path):
    """A fetch that fails half way (here: params with a wrong file list) keeps the old data."""
    import shutil

    import yaml

    project = copy_project(tmp_path / "p")
    shutil.copytree(
        built_project / "data" / "raw" / "siamese", project / "data" / "raw" / "siamese", copy_function=shutil.copyfile
    )
    before = digests(project / "data" / "raw" / "siamese")
    params = read_params_file(project / "params.yaml")
    params["models"]["siamese"]["files"] = ["convnet_best_loss.pt", "missing.bin"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_step(project, "fetch", "siamese", check=False)
    assert result.returncode == 1 and "missing.bin" in result.stderr
    assert digests(project / "data" / "raw" / "siamese") == before
    assert sorted(os.listdir(project / "data" / "raw")) == ["siamese"], "no staging folder left behind"


def tracked_outputs(model: str, steps: tuple[str, ...]) -> list[str]:
    """What dvc.yaml declares as `model`'s outs and metrics of `steps`: each one hashed in dvc.lock."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = [entry for step in steps for kind in ("outs", "metrics") for entry in stages[step]["do"].get(kind, [])]
    return [(entry if isinstance(entry, str) else next(iter(entry))).replace("${key}", model) for entry in declared]


def tracked_digests(project: Path, outputs: list[str]) -> dict[str, str | dict[str, str]]:
    """sha256 of each output: of the file, or of every file of the folder."""
    return {out: digests(project / out) if (project / out).is_dir() else file_digest(project / out) for out in outputs}


@pytest.mark.parametrize("model", ["cleaning", "siamese"])
def test_tracked_outputs_do_not_depend_on_the_cpu_instruction_set(built_project: Path, tmp_path: Path, model: str):
    """Every stage rerun in other processes on capped kernels: metrics may move in their last bits,
    tracked outputs may not.

    The rebuild is a second build in another process too (another folder, time and hash seed),
    compared with the session's build (conftest.CAPPED_REBUILD): equal bytes prove both that a
    rebuild is byte identical and that the kernels do not matter (the shared build reproducing
    the committed dvc.lock, tests/test_end_to_end.py, is a rebuild on the default kernels of
    every model). Compared: every out and metric that dvc.yaml declares
    for fetch, convert and validate (the stand-in with its calibrated statistics, both
    ONNX files, the published folder); reports/<model>/validation.json and samples.csv are
    outside the published folder and dvc.lock, precisely because of this.
    """
    project = copy_project(tmp_path / "p")
    for step in STEPS:
        run_step(project, step, model, env=CAPPED_REBUILD)
    outputs = tracked_outputs(model, STEPS)
    assert {f"data/raw/{model}", f"data/interim/{model}/patched.onnx", f"models/{model}/model.onnx"} <= set(outputs)
    rebuilt, built = tracked_digests(project, outputs), tracked_digests(built_project, outputs)
    changed = [out for out in outputs if rebuilt[out] != built[out]]
    assert not changed, f"rebuilt on capped kernels, differ from the shared build: {changed}"


def test_measured_files_are_plots_outside_the_published_folder_and_dvc_lock():
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text())
    models = read_params_file(REPO / "params.yaml")["models"]
    # The only metrics are the tracked verdicts: `dvc metrics diff` loads them at any commit.
    assert "metrics" not in dvc_yaml
    assert dvc_yaml["stages"]["validate"]["do"]["metrics"] == ["models/${key}/verdict.json"]
    plotted = {file for plot in dvc_yaml["plots"] for spec in plot.values() for file in spec["y"]}
    assert plotted == {f"reports/{name}/samples.csv" for name in models}
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    hashed = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    assert not [path for path in hashed if path.endswith(("validation.json", "samples.csv", "variants.json"))]
