"""Adding a model is one params entry plus `python -m stages.generate_dvc_yaml`.

dvc.yaml's top-level plots and artifacts (DVC has no foreach for them) are written from
params.yaml: the committed file must be what the command gives, `--check` names what is out of
date, and a tenth model (another seed of SigNet) added that way builds and is found in the registry.
The module is in conftest's NOT_QUICK (the last test builds one model); the file-only tests are
marked quick by hand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, dvc, fresh_clone, git

from stages.generate_dvc_yaml import BLOCKS, begin_marker, end_marker

COMMAND = ("-m", "stages.generate_dvc_yaml")
NEW_MODEL, NEW_SEED = "signet_seed4101", 4101  # another stand-in of the cheapest family's SigNet
NEW_ARTIFACT = "signet-seed4101"


def generator(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m stages.generate_dvc_yaml` run in `project` with the code it holds, as a user would."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [sys.executable, *COMMAND, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def params_with_another_signet(params_text: str, name: str = NEW_MODEL, seed: int = NEW_SEED) -> str:
    """params.yaml with a copy of the `signet` entry under another name and seed, appended as a user
    would paste it (the models map is the file's last block)."""
    lines = params_text.splitlines(keepends=True)
    start = lines.index("  signet:\n")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].strip() or re.match(r"^  \S", lines[i]))
    entry = "".join(lines[start:end])
    assert entry.count("seed: 4001\n") == 1, entry
    entry = entry.replace("  signet:\n", f"  {name}:\n", 1).replace("seed: 4001\n", f"seed: {seed}\n")
    entry = entry.replace("      SigNet (sigver_wiwd,", f"      SigNet, stand-in seed {seed} (sigver_wiwd,", 1)
    return params_text.rstrip("\n") + "\n\n" + entry


def validated_on_fewer_samples(params_text: str, name: str = NEW_MODEL, samples: int = 3) -> str:
    """params.yaml whose entry `name` is validated on `samples` drawn signatures and no strokes
    instead of 8 and 16: a valid entry whose validate stage does a fraction of the oracle's work
    (the mechanics are the point; `signet` itself is validated on the full set)."""
    head, header, entry = params_text.partition(f"\n  {name}:\n")
    section = "    validation:\n"  # the entry's own keys win over the family's 8 and 16
    assert header and entry.count(section) == 1 and "samples:" not in entry, entry
    return head + header + entry.replace(section, f"{section}      samples: {samples}\n      stroke_samples: 0\n")


