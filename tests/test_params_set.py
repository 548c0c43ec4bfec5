"""`dvc exp run -S KEY=VALUE` on the repository's params.yaml: one line changes, and the value
DVC writes (YAML 1.2, e.g. `1e-07`) is read back as the type the schema expects.

The experiment runs in a scratch DVC project holding a copy of params.yaml and a trivial stage
that tracks one param: DVC's -S rewrite of the file is the same whatever the stage runs, so no
model is built (about two seconds).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, dvc, git
from dvc.utils.hydra import apply_overrides

from stages.core.errors import PipelineError
from stages.core.params import load_params, model_spec, read_params_file

KEY = "models.signet.validation.atol"
STAGE = f"""stages:
  check:
    cmd: python -c "print('ok')"
    params:
      - {KEY}
"""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A committed DVC project: the repository's params.yaml and a stage tracking one param."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    (project / "dvc.yaml").write_text(STAGE)
    git(project, "init", "-q")
    git(project, "config", "user.name", "ci")  # `dvc exp run` commits the experiment
    git(project, "config", "user.email", "ci@example.com")
    assert dvc(project, "init", "-q").returncode == 0
    git(project, "add", "-A")
    git(project, "commit", "-qm", "scratch")
    return project


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_set_param_changes_one_line_and_loads(scratch: Path):
    result = dvc(scratch, "exp", "run", "-S", f"{KEY}=1e-7")
    assert result.returncode == 0, result.stderr[-2000:]
    diff = git(scratch, "diff", "--unified=0", "params.yaml")
    lines = changed_lines(diff)
    assert len(lines) == 2, diff[:3000]  # DVC rewrote more of the file than the one value
    assert lines[0].startswith("-      atol: ") and lines[1] == "+      atol: 1e-07"
    atol = read_params_file(scratch / "params.yaml")["models"]["signet"]["validation"]["atol"]
    assert type(atol) is float and atol == 1e-7
    assert model_spec("signet", scratch / "params.yaml").validation.atol == 1e-7


def read_value(tmp_path: Path, text: str) -> object:
    path = tmp_path / "value.yaml"
    path.write_text(f"x: {text}\n")
    return read_params_file(path)["x"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-7", 1e-7),
        ("1E-7", 1e-7),
        (".5", 0.5),
        ("5e-3", 5e-3),
        ("1.0e+2", 100.0),
        ("1e-07", 1e-7),
        ("2.0e-6", 2e-6),
        ("-1.5", -1.5),
        ("3", 3),
        ("true", True),
        ("false", False),
    ],
)
def test_values_read_as_dvc_reads_them(tmp_path: Path, text: str, expected: object):
    value = read_value(tmp_path, text)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", ["yes", "off", "abc", "1e", "1.2.3"])
def test_other_words_stay_strings(tmp_path: Path, text: str):
    """YAML 1.2 (DVC, and so dvc.lock) reads these as strings; so does the project."""
    assert read_value(tmp_path, text) == text


def test_special_floats_still_read(tmp_path: Path):
    assert read_value(tmp_path, ".inf") == math.inf and read_value(tmp_path, "-.Inf") == -math.inf
    assert math.isnan(read_value(tmp_path, ".nan"))


def params_set(tmp_path: Path, assignment: str) -> Path:
    """A copy of the repository's params.yaml with `assignment` applied as `dvc exp run -S` does."""
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    apply_overrides(path, [assignment])  # DVC's own -S function (dvc.utils.hydra)
    return path


