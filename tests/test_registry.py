"""The tracked verdict is machine-independent; dvc.yaml's registry, metrics and plots cover every model.

No build needed: the verdict is checked on a Validator fed synthetic outputs, the registry by
reading dvc.yaml and params.yaml as DVC would.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO

from stages.core.comparison import Validator
from stages.core.errors import PipelineError
from stages.core.params import load_params, model_spec
from stages.publish.verdict import certified_record, serialize
from stages.release import artifact_name


def run_validator(model: str, noise: float, seed: int) -> Validator:
    """A Validator of `model`'s spec over 6 samples whose ONNX side is the reference plus noise."""
    spec = model_spec(model, REPO / "params.yaml").validation
    validator = Validator(spec, "reference")
    rng = np.random.default_rng(seed)
    base = np.random.default_rng(0)
    for sample in range(6):
        reference = {
            "output0": base.standard_normal((1, 64)).astype(np.float32),
            "output1": base.standard_normal((1, 64)).astype(np.float32),
            "output2": base.uniform(0.5, 2.0, (1, 1)).astype(np.float32),
        }
        candidate = {
            name: (ref + noise * rng.uniform(-1, 1, ref.shape)).astype(np.float32) for name, ref in reference.items()
        }
        validator.add(f"s{sample}", reference, candidate)
    return validator


def record_bytes(validator: Validator) -> bytes:
    return serialize(certified_record(validator.spec, [validator.reference_name], len(validator.per_sample)))


def test_verdict_bytes_do_not_depend_on_the_measured_errors():
    """Two "CPUs" whose errors differ: validation.json differs, verdict.json is byte-identical."""
    first, second = run_validator("siamese", 1e-6, seed=1), run_validator("siamese", 3e-5, seed=2)
    assert first.metrics() != second.metrics()
    assert record_bytes(first) == record_bytes(second)
    record = yaml.safe_load(record_bytes(first))
    # a few flat fields: DVC shows each as a column (`dvc exp show`, `dvc metrics show`)
    assert record == {
        "verdict": "pass",
        "reference": "reference",
        "samples": 6,
        "tolerance": {"atol": first.spec.atol, "rtol": first.spec.rtol, "min_cosine": 0.99999},
    }


def test_no_verdict_over_tolerance():
    with pytest.raises(PipelineError, match="output 'output0'"):
        run_validator("siamese", 1e-3, seed=3)


def test_the_verdict_names_the_rule_it_certified():
    spec = model_spec("siamese", REPO / "params.yaml").validation.model_copy(update={"rtol": 1e-3})
    record = certified_record(spec, ["PyTorch", "NumPy float64 oracle"], 1)
    assert record["tolerance"] == {"atol": spec.atol, "rtol": 1e-3, "min_cosine": spec.min_cosine}
    assert record["independent_reference"] == "NumPy float64 oracle"
    cleaning = model_spec("cleaning", REPO / "params.yaml").validation  # no embedding outputs: no cosine rule
    assert certified_record(cleaning, ["TensorFlow"], 3)["tolerance"] == {"atol": cleaning.atol, "rtol": cleaning.rtol}


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


@pytest.fixture(scope="module")
def models() -> dict:
    """Each model's checked entry, its family's defaults merged in (the onnx outputs may be written in either)."""
    return {name: spec.model_dump() for name, spec in load_params(REPO / "params.yaml").models.items()}


def test_every_model_is_a_registry_artifact(manifest: dict, models: dict):
    artifacts = manifest["artifacts"]
    assert set(artifacts) == {artifact_name(name) for name in models}
    for name, model in models.items():
        entry = artifacts[artifact_name(name)]
        assert entry["path"] == f"models/{name}" and entry["type"] == "model"  # the published folder
        assert entry["desc"] == model["description"]
        assert entry["labels"] == [name, model["family"], model["source"]["kind"]]
        # no upstream sha256s: dvc.yaml is written from params.yaml alone; lineage.json records them
        assert entry["meta"] == {"model": name, "source": model["source"]["kind"]}


def test_only_fetch_persists_and_validate_publishes_its_verdict_as_metrics(manifest: dict):
    """persist turns the run-cache off: only fetch keeps it (pinned downloads are not redone)."""
    persisting = {
        name
        for name, stage in manifest["stages"].items()
        for out in stage["do"].get("outs", []) + stage["do"].get("metrics", [])
        if isinstance(out, dict) and any((o or {}).get("persist") for o in out.values())
    }
    assert persisting == {"fetch"}
    assert manifest["stages"]["validate"]["do"]["metrics"] == ["models/${key}/verdict.json"]


def test_measured_plots_cover_every_model_output(manifest: dict, models: dict):
    assert "metrics" not in manifest  # measured files are not DVC metrics: they exist at no older commit
    plots = {plot_id: spec for entry in manifest["plots"] for plot_id, spec in entry.items()}
    expected = {f"{name}/{out['name']}" for name, model in models.items() for out in model["onnx"]["outputs"]}
    assert set(plots) == expected
    for plot_id, spec in plots.items():
        name, output = plot_id.split("/")
        assert (
            spec["y"] == {f"reports/{name}/samples.csv": f"{output}_max_abs_error"} and spec["template"] == "error_log"
        )


def test_release_help():
    result = subprocess.run(
        [sys.executable, "-m", "stages.release", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and "--version" in result.stdout and "remote" in result.stdout
    # what a user runs, and what `gto show` prints before and after a release
    assert "python -m stages.release signet --version v1.0.0 --stage prod --push" in result.stdout
    assert "gto show" in result.stdout and "Nothing found in the current workspace" in result.stdout


def test_release_messages_quote_tools_on_one_escaped_line():
    from stages.release import reason

    assert reason("remote said \x1b[2Jcleared\nsecond line") == "remote said \\x1b[2Jcleared"
    assert reason(RuntimeError("x" * 500), 300) == "x" * 300 + "... (500 characters in all)"
    assert reason(RuntimeError("")) == "RuntimeError"
