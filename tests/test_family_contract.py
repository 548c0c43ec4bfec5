"""The family contract: everything a model family knows lives in its folder or in params.yaml.

Shared code (`stages/` outside `stages/families/<family>/`, and `signature_onnx/`) reaches a
family only through its name in params (`stages.families.load_family`,
`stages.core.family_facts.family_facts`), so adding or removing a family edits no shared file.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from signature_onnx.folder import TASKS
from stages.core.errors import PipelineError
from stages.core.family_facts import Architecture, family_facts, known_families
from stages.core.params import load_params, model_spec, read_params_file

FAMILIES_DIR = REPO / "stages" / "families"
SHARED_ROOTS = (REPO / "stages", REPO / "signature_onnx")


def family_names() -> list[str]:
    """The families as folders, so the test needs no project import to know them."""
    return sorted(d.name for d in FAMILIES_DIR.iterdir() if (d / "__init__.py").is_file())


def shared_files() -> list[Path]:
    """Every .py file of the shared code: the roots, less each family's own folder."""
    own = [FAMILIES_DIR / name for name in family_names()]
    files = (f for root in SHARED_ROOTS for f in root.rglob("*.py"))
    return sorted(f for f in files if not any(f.is_relative_to(folder) for folder in own))


def family_mentions(files: list[Path], names: list[str], root: Path = REPO) -> list[str]:
    """'file:line: text' (file relative to `root`) for every line of `files` that names one of `names`."""
    pattern = re.compile("|".join(re.escape(name) for name in names))
    found = []
    for file in files:
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{file.relative_to(root)}:{number}: {line.strip()}")
    return found


@pytest.mark.quick
def test_the_families_are_found():
    assert len(family_names()) >= 2, family_names()
    shared = shared_files()
    assert REPO / "stages" / "core" / "params.py" in shared
    assert REPO / "stages" / "families" / "__init__.py" in shared
    assert not [f for f in shared if f.parent.parent == FAMILIES_DIR]  # no family's own module


@pytest.mark.quick
def test_no_shared_module_names_a_family():
    mentions = family_mentions(shared_files(), family_names())
    assert mentions == [], "shared code names a family:\n" + "\n".join(mentions)


@pytest.mark.quick
def test_the_check_finds_a_family_name(tmp_path: Path):
    """Not vacuous: a shared-looking file naming a family is reported with its file and line."""
    module = tmp_path / "shared.py"
    name = family_names()[0]
    module.write_text(f'"""Generic."""\n\nKNOWN = "{name}"\n')
    assert family_mentions([module], family_names(), tmp_path) == [f'shared.py:3: KNOWN = "{name}"']


@pytest.mark.quick
def test_every_family_declares_its_facts():
    """Each family folder's facts.py holds what the shared stages read, and params use it."""
    assert known_families() == tuple(family_names())
    for family in known_families():
        facts = family_facts(family)
        assert facts.ARCHITECTURES and all(isinstance(a, Architecture) for a in facts.ARCHITECTURES.values()), family
        assert all(a.task in TASKS for a in facts.ARCHITECTURES.values()), family  # the package knows only these
        assert isinstance(facts.MAX_BYTES, int) and facts.MAX_BYTES > 0, family
        assert callable(facts.card_preprocessing), family
    for name, spec in load_params(REPO / "params.yaml").models.items():
        assert spec.network.architecture in family_facts(spec.family).ARCHITECTURES, name


@pytest.mark.quick
def test_a_models_params_load_only_its_own_familys_facts():
    """A stage checks its params entry: that must load no other family's folder, nor any framework."""
    probe = (
        "import sys; from stages.core.params import model_spec; model_spec(sys.argv[1]).task\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    print(name.split('.')[0], getattr(module, '__file__', None) or '')"
    )
    families_dir = (REPO / "stages" / "families").as_posix()
    for name, spec in load_params(REPO / "params.yaml").models.items():
        loaded = subprocess.run(
            [sys.executable, "-c", probe, name], cwd=REPO, capture_output=True, text=True, check=True
        )
        modules = [line.split(" ", 1) for line in loaded.stdout.splitlines()]
        assert [file for _, file in modules if file.startswith(families_dir)] == [
            f"{families_dir}/{spec.family}/facts.py"
        ], name
        assert not {top for top, _ in modules} & {"torch", "tensorflow", "onnx", "onnxruntime"}, name


@pytest.mark.quick
def test_an_unknown_family_is_one_error_naming_the_key_and_the_known_families(tmp_path: Path):
    params = copy.deepcopy(read_params_file(REPO / "params.yaml"))
    params["models"]["cleaning"]["family"] = "caffe"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    known = ", ".join(family_names())
    expected = [
        f"{path}: models.cleaning.family: 'caffe' is not a model family; known (the folders of stages/families/): {known}",
    ]
    for load in (lambda: load_params(path), lambda: model_spec("cleaning", path)):
        with pytest.raises(PipelineError) as caught:
            load()
        assert str(caught.value).splitlines() == expected
    # Another model's entry is not this model's stage's concern (its stages depend on their own entry).
    assert model_spec("siamese", path).family in family_names()


@pytest.mark.quick
def test_a_name_from_params_never_reaches_a_path():
    with pytest.raises(PipelineError, match="unknown family '../core'"):
        family_facts("../core")
