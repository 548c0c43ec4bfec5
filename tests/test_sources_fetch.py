"""The fetch stage with real sources: pins, atomic swaps, framework checks, one-line CLI errors.

The stage runs in a scratch project (params.yaml switched to `kind: kaggle`) against the fake
Kaggle API, in-process where that is enough and as `python -m stages.fetch` where the process
boundary is the point (exit codes, one-line errors, a run killed mid-download, leaked secrets).
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_servers import FakeKaggle, Fault, FileServer, isolated_kaggle

from stages import fetch as fetch_stage
from stages.core.digests import sha256_file
from stages.core.errors import PipelineError
from stages.core.params import model_spec, read_params_file
from stages.families import load_family
from stages.sources import download, pins

REPO = Path(__file__).resolve().parents[1]
SIAMESE_KERNEL = "medali1992/siamese-signature-verification-with-confidence"
CLEANING_KERNEL = "victordibia/signature-image-cleaning-with-tensorflow-2-0"
CHECKPOINT = "convnet_best_loss.pt"
USER, KEY = "alice", "k-0d5c81aa"


def write_params(project: Path, kind: str) -> None:
    params = read_params_file(REPO / "params.yaml")
    models = {name: params["models"][name] for name in ("cleaning", "siamese")}
    for entry in models.values():
        entry["source"]["kind"] = kind
    families = {entry["family"]: params["families"][entry["family"]] for entry in models.values()}
    (project / "params.yaml").write_text(yaml.safe_dump({"families": families, "models": models}, sort_keys=False))


def builtin_files(name: str, seed_offset: int = 0) -> dict[str, bytes]:
    """The family's stand-in bytes (with another seed when asked), as {relative name: bytes}."""
    import tempfile

    spec = model_spec(name, REPO / "params.yaml")
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"seed": spec.source.seed + seed_offset})})
    with tempfile.TemporaryDirectory() as folder:
        load_family(spec.family).write_builtin(Path(folder), spec)
        return {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()
        }


@pytest.fixture(scope="module")
def siamese() -> dict[str, bytes]:
    return builtin_files("siamese")


@pytest.fixture(scope="module")
def other_siamese() -> dict[str, bytes]:
    return builtin_files("siamese", seed_offset=1)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    write_params(folder, "kaggle")
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeKaggle:
    server = isolated_kaggle(monkeypatch, tmp_path / "home")
    server.basic.add((USER, KEY))
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setattr(download, "pause", lambda seconds: None)
    return server


def run_fetch(name: str) -> None:
    fetch_stage.fetch(name, model_spec(name, Path("params.yaml")))


def raw_files(project: Path, name: str) -> dict[str, bytes]:
    folder = project / "data" / "raw" / name
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write_raw(project: Path, name: str, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = project / "data" / "raw" / name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def stale(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "data" / "raw").glob(".*") if p.name.endswith((".tmp", ".part", ".old")))


def test_first_fetch_records_pins_then_reuses_the_pinned_bytes(fake, project, siamese, caplog) -> None:
    caplog.set_level(logging.INFO)
    fake.publish(SIAMESE_KERNEL, siamese)
    run_fetch("siamese")
    assert raw_files(project, "siamese") == siamese
    pinned = pins.LockFile.load(project / "sources.lock.yaml").pins_for("siamese")
    assert pinned[CHECKPOINT].sha256 == sha256_file(project / "data/raw/siamese" / CHECKPOINT)
    assert pinned[CHECKPOINT].source == f"kaggle:{SIAMESE_KERNEL}"
    assert "review and commit it (git add sources.lock.yaml)" in caplog.text
    lock_bytes = (project / "sources.lock.yaml").read_bytes()
    fake.reset()
    fake.basic.add((USER, KEY))
    caplog.clear()
    run_fetch("siamese")  # what `dvc repro` does when only the lock file changed
    assert fake.seen == [], "bytes that match their pins are not downloaded again"
    assert "already holds the bytes pinned" in caplog.text
    assert (project / "sources.lock.yaml").read_bytes() == lock_bytes