def outside_generated_blocks(text: str) -> str:
    """dvc.yaml without what lies between the generated blocks' markers (the markers kept)."""
    for block in BLOCKS:
        head, rest = text.split(begin_marker(block) + "\n", 1)
        _, tail = rest.split(end_marker(block) + "\n", 1)
        text = head + begin_marker(block) + "\n" + end_marker(block) + "\n" + tail
    return text


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """params.yaml and dvc.yaml of the repository, and the code the command runs."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy2(REPO / name, tmp_path / name)
    for package in ("stages", "signature_onnx"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.quick
def test_dvc_yaml_is_what_params_yaml_gives():
    """Fails when params.yaml changed without `python -m stages.generate_dvc_yaml` (or a block was hand-edited)."""
    result = generator(REPO, "--check")
    assert result.returncode == 0, result.stderr
    assert "match params.yaml" in result.stderr


@pytest.mark.quick
def test_check_names_a_params_entry_added_without_regenerating(scratch: Path):
    before = (scratch / "dvc.yaml").read_text()
    (scratch / "params.yaml").write_text(params_with_another_signet((scratch / "params.yaml").read_text()))
    stale = generator(scratch, "--check")
    assert stale.returncode == 1 and "Traceback" not in stale.stderr
    assert stale.stderr.count("error:") == 1 and stale.stderr.startswith("error: dvc.yaml: ")
    assert f"plots (missing {NEW_MODEL}/fc1, {NEW_MODEL}/fc2)" in stale.stderr
    assert f"artifacts (missing {NEW_ARTIFACT})" in stale.stderr
    assert "run: python -m stages.generate_dvc_yaml" in stale.stderr
    assert (scratch / "dvc.yaml").read_text() == before  # --check writes nothing

    written = generator(scratch)
    assert written.returncode == 0, written.stderr
    after = (scratch / "dvc.yaml").read_text()
    assert outside_generated_blocks(after) == outside_generated_blocks(before)  # stages and comments byte for byte
    assert after.startswith(before[: before.index(begin_marker("plots"))])
    manifest = yaml.safe_load(after)
    assert manifest["artifacts"][NEW_ARTIFACT] == {
        "path": f"models/{NEW_MODEL}",
        "type": "model",
        "desc": f"SigNet, stand-in seed {NEW_SEED} (sigver_wiwd, Lasagne/Theano pickle), input 150x220 in 0..255, fc1/fc2 features",
        "labels": [NEW_MODEL, "lasagne_signet", "builtin"],
        "meta": {"model": NEW_MODEL, "source": "builtin"},
    }
    plots = {plot_id: spec for entry in manifest["plots"] for plot_id, spec in entry.items()}
    assert plots[f"{NEW_MODEL}/fc2"]["y"] == {f"reports/{NEW_MODEL}/samples.csv": "fc2_max_abs_error"}
    assert generator(scratch, "--check").returncode == 0
    assert (
        generator(scratch).returncode == 0 and (scratch / "dvc.yaml").read_text() == after
    )  # deterministic, idempotent


HOSTILE_DESCRIPTIONS = [
    "1e5",
    "0o17",
    "=",
    "<<",
    "yes",
    "null",
    "a: b # c",
    "del\x7f",
    "line\u2028separator",
    "\"quoted\" 'both'",
]


@pytest.mark.quick
@pytest.mark.parametrize("description", HOSTILE_DESCRIPTIONS, ids=repr)
def test_any_description_reads_back_as_itself_in_dvcs_yaml_reader(scratch: Path, description: str):
    """DVC reads dvc.yaml with ruamel (YAML 1.2): `desc: 1e5` would be a number there and break
    every dvc command; `=`, DEL or U+2028 written raw would not parse at all."""
    from ruamel.yaml import YAML

    params = (scratch / "params.yaml").read_text()
    folded = "    description: >-\n      Signature image cleaning autoencoder (Kaggle victordibia, tf.keras 2.6\n      SavedModel)\n"
    assert params.count(folded) == 1
    (scratch / "params.yaml").write_text(params.replace(folded, f"    description: {json.dumps(description)}\n"))
    written = generator(scratch)
    assert written.returncode == 0, written.stderr
    manifest = YAML(typ="safe", pure=True).load((scratch / "dvc.yaml").read_text())
    assert manifest["artifacts"]["cleaning"]["desc"] == description
    assert generator(scratch, "--check").returncode == 0


@pytest.mark.quick
def test_a_model_name_gto_refuses_is_one_error_line(scratch: Path):
    params = (scratch / "params.yaml").read_text()
    (scratch / "params.yaml").write_text(params_with_another_signet(params, name="signet_"))
    result = generator(scratch)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and "models.signet_: its artifact name 'signet-'" in result.stderr


@pytest.mark.quick
def test_check_names_a_removed_model_and_a_hand_edit(scratch: Path):
    manifest = scratch / "dvc.yaml"
    manifest.write_text(
        manifest.read_text().replace(
            '    desc: "Siamese signature verifier', '    desc: "Edited Siamese signature verifier'
        )
    )
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    del params["models"]["signet_pth"]
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stale = generator(scratch, "--check")
    assert stale.returncode == 1 and stale.stderr.count("error:") == 1
    assert "plots (not in params signet_pth/fc2)" in stale.stderr
    assert "artifacts (not in params signet-pth; changed siamese)" in stale.stderr


@pytest.mark.quick
def test_missing_markers_are_one_error_line(scratch: Path):
    manifest = scratch / "dvc.yaml"
    manifest.write_text(manifest.read_text().replace(end_marker("artifacts") + "\n", ""))
    before = manifest.read_text()
    for args in ((), ("--check",)):
        result = generator(scratch, *args)
        assert result.returncode == 1 and result.stderr.count("error:") == 1 and "Traceback" not in result.stderr
        assert "END GENERATED artifacts" in result.stderr
    assert manifest.read_text() == before


@pytest.mark.quick
def test_help_says_what_it_writes():
    result = generator(REPO, "--help")
    assert result.returncode == 0
    assert "--check" in result.stdout and "params.yaml" in result.stdout and "BEGIN GENERATED" in result.stdout


def test_a_tenth_model_is_one_params_entry_and_the_command(tmp_path: Path):
    """Another seed of SigNet, added by a params entry and the command, in a fresh repository: it
    builds alone (`dvc repro validate@<name>`), is registered with GTO (`gto show` lists it) and its
    files are got at the version's tag with `dvc ls` / `dvc get` (docs/registry.md). Its entry
    validates on 3 drawn signatures (`validated_on_fewer_samples`): a passing verdict still needs
    the oracle and ONNX Runtime to agree, and the shared build validates SigNet on the full set."""
    started = time.perf_counter()
    project = fresh_clone(tmp_path / "project")
    for key, value in (("user.email", "ci@example.com"), ("user.name", "ci")):
        git(project, "config", key, value)
    params = params_with_another_signet((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(validated_on_fewer_samples(params))
    assert generator(project).returncode == 0
    assert generator(project, "--check").returncode == 0
    assert NEW_ARTIFACT in yaml.safe_load((project / "dvc.yaml").read_text())["artifacts"]
    lock_before = yaml.safe_load((project / "dvc.lock").read_text())["stages"]

    built = dvc(project, "repro", f"validate@{NEW_MODEL}")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    ran = re.findall(r"Running stage '([^']+)'", built.stdout)
    assert ran == [f"{step}@{NEW_MODEL}" for step in ("fetch", "convert", "validate")], built.stdout
    lock_after = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {
        name: entry for name, entry in lock_after.items() if name in lock_before
    } == lock_before  # no other model rebuilt
    assert json.loads((project / "models" / NEW_MODEL / "verdict.json").read_text())["verdict"] == "pass"
    built_seconds = time.perf_counter() - started

    git(project, "add", "-A")
    git(project, "commit", "-qm", f"add {NEW_MODEL}")
    registered = subprocess.run(
        ["gto", "register", NEW_ARTIFACT, "--version", "v0.1.0"], cwd=project, capture_output=True, text=True
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    shown = subprocess.run(["gto", "show", "--json"], cwd=project, capture_output=True, text=True)
    assert shown.returncode == 0 and NEW_ARTIFACT in shown.stdout, shown.stdout + shown.stderr

    # Got from the released revision as a user would, without a clone. Not `dvc artifacts get`: it
    # takes the whole folder, and this test leaves the derive stage unbuilt (cheap).
    user = tmp_path / "user"
    user.mkdir()
    tag = f"{NEW_ARTIFACT}@v0.1.0"
    listed = dvc(user, "ls", str(project), f"models/{NEW_MODEL}", "--rev", tag)
    assert listed.returncode == 0 and {"model.onnx", "lineage.json", "verdict.json"} <= set(listed.stdout.split()), (
        listed.stdout + listed.stderr
    )
    for file in ("model.onnx", "lineage.json"):
        got = dvc(user, "get", str(project), f"models/{NEW_MODEL}/{file}", "--rev", tag, "-o", file)
        assert got.returncode == 0, got.stdout + got.stderr
        assert (user / file).read_bytes() == (project / "models" / NEW_MODEL / file).read_bytes(), file
    lineage = json.loads((user / "lineage.json").read_text())
    assert set(lineage["upstream_files"]) == {"signet.pkl"}  # the upstream record travels with the folder
    print(f"tenth model: build {built_seconds:.0f} s, whole test {time.perf_counter() - started:.0f} s")
