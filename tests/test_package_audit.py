"""`signature-onnx audit`: a model folder checked on its own, hostile folders included.

Tiny Identity-model folders in the published layout (model, lineage, test vectors, a variant),
so every link is shown to pass on a good folder and to fail on each kind of bad one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from signature_onnx.audit import MAX_VARIANTS, audit

REPO = Path(__file__).resolve().parents[1]


def model_bytes(tag: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string=tag)
    model.ir_version = 8
    return model.SerializeToString()


def write_folder(path: Path, tag: str, extra: dict | None = None, expected: float = 1.0, graphs: bool = False) -> str:
    path.mkdir(parents=True, exist_ok=True)
    data = model_bytes(tag)
    digest = hashlib.sha256(data).hexdigest()
    (path / "model.onnx").write_bytes(data)
    onnx_entry: dict = {"sha256": digest}
    if graphs:  # stand-ins for preprocess.onnx and pipeline.onnx, recorded as the validate stage does
        onnx_entry["graphs"] = {}
        for file in ("preprocess.onnx", "pipeline.onnx"):
            (path / file).write_bytes(model_bytes(file))
            onnx_entry["graphs"][file] = {"sha256": hashlib.sha256(model_bytes(file)).hexdigest()}
    lineage = {
        "onnx": onnx_entry,
        "validation": {"atol": 1e-4, "rtol": 0.0},
        "source": {"kind": "builtin", "seed": 1},
        "synthetic_weights": True,
        **(extra or {}),
    }
    (path / "lineage.json").write_text(json.dumps(lineage))
    (path / "test_vectors.json").write_text(json.dumps({"tolerance": {"atol": 1e-4, "rtol": 0.0}}))
    test_set = path / "test_data_set_0"
    test_set.mkdir(exist_ok=True)
    (test_set / "input_0.pb").write_bytes(
        numpy_helper.from_array(np.array([[1, 2]], np.float32), "x").SerializeToString()
    )
    (test_set / "output_0.pb").write_bytes(
        numpy_helper.from_array(np.array([[expected, 2]], np.float32), "y").SerializeToString()
    )
    return digest


@pytest.fixture
def published(tmp_path: Path) -> Path:
    model = tmp_path / "signet"
    parent = write_folder(model, "fp32", graphs=True)
    write_folder(
        model / "variants" / "fp16",
        "fp16",
        {"variant": "fp16", "parent": {"sha256": parent}, "recipe": {"keep_io_types": True}},
    )
    return model


def statuses(links) -> dict[str, str]:
    return {link.name: link.status for link in links}


def test_a_good_folder_and_its_variant_pass(published: Path):
    links = statuses(audit(published))
    assert links == {
        "integrity": "PASS",
        "graphs": "PASS",
        "signature": "SKIP",
        "commit": "SKIP",
        "vectors": "PASS",
        "variants/fp16": "PASS",
        "build": "N/A",
    }
    variant = statuses(audit(published / "variants" / "fp16"))
    assert variant == {
        "integrity": "PASS",
        "graphs": "N/A",
        "signature": "SKIP",
        "vectors": "PASS",
        "parent": "PASS",
        "build": "N/A",
    }


def test_a_changed_or_missing_graph_fails(published: Path):
    graph = published / "pipeline.onnx"
    graph.write_bytes(graph.read_bytes() + b"\0")
    links = audit(published)
    assert statuses(links)["graphs"] == "FAIL" and "pipeline.onnx has sha256" in next(
        l.detail for l in links if l.name == "graphs"
    )
    graph.unlink()
    assert statuses(audit(published))["graphs"] == "FAIL"


def test_a_changed_variant_or_a_swapped_parent_fails(published: Path):
    variant = published / "variants" / "fp16"
    (variant / "model.onnx").write_bytes(model_bytes("tampered"))
    assert statuses(audit(published))["variants/fp16"] == "FAIL"
    write_folder(variant, "fp16", {"variant": "fp16", "parent": {"sha256": "0" * 64}, "recipe": {}})
    assert statuses(audit(published))["variants/fp16"] == "FAIL"
    assert statuses(audit(variant))["parent"] == "FAIL"


def test_a_variant_is_known_by_its_lineage_not_by_how_its_path_is_spelled(published: Path, monkeypatch):
    variant = published / "variants" / "fp16"
    write_folder(variant, "fp16", {"variant": "fp16", "parent": {"sha256": "0" * 64}, "recipe": {}})
    monkeypatch.chdir(variant)
    assert statuses(audit(Path(".")))["parent"] == "FAIL"
    monkeypatch.chdir(published / "variants")
    assert statuses(audit(Path("fp16")))["parent"] == "FAIL"
    lone = published.parent / "lone"  # a variant outside any model folder has no parent to prove
    write_folder(lone, "fp16", {"variant": "fp16", "parent": {"sha256": "0" * 64}, "recipe": {}})
    assert statuses(audit(lone))["parent"] == "FAIL"


def test_vectors_out_of_tolerance_fail(published: Path):
    write_folder(published, "fp32", expected=1.5)
    assert statuses(audit(published))["vectors"] == "FAIL"


def test_a_symlinked_variant_folder_is_refused(published: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    (published / "variants" / "fp16").rename(elsewhere)
    (published / "variants" / "fp16").symlink_to(elsewhere, target_is_directory=True)
    links = audit(published)
    assert statuses(links)["variants"] == "FAIL" and "symlink" in next(l.detail for l in links if l.name == "variants")


def test_too_many_variants_are_refused(published: Path):
    for index in range(MAX_VARIANTS):
        (published / "variants" / f"v{index}").mkdir()
    assert statuses(audit(published))["variants"] == "FAIL"


def test_hostile_names_and_commit_claims_are_escaped_and_checked(published: Path):
    hostile = "x\n  PASS  signature     forged\x1b]0;pwned\x07"
    (published / "variants" / "fp16").rename(published / "variants" / hostile)
    result = subprocess.run(
        [sys.executable, "-m", "signature_onnx", "audit", str(published)], cwd=REPO, capture_output=True, text=True
    )
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert all(not line.startswith("  PASS  signature") for line in result.stdout.splitlines())
    model_sha = hashlib.sha256((published / "model.onnx").read_bytes()).hexdigest()
    claims = {
        "a commit that is not a sha": {
            "commit": "not-a-sha",
            "dirty": [],
            "repository": None,
            "model_sha256": model_sha,
        },
        "another model": {"commit": "a" * 40, "dirty": [], "repository": None, "model_sha256": "b" * 64},
        "dirty not a list": {"commit": "a" * 40, "dirty": "abc", "repository": None, "model_sha256": model_sha},
        "dirty not strings": {"commit": "a" * 40, "dirty": [1], "repository": None, "model_sha256": model_sha},
    }
    for why, claim in claims.items():
        (published / "commit.json").write_text(json.dumps(claim))
        assert statuses(audit(published))["commit"] == "FAIL", why
    (published / "commit.json").write_text(json.dumps({**claims["another model"], "model_sha256": model_sha}))
    commit = next(l for l in audit(published) if l.name == "commit")
    assert commit.status == "SKIP" and "unverified" in commit.detail  # well-formed, but nothing signed it


def test_a_test_set_name_with_a_newline_is_not_a_test_set(published: Path):
    from signature_onnx.vectors import find_test_sets

    (published / "test_data_set_1\n").mkdir()
    assert [p.name for p in find_test_sets(published)] == ["test_data_set_0"]