@pytest.mark.parametrize(
    ("assignment", "field", "expected"),
    [
        ("models.signet_pth.validation.atol=1e-7", "validation.atol", 1e-7),
        ("models.signet_pth.validation.atol=1E-7", "validation.atol", 1e-7),
        ("models.signet_pth.validation.atol=.5", "validation.atol", 0.5),
        ("models.signet_pth.validation.atol=5e-3", "validation.atol", 5e-3),
        ("models.signet_pth.validation.atol=1.0e+2", "validation.atol", 100.0),
        ("models.signet_pth.validation.atol=2", "validation.atol", 2.0),
        # a family default, and the same key given to one model (`++`: the entry lacks it)
        ("families.torch_sigver.validation.samples=12", "validation.samples", 12),
        ("++models.signet_pth.validation.samples=12", "validation.samples", 12),
        ("models.signet_pth.network.forgery_head=true", "network.forgery_head", True),
        ("models.signet_pth.network.forgery_head=false", "network.forgery_head", False),
    ],
)
def test_what_a_user_types_loads_as_the_schema_type(tmp_path: Path, assignment: str, field: str, expected: object):
    spec = model_spec("signet_pth", params_set(tmp_path, assignment))
    section, name = field.split(".")
    value = getattr(getattr(spec, section), name)
    assert value == expected and type(value) is type(expected)


def test_moving_an_entrys_only_key_to_the_family_leaves_a_readable_file(tmp_path: Path):
    """`~KEY` deletes a key; on a section holding one key a comment inside the section would be
    left alone under it, and no YAML reader accepts the file (params.yaml keeps such comments
    above the section)."""
    path = params_set(tmp_path, "++families.lasagne_signet.validation.atol=1.5e-4")
    apply_overrides(path, ["~models.signet.validation.atol"])
    assert model_spec("signet", path).validation.atol == 1.5e-4  # the family's, now


def test_a_family_default_reaches_every_model_of_the_family_and_an_entry_overrides_it(tmp_path: Path):
    """One line under `families` changes every model of the family; `++models.X...` only X."""
    family_wide = tmp_path / "family"
    family_wide.mkdir()
    models = load_params(params_set(family_wide, "families.lasagne_signet.validation.samples=5")).models
    assert {name: spec.validation.samples for name, spec in models.items() if spec.family == "lasagne_signet"} == {
        "signet": 5,
        "signet_f_lambda0_95": 5,
        "signet_f_lambda0_999": 5,
        "signet_spp_300dpi": 12,  # the SPP entries give their own
        "signet_spp_600dpi": 12,
    }
    assert models["signet_pth"].validation.samples == 8  # another family: untouched
    one_model = tmp_path / "one"
    one_model.mkdir()
    models = load_params(params_set(one_model, "++models.signet.validation.samples=3")).models
    assert models["signet"].validation.samples == 3 and models["signet_f_lambda0_95"].validation.samples == 8


@pytest.mark.parametrize(
    ("assignment", "written_at", "expected"),
    [
        (
            "models.signet_pth.validation.atol=abc",
            "models.signet_pth.validation.atol",
            "Input should be a valid number",
        ),
        (
            "families.torch_sigver.validation.samples=eight",
            "families.torch_sigver.validation.samples",
            "Input should be a valid integer",
        ),
        # DVC writes `yes` and records the string "yes" in dvc.lock: never read as true.
        (
            "models.signet_pth.network.forgery_head=yes",
            "models.signet_pth.network.forgery_head",
            "Input should be a valid boolean",
        ),
    ],
)
def test_a_typo_is_refused_naming_the_key(tmp_path: Path, assignment: str, written_at: str, expected: str):
    """The message names the key where the bad value was written: the entry, or its family's block."""
    path = params_set(tmp_path, assignment)
    with pytest.raises(PipelineError) as caught:
        model_spec("signet_pth", path)
    assert str(caught.value).splitlines() == [f"{path}: invalid parameters:", f"  {written_at}: {expected}"]


def test_a_stage_prints_the_typo_as_one_error_line(tmp_path: Path):
    path = params_set(tmp_path, f"{KEY}=abc")
    result = subprocess.run(
        [sys.executable, "-m", "stages.fetch", "signet", "--params", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: {path}: invalid parameters:",
        f"  {KEY}: Input should be a valid number",
    ]
