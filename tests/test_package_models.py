"""The signature_onnx package on published model folders: the CLI and API give the references'
numbers, import no pipeline framework, warn on synthetic weights, and refuse bad folders in one line."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_fixture
from PIL import Image


@pytest.fixture(scope="module")
def models(published_project: Path) -> Path:
    return published_project


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real scans of writer 001 and one of writer 002 (copied, so names are plain)."""
    folder = tmp_path_factory.mktemp("scans")
    names = ("001_01.png", "001_02.png", "002_01.png")
    return [Path(shutil.copy(shared_fixture("signatures", name), folder / name)) for name in names]


def cli(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m signature_onnx ARGS` run in `project` (models/<name>/ are the defaults there)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "signature_onnx", *args], cwd=project, capture_output=True, text=True, env=env
    )


def spec(project: Path, model: str):
    from stages.core.params import model_spec

    return model_spec(model, project / "params.yaml")


# ---- results equal the references --------------------------------------------------------------


def test_verify_gives_the_pytorch_models_numbers_on_sigver_preprocessed_pairs(models: Path, scans: list[Path]):
    from signature_onnx.preprocessing import sigver
    from stages.families.torch_sigver import siamese as torch_siamese

    result = cli(models, "verify", str(scans[0]), str(scans[2]), "--threshold", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    inputs = [
        sigver.preprocess_signature(sigver.load_signature(p), (952, 1360), (256, 256)) for p in (scans[0], scans[2])
    ]
    reference = torch_siamese.reference(models / "data" / "raw" / "siamese", spec(models, "siamese"))
    expected = reference({"input0": inputs[0], "input1": inputs[1]})
    assert abs(body["logit"] - float(expected["output2"][0, 0])) < 1e-4
    assert abs(body["probability"] - 1 / (1 + math.exp(-body["logit"]))) < 1e-12
    e1, e2 = (expected[k][0].astype(np.float64) for k in ("output0", "output1"))
    assert abs(body["cosine"] - e1 @ e2 / np.linalg.norm(e1) / np.linalg.norm(e2)) < 1e-5
    assert body["same_writer"] == (body["probability"] >= 0.5) and body["synthetic_weights"] is True
    assert "SYNTHETIC" in result.stderr


def test_embed_gives_the_references_features_for_each_style(models: Path, scans: list[Path], tmp_path: Path):
    from signature_onnx.preprocessing import sigver, wiwd
    from stages.families import lasagne_signet
    from stages.families.torch_sigver import signet as torch_signet

    signet = lasagne_signet.reference(models / "data" / "raw" / "signet", spec(models, "signet"))
    pth = torch_signet.reference(models / "data" / "raw" / "signet_pth", spec(models, "signet_pth"))
    spp = lasagne_signet.reference(models / "data" / "raw" / "signet_spp_300dpi", spec(models, "signet_spp_300dpi"))
    cases = {
        ("signet", "fc1"): lambda p: signet(
            {"input": wiwd.preprocess_signature(wiwd.load_signature(p), (952, 1360)).astype(np.float32)[None, None]}
        )["fc1"],
        ("signet_pth", "fc2"): lambda p: pth(
            {
                "input": (sigver.preprocess_signature(sigver.load_signature(p), (952, 1360)) / np.float32(255))[
                    None, None
                ].astype(np.float32)
            }
        )["fc2"],
        ("signet_spp_300dpi", "fc2"): lambda p: spp(
            {"input": (255 - wiwd.remove_background(wiwd.load_signature(p))).astype(np.float32)[None, None]}
        )["fc2"],
    }
    for (model, layer), expected in cases.items():
        out = tmp_path / f"{model}.npy"
        result = cli(
            models,
            "embed",
            *map(str, scans),
            "--model",
            f"models/{model}",
            "--layer",
            layer,
            "--out",
            str(out),
            "--batch-size",
            "2",
        )
        assert result.returncode == 0, result.stderr
        features = np.load(out)
        assert features.shape == (3, 2048) and features.dtype == np.float32
        reference = np.concatenate([expected(p) for p in scans])
        assert np.abs(features - reference).max() < 1e-4, model
        assert result.stderr.count("SYNTHETIC") == 1


def test_clean_writes_224_and_original_size_pngs(models: Path, scans: list[Path], tmp_path: Path):
    from signature_onnx import ORTModelForSignatureCleaning

    result = cli(models, "clean", str(scans[0]), "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    cleaned = np.array(Image.open(tmp_path / "a" / "001_01.png"))
    assert cleaned.shape == (224, 224, 3) and cleaned.dtype == np.uint8
    assert "SYNTHETIC" in result.stderr
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        model = ORTModelForSignatureCleaning.from_pretrained(models / "models" / "cleaning" / "model.onnx")
        assert (model.clean(scans[0]) == cleaned).all()
    result = cli(models, "clean", str(scans[0]), "--out", str(tmp_path / "b"), "--original-size")
    assert result.returncode == 0, result.stderr
    original = Image.open(scans[0])
    assert np.array(Image.open(tmp_path / "b" / "001_01.png")).shape == (original.height, original.width, 3)


def test_the_synthetic_warning_follows_lineage(models: Path, tmp_path: Path):
    """No warning once lineage says the weights are real: the warning test above can fail."""
    from signature_onnx import ModelFolder

    folder = tmp_path / "siamese"
    shutil.copytree(models / "models" / "siamese", folder, copy_function=shutil.copyfile)
    assert ModelFolder.open(folder).synthetic
    lineage = json.loads((folder / "lineage.json").read_text())
    lineage["source"] = {"kind": "kaggle", "kernel": "medali1992/siamese-signature-verification-with-confidence"}
    lineage["synthetic_weights"] = (
        False  # the lineage's own flag counts too (kaggle + synthetic_weights true still warns)
    )
    (folder / "lineage.json").write_text(json.dumps(lineage))
    assert not ModelFolder.open(folder).synthetic
    scan = shared_fixture("signatures", "001_01.png")
    result = cli(models, "verify", str(scan), str(scan), "--model", str(folder))
    assert result.returncode == 0 and "SYNTHETIC" not in result.stderr, result.stderr
    (folder / "lineage.json").unlink()  # unknown provenance counts as synthetic
    assert ModelFolder.open(folder).synthetic


# ---- ONNX Runtime only ---------------------------------------------------------------------------

BLOCKER = """
import sys, runpy
FORBIDDEN = {"torch", "tensorflow", "dvc", "pydantic", "yaml", "stages", "tf_keras", "keras"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"forbidden import: {name}")
sys.meta_path.insert(0, Block())
sys.argv = ["signature-onnx", *sys.argv[1:]]
runpy.run_module("signature_onnx", run_name="__main__")
"""


def test_the_package_runs_without_the_pipelines_frameworks(models: Path, scans: list[Path], tmp_path: Path):
    blocked = tmp_path / "blocked.py"
    blocked.write_text(BLOCKER)
    commands = [
        ["verify", str(scans[0]), str(scans[1])],
        ["embed", str(scans[0]), "--model", "models/signet_spp_300dpi", "--out", str(tmp_path / "f.npy")],
        ["clean", str(scans[0]), "--out", str(tmp_path / "c")],
        ["preprocess", "--style", "sigver", "--canvas", "952", "1360", str(scans[0]), "--out", str(tmp_path / "p")],
    ]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for command in commands:
        result = subprocess.run(
            [sys.executable, str(blocked), *command], cwd=models, capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
    # the blocker does block: the pipeline itself cannot start under it
    probe = tmp_path / "probe.py"
    probe.write_text(
        BLOCKER.replace('runpy.run_module("signature_onnx", run_name="__main__")', "import stages.core.params")
    )
    assert (
        "forbidden import"
        in subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, env=env).stderr
    )


# ---- bad model folders: one line -----------------------------------------------------------------


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_bad_model_folders_fail_in_one_line(models: Path, scans: list[Path], tmp_path: Path):
    a, b = str(scans[0]), str(scans[1])
    one_error_line(cli(tmp_path, "verify", a, b), "models/siamese/model.onnx", "no such model file")
    one_error_line(cli(models, "verify", a, b, "--model", "models/signet"), "'embed' model", "not a 'verify'")
    broken = tmp_path / "broken"
    shutil.copytree(models / "models" / "siamese", broken, copy_function=shutil.copyfile)
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage")
    one_error_line(
        cli(models, "verify", a, b, "--model", str(broken)), "model.onnx: sha256", "but", "lineage.json records"
    )
    one_error_line(
        cli(models, "verify", a, b, "--model", str(broken), "--no-integrity-check"), "ONNX Runtime cannot load it"
    )
    shutil.copy(models / "models" / "siamese" / "model.onnx", broken / "model.onnx")
    settings = json.loads((broken / "preprocessing.json").read_text())
    settings["preprocessing"]["style"] = "fancy"
    (broken / "preprocessing.json").write_text(json.dumps(settings))
    one_error_line(cli(models, "verify", a, b, "--model", str(broken)), "preprocessing.json", "'fancy'")
    (broken / "preprocessing.json").write_text("{not json")
    one_error_line(cli(models, "verify", a, b, "--model", str(broken)), "not readable JSON")
    (broken / "preprocessing.json").unlink()
    one_error_line(cli(models, "verify", a, b, "--model", str(broken)), "preprocessing.json: missing")
    one_error_line(cli(models, "verify", a, b, "--threshold", "7"), "threshold must be a probability")
    one_error_line(
        cli(models, "embed", a, "--model", "models/signet_pth", "--layer", "fc1", "--out", str(tmp_path / "x.npy")),
        "no layer 'fc1'",
    )


def test_a_bad_image_among_many_fails_in_one_line(models: Path, scans: list[Path], tmp_path: Path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "f.npy"
    one_error_line(cli(models, "embed", str(scans[0]), str(bad), "--out", str(out)), "bad.png")
    assert not out.exists()
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.full((20, 30), 255, dtype=np.uint8)).save(tiny)
    one_error_line(
        cli(models, "embed", str(tiny), "--model", "models/signet_spp_300dpi", "--out", str(out)),
        "tiny.png",
        "smaller than the 37x37",
    )