def test_a_pin_mismatch_keeps_the_previous_artifact(fake, project, siamese, other_siamese) -> None:
    write_raw(project, "siamese", siamese)  # e.g. the builtin stand-in of the last run
    pinned = pins.Pin(sha256=sha256_file(project / "data/raw/siamese" / CHECKPOINT), size=len(siamese[CHECKPOINT]))
    pins.LockFile(models={"siamese": {CHECKPOINT: pinned}}).write(project / "sources.lock.yaml")
    lock_bytes = (project / "sources.lock.yaml").read_bytes()
    (project / "data/raw/siamese" / CHECKPOINT).write_bytes(b"previous artifact")  # not the pinned bytes
    fake.publish(SIAMESE_KERNEL, other_siamese)
    with pytest.raises(PipelineError) as caught:
        run_fetch("siamese")
    message = str(caught.value)
    assert (
        hashlib.sha256(other_siamese[CHECKPOINT]).hexdigest() in message
        and pinned.sha256 in message
        and "\n" not in message
    )
    assert raw_files(project, "siamese") == {CHECKPOINT: b"previous artifact"}
    assert (project / "sources.lock.yaml").read_bytes() == lock_bytes
    assert stale(project) == []


def test_a_checkpoint_without_the_model_key_is_refused_and_not_pinned(fake, project, siamese) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, buffer)
    fake.publish(SIAMESE_KERNEL, {CHECKPOINT: buffer.getvalue()})
    write_raw(project, "siamese", siamese)
    with pytest.raises(PipelineError, match=r"expected a dict with key 'model'"):
        run_fetch("siamese")
    assert raw_files(project, "siamese") == siamese
    assert not (project / "sources.lock.yaml").exists(), "bytes that do not load are never pinned"


