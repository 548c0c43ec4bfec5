"""`dvc repro` in a fresh clone reproduces the committed dvc.lock exactly and leaves git clean.

This is the user's main job, run as a user runs it: every model of params.yaml, every stage.
"""

from __future__ import annotations

import subprocess

import yaml
from conftest import REPO, dvc, git

from stages.core.params import read_params_file


def lock_outputs(lock: dict) -> dict[str, str]:
    return {
        f"{stage}:{out['path']}": out["md5"] for stage, entry in lock["stages"].items() for out in entry.get("outs", [])
    }


def test_repro_in_a_fresh_clone_reproduces_the_committed_lock(reproduced):
    clone, result = reproduced
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())
    rebuilt = yaml.safe_load((clone / "dvc.lock").read_text())
    assert lock_outputs(rebuilt) == lock_outputs(committed)
    assert (clone / "dvc.lock").read_text() == (REPO / "dvc.lock").read_text()
    assert git(clone, "status", "--porcelain") == ""


def test_every_model_is_published(reproduced):
    clone, _ = reproduced
    models = read_params_file(clone / "params.yaml")["models"]
    for name in models:
        for artifact in (
            "model.onnx",
            "verdict.json",
            "lineage.json",
            "provenance.intoto.json",
            "README.md",
            "preprocessing.json",
            "test_vectors.json",
        ):
            assert (clone / "models" / name / artifact).is_file(), f"{name}/{artifact}"
        # measured errors (CPU-dependent) beside, never inside, the published folder
        for measured in ("validation.json", "samples.csv", "variants.json"):
            assert (clone / "reports" / name / measured).is_file() and not (clone / "models" / name / measured).exists()


def test_second_repro_is_a_no_op(reproduced):
    clone, _ = reproduced
    again = dvc(clone, "repro")
    assert again.returncode == 0
    assert "Data and pipelines are up to date" in again.stdout
    assert git(clone, "status", "--porcelain") == ""


def test_metrics_and_plots_are_readable_by_dvc(reproduced):
    clone, _ = reproduced
    metrics = dvc(clone, "metrics", "show", "--json")
    assert metrics.returncode == 0 and '"verdict": "pass"' in metrics.stdout
    plots = dvc(clone, "plots", "show", "--json")
    assert plots.returncode == 0 and "samples.csv" in plots.stdout


def test_every_published_model_verifies_and_names_the_commit(reproduced):
    """The auditor's command on the whole fresh build: every link passes, the clone's commit holds each file."""
    import sys

    clone, _ = reproduced
    models = read_params_file(clone / "params.yaml")["models"]
    paths = [f"models/{name}/model.onnx" for name in models]
    result = subprocess.run([sys.executable, "-m", "stages.verify", *paths], cwd=clone, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.count("=> verified") == len(models)
    head = git(clone, "rev-parse", "HEAD").strip()
    assert result.stdout.count(
        f"PASS  history     dvc.lock holds this file in 1 commit(s): {head[:10]} (clone)"
    ) == len(models)
