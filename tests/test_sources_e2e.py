"""End to end: `dvc repro` with `source: kaggle` gives the ONNX graphs of the `builtin` run, bit for bit.

In a scratch copy of the repository: `dvc repro` the two Kaggle models from their builtin
stand-ins; serve exactly those upstream bytes as the kernels' output from the fake Kaggle API;
switch both models to `kind: kaggle` in params.yaml (the one-line switch); plain `dvc repro` with
the real kagglesdk client (the switch alone must make DVC refetch both and re-publish the lineage). The graphs
must be byte-identical (the metadata differs: it names the source and whether weights are synthetic), the pins recorded,
a further `dvc repro` must download nothing, and the Kaggle key must appear in no file or output.

cleaning (the SavedModel: four files in nested folders) goes through validate and is published
again; siamese (one checkpoint) stops at patch, the graph validate would publish: its re-publication
would run the same source-independent code (stages/publish/lineage.py) to validate bytes that the
shared build validated already.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import built_clone
from fake_servers import FakeKaggle, isolated_kaggle
from remotes import clone as clone_project

from stages.core.params import read_params_file
from stages.sources.pins import LockFile

REPO = Path(__file__).resolve().parents[1]
MODELS = {
    "cleaning": "victordibia/signature-image-cleaning-with-tensorflow-2-0",
    "siamese": "medali1992/siamese-signature-verification-with-confidence",
}
PUBLISHED = "cleaning"  # the other model stops at patch
TARGETS = [f"validate@{PUBLISHED}", *(f"convert@{name}" for name in MODELS if name != PUBLISHED)]
USER, MARKER = "e2e-user", "MARKER-5a0c2e9d-kaggle-key"


def dvc(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["dvc", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **env}, timeout=600
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def graph_file(clone: Path, name: str) -> Path:
    """The ONNX file the targets end at: the published model.onnx, or patch's graph (what validate publishes)."""
    return (
        clone / "models" / name / "model.onnx" if name == PUBLISHED else clone / "data/interim" / name / "patched.onnx"
    )


def digest(path: Path) -> str:
    """sha256 of the ONNX graph (weights and nodes), leaving out the file's lineage metadata."""
    import onnx

    return hashlib.sha256(onnx.load(str(path)).graph.SerializeToString(deterministic=True)).hexdigest()


def metadata(path: Path) -> dict[str, str]:
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}


def upstream_files(clone: Path, name: str) -> dict[str, bytes]:
    folder = clone / "data" / "raw" / name
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def switch_source(clone: Path, kind: str) -> None:
    params_file = clone / "params.yaml"
    params = read_params_file(params_file)
    for name in MODELS:
        params["models"][name]["source"]["kind"] = kind
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeKaggle:
    return isolated_kaggle(monkeypatch, tmp_path / "home")


def test_kaggle_source_gives_the_onnx_of_the_builtin_run(fake: FakeKaggle, tmp_path: Path, reproduced) -> None:
    # The builtin run is the session's shared build: a clone of it, its outputs checked out.
    build = built_clone(reproduced)
    assert (build / "sources.lock.yaml").read_bytes() == (REPO / "sources.lock.yaml").read_bytes(), (
        "a builtin fetch writes no committed file"
    )
    clone = clone_project(build, tmp_path / "clone", share_cache_of=build)
    dvc(clone, "checkout", *TARGETS, "--with-deps")
    builtin = {name: digest(graph_file(clone, name)) for name in MODELS}
    served = {name: upstream_files(clone, name) for name in MODELS}
    for name, kernel in MODELS.items():
        fake.publish(kernel, served[name])
    fake.basic.add((USER, MARKER))

    switch_source(clone, "kaggle")
    credentials = {"KAGGLE_USERNAME": USER, "KAGGLE_KEY": MARKER}
    kaggle_run = dvc(clone, "repro", *TARGETS, **credentials)

    assert {name: digest(graph_file(clone, name)) for name in MODELS} == builtin
    assert json.loads((clone / "models" / PUBLISHED / "lineage.json").read_text())["source"]["kind"] == "kaggle"
    published = metadata(clone / "models" / PUBLISHED / "model.onnx")
    assert (published["source.kind"], published["source.kernel"], published["synthetic_weights"]) == (
        "kaggle",
        MODELS[PUBLISHED],
        "false",
    )
    downloads = sorted(seen.path for seen in fake.requests_to("/kf/"))
    assert downloads == sorted(fake.file_path(MODELS[name], f) for name in MODELS for f in served[name])
    lock = LockFile.load(clone / "sources.lock.yaml")
    for name in MODELS:
        assert {f: p.sha256 for f, p in lock.pins_for(name).items()} == {
            f: hashlib.sha256(data).hexdigest() for f, data in served[name].items()
        }
    assert "review and commit it" in kaggle_run.stderr + kaggle_run.stdout

    fake.seen.clear()
    again = dvc(clone, "repro", *TARGETS, **credentials)
    assert fake.requests_to("/kf/") == [], "pinned bytes already in place are not downloaded again"
    status = dvc(clone, "status", *TARGETS)
    assert "up to date" in status.stdout, status.stdout
    assert {name: digest(graph_file(clone, name)) for name in MODELS} == builtin

    secrets = [MARKER.encode(), base64.b64encode(f"{USER}:{MARKER}".encode())]
    texts = [r.stdout + r.stderr for r in (kaggle_run, again)]
    files = [clone / "dvc.lock", clone / "sources.lock.yaml", clone / "params.yaml"]
    files += [p for top in ("data", "models") for p in (clone / top).rglob("*") if p.is_file()]
    for blob in [t.encode() for t in texts] + [p.read_bytes() for p in files]:
        assert not any(secret in blob for secret in secrets)
