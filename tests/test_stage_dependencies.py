"""Stage dependencies follow the code each stage runs, and nothing a stage runs is left out.

dvc.yaml gives each stage its script, the shared core and the model's one family folder. The
session's full build (conftest.reproduced) runs every stage under an import tracer; here every
project module a stage process loaded must lie inside that stage's declared dependencies (as DVC
resolved them into dvc.lock), so narrowing the dependencies can never again miss a change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import REPO, dvc, traced_imports
from dvc.utils.hydra import apply_overrides
from remotes import checked, clone

sys.path.insert(0, str(REPO))
from stages.core.params import load_params  # noqa: E402
from stages.publish.lineage import build_code  # noqa: E402

STEPS = ("fetch", "convert", "validate", "derive")
CODE_ROOTS = ("stages", "signature_onnx")


def stage_imports(clone_dir: Path) -> dict[str, set[str]]:
    """'step@model' -> project files (relative to the clone) its processes imported, children included."""
    runs: dict[str, set[str]] = {}
    for trace in traced_imports(clone_dir).glob("*.json"):
        record = json.loads(trace.read_text())
        argv = record["orig_argv"]
        if "-m" not in argv or not argv[argv.index("-m") + 1].startswith("stages."):
            continue
        step, model = argv[argv.index("-m") + 1].removeprefix("stages."), argv[argv.index("-m") + 2]
        files = runs.setdefault(f"{step}@{model}", set())
        for file in record["files"]:
            path = Path(file)
            if path.is_relative_to(clone_dir) and path.relative_to(clone_dir).parts[0] in CODE_ROOTS:
                files.add(path.relative_to(clone_dir).as_posix())
    return runs


def undeclared(files: set[str], deps: list[str]) -> list[str]:
    """The files that lie inside none of the dependency paths `deps` (files or folders)."""
    declared = [PurePosixPath(dep) for dep in deps]
    return sorted(f for f in files if not any(PurePosixPath(f) == d or d in PurePosixPath(f).parents for d in declared))


def locked_deps(clone_dir: Path) -> dict[str, list[str]]:
    lock = yaml.safe_load((clone_dir / "dvc.lock").read_text())
    return {stage: [dep["path"] for dep in entry.get("deps", [])] for stage, entry in lock["stages"].items()}


def test_every_module_a_stage_imports_is_a_declared_dependency(reproduced):
    built, result = reproduced
    assert result.returncode == 0, result.stderr[-2000:]
    runs, deps = stage_imports(built), locked_deps(built)
    models = load_params(built / "params.yaml").models
    assert set(runs) == {f"{step}@{model}" for step in STEPS for model in models}, "every stage ran under the tracer"
    for stage, files in sorted(runs.items()):
        assert f"stages/{stage.split('@')[0]}.py" in files, stage  # the trace saw the stage itself
        assert undeclared(files, deps[stage]) == [], f"{stage} imports modules dvc.yaml does not declare"


def test_the_check_fails_when_a_stage_omits_a_module_it_imports(reproduced):
    """The same check on the real traces, with one dependency taken out of validate@siamese's list:
    it names the modules of that folder (the check is not vacuous)."""
    built, _ = reproduced
    runs, deps = stage_imports(built), locked_deps(built)
    for omitted in ("stages/families/torch_sigver", "stages/core", "signature_onnx", "stages/publish"):
        missing = undeclared(runs["validate@siamese"], [d for d in deps["validate@siamese"] if d != omitted])
        assert missing and all(f.startswith(omitted) for f in missing), (omitted, missing)
    # A family folder other than the model's own would not cover it either.
    wrong_family = [d.replace("torch_sigver", "lasagne_signet") for d in deps["derive@signet_pth"]]
    assert any("torch_sigver" in f for f in undeclared(runs["derive@signet_pth"], wrong_family))


def test_no_stage_imports_another_familys_code(reproduced):
    built, _ = reproduced
    models = load_params(built / "params.yaml").models
    for stage, files in stage_imports(built).items():
        family = models[stage.split("@")[1]].family
        others = [
            f for f in files if f.startswith("stages/families/") and f.count("/") > 2 and f.split("/")[2] != family
        ]
        assert others == [], (stage, others)


def test_validates_code_dependencies_are_the_lineage_code_digest(reproduced):
    """validate's code deps are what the published lineage's code_sha256 covers (build_code)."""
    built, _ = reproduced
    deps = locked_deps(built)
    for name, spec in load_params(built / "params.yaml").models.items():
        code = [d for d in deps[f"validate@{name}"] if d.split("/")[0] in CODE_ROOTS]
        assert sorted(code) == sorted(build_code(spec.family)), name


@pytest.mark.parametrize(
    ("edited", "family"),
    [
        ("stages/families/keras_cleaning/oracle.py", "keras_cleaning"),
        ("stages/families/lasagne_signet/layout.py", "lasagne_signet"),
    ],
)
def test_editing_one_familys_module_changes_only_that_familys_stages(
    reproduced, tmp_path: Path, edited: str, family: str
):
    built, _ = reproduced
    machine = clone(built, tmp_path / "machine", share_cache_of=built)
    checked(dvc(machine, "checkout"))
    assert json.loads(checked(dvc(machine, "status", "--json")).stdout) == {}
    with (machine / edited).open("a") as handle:
        handle.write("# an edit\n")
    status = json.loads(checked(dvc(machine, "status", "--json")).stdout)
    models = load_params(machine / "params.yaml").models
    changed_models = {stage.split("@")[1] for stage in status}
    assert changed_models == {name for name, spec in models.items() if spec.family == family}
    assert {stage.split("@")[0] for stage in status} == {"fetch", "convert", "validate", "derive"}


@pytest.mark.parametrize(
    ("assignment", "steps"),
    [
        # a family's tolerance: validation again, not conversion (convert reads onnx and preprocessing)
        ("families.lasagne_signet.validation.samples=12", {"validate", "derive"}),
        ("families.lasagne_signet.preprocessing.input_divisor=255", {"convert", "validate", "derive"}),
    ],
)
def test_a_family_block_edit_reruns_what_reads_it_for_that_familys_models(
    reproduced, tmp_path: Path, assignment: str, steps: set[str]
):
    built, _ = reproduced
    machine = clone(built, tmp_path / "machine", share_cache_of=built)
    checked(dvc(machine, "checkout"))
    apply_overrides(str(machine / "params.yaml"), [assignment])  # what `dvc exp run -S` writes
    status = json.loads(checked(dvc(machine, "status", "--json")).stdout)
    lasagne = {
        name for name, spec in load_params(built / "params.yaml").models.items() if spec.family == "lasagne_signet"
    }
    assert set(status) == {f"{step}@{name}" for step in steps for name in lasagne}