def test_a_truncated_savedmodel_is_refused(fake, project) -> None:
    cleaning = builtin_files("cleaning")
    variables = "model/variables/variables.data-00000-of-00001"
    damaged = {**cleaning, variables: cleaning[variables][: len(cleaning[variables]) // 2]}
    fake.publish(CLEANING_KERNEL, damaged)
    with pytest.raises(PipelineError, match=r"TensorFlow cannot load this SavedModel .*fetch it again"):
        run_fetch("cleaning")
    assert not (project / "data/raw/cleaning").exists()
    assert not (project / "sources.lock.yaml").exists()
    assert stale(project) == []


def test_disk_full_during_the_stage_keeps_the_previous_artifact(fake, project, siamese, monkeypatch) -> None:
    fake.publish(SIAMESE_KERNEL, siamese)
    write_raw(project, "siamese", {CHECKPOINT: b"previous artifact"})

    def no_space(handle, chunk, job):
        raise download._disk_error(job, OSError(28, "No space left on device"))

    monkeypatch.setattr(download, "_write", no_space)
    with pytest.raises(PipelineError, match="disk full while writing into"):
        run_fetch("siamese")
    assert raw_files(project, "siamese") == {CHECKPOINT: b"previous artifact"}
    assert stale(project) == []


def test_builtin_neither_reads_nor_writes_pins(project, monkeypatch, siamese) -> None:
    write_params(project, "builtin")
    lock = pins.LockFile(models={"siamese": {CHECKPOINT: pins.Pin(sha256="ab" * 32, size=1, source="kaggle:x/y")}})
    lock.write(project / "sources.lock.yaml")
    before = (project / "sources.lock.yaml").read_bytes()
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "NO-SUCH-ENVIRONMENT")  # any Kaggle call would fail
    run_fetch("siamese")
    assert raw_files(project, "siamese") == siamese
    assert (project / "sources.lock.yaml").read_bytes() == before
    (project / "sources.lock.yaml").unlink()
    run_fetch("siamese")
    assert not (project / "sources.lock.yaml").exists()


def test_url_source_through_the_stage_pins_the_address(project, siamese, monkeypatch) -> None:
    """A secret-looking query is refused by params already (test_config); a plain one is kept."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    params = read_params_file(project / "params.yaml")
    with FileServer() as server:
        address = server.serve("/mirror/convnet_best_loss.pt", siamese[CHECKPOINT]) + "?id=1AbC"
        params["models"]["siamese"]["source"].update(kind="url", urls={CHECKPOINT: address})
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run_fetch("siamese")
    assert raw_files(project, "siamese") == siamese
    pin = pins.LockFile.load(project / "sources.lock.yaml").pins_for("siamese")[CHECKPOINT]
    assert pin.source == f"{server.base}/mirror/convnet_best_loss.pt?id=1AbC"


# As a process: exit codes, one-line errors, a killed run, secrets ---------------------------------


def stage_process(project: Path, model: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.Popen(
        [sys.executable, "-m", "stages.fetch", model],
        cwd=project,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_stage_process(project: Path, model: str, **env: str) -> tuple[int, str, str]:
    process = stage_process(project, model, **env)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_run_killed_mid_download_then_a_rerun(fake, project, siamese, other_siamese) -> None:
    write_raw(project, "siamese", siamese)
    fake.publish(SIAMESE_KERNEL, other_siamese)
    fake.fail(fake.file_path(SIAMESE_KERNEL, CHECKPOINT), Fault("stall", after=400_000))
    process = stage_process(project, "siamese")
    try:
        assert fake.stalled.wait(timeout=60), "the download never started"
        assert any(p.name.startswith(".siamese.") for p in (project / "data/raw").iterdir()), "killed while staging"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        fake.release.set()
        if process.poll() is None:
            process.kill()
    assert raw_files(project, "siamese") == siamese, "the previous artifact survives the kill"
    assert not (project / "sources.lock.yaml").exists()
    code, _out, err = run_stage_process(project, "siamese")
    assert code == 0, err
    assert raw_files(project, "siamese") == other_siamese
    assert stale(project) == [], "the rerun cleans what the killed run left"
    assert CHECKPOINT in pins.LockFile.load(project / "sources.lock.yaml").pins_for("siamese")


def test_no_credentials_is_one_line_and_exit_1(fake, project, monkeypatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    code, out, err = run_stage_process(project, "siamese")
    assert code == 1 and out == ""
    assert error_lines(err) == [err.strip().splitlines()[-1]]
    assert "no Kaggle credentials" in err and "Traceback" not in err


def test_credentials_leak_nowhere(fake, project, siamese) -> None:
    """A failing and a succeeding run with a marker key: not in output, data, pins or any file."""
    marker = "MARKER-b6e1d0f4-never-print"
    forms = [marker, base64.b64encode(f"{USER}:{marker}".encode()).decode()]
    fake.publish(SIAMESE_KERNEL, siamese)
    code, out, err = run_stage_process(project, "siamese", KAGGLE_KEY=marker)
    assert code == 1 and "rejected the credentials" in err and len(error_lines(err)) == 1
    outputs = [out, err]
    fake.basic.add((USER, marker))
    fake.fail(fake.file_path(SIAMESE_KERNEL, CHECKPOINT), Fault("truncate"), Fault.http(429, retry_after="0"))
    code, out, err = run_stage_process(project, "siamese", KAGGLE_KEY=marker)
    assert code == 0, err
    outputs += [out, err]
    files = [p for p in project.rglob("*") if p.is_file()]
    assert project / "sources.lock.yaml" in files
    for blob in [text.encode() for text in outputs] + [p.read_bytes() for p in files]:
        for secret in forms:
            assert secret.encode() not in blob
    assert (
        pins.LockFile.load(project / "sources.lock.yaml").pins_for("siamese")[CHECKPOINT].source
        == f"kaggle:{SIAMESE_KERNEL}"
    )
