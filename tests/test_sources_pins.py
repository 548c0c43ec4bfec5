"""sources.lock.yaml: strict parsing, deterministic writing, record only what is new, forget."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from stages.core.errors import PipelineError
from stages.sources import pins
from stages.sources.pins import LockFile, Pin

REPO = Path(__file__).resolve().parents[1]


def pin_of(data: bytes, source: str = "kaggle:owner/kernel") -> Pin:
    return Pin(sha256=hashlib.sha256(data).hexdigest(), size=len(data), source=source)


def test_the_committed_lock_file_parses() -> None:
    LockFile.load(REPO / pins.LOCK_FILE)


def test_a_missing_lock_file_is_an_empty_lock(tmp_path: Path) -> None:
    assert LockFile.load(tmp_path / "absent.yaml").pins_for("siamese") == {}


def test_record_writes_only_new_pins_and_reports_them(tmp_path: Path) -> None:
    lock = tmp_path / "sources.lock.yaml"
    fetched = {"a.pt": pin_of(b"a"), "b/c.pb": pin_of(b"c")}
    assert pins.record("m", ["a.pt", "b/c.pb"], fetched, lock) == ["a.pt", "b/c.pb"]
    first = lock.read_bytes()
    assert pins.record("m", ["a.pt", "b/c.pb"], fetched, lock) == []
    assert lock.read_bytes() == first, "an unchanged fetch must not rewrite the lock file"
    assert LockFile.load(lock).pins_for("m") == fetched
    raw = yaml.safe_load(first)
    assert raw["models"]["m"]["a.pt"] == {"sha256": fetched["a.pt"].sha256, "size": 1, "source": "kaggle:owner/kernel"}


def test_record_refuses_bytes_that_differ_from_an_existing_pin(tmp_path: Path) -> None:
    lock = tmp_path / "sources.lock.yaml"
    pins.record("m", ["a.pt"], {"a.pt": pin_of(b"old")}, lock)
    with pytest.raises(PipelineError) as caught:
        pins.record("m", ["a.pt"], {"a.pt": pin_of(b"new")}, lock)
    message = str(caught.value)
    assert pin_of(b"old").sha256 in message and pin_of(b"new").sha256 in message
    assert "\n" not in message and "forget m" in message


def test_dump_is_deterministic_and_sorted(tmp_path: Path) -> None:
    one = LockFile(models={"z": {"b": pin_of(b"b")}, "a": {"y": pin_of(b"y"), "x": pin_of(b"x")}})
    two = LockFile(models={"a": {"x": pin_of(b"x"), "y": pin_of(b"y")}, "z": {"b": pin_of(b"b")}})
    assert one.dump() == two.dump()
    (tmp_path / "l.yaml").write_text(one.dump())
    assert LockFile.load(tmp_path / "l.yaml").models == two.models


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("models: [", "not valid YAML"),
        ("version: 2\nmodels: {}\n", "version 2"),
        ("models: {m: {a.pt: {sha256: abc, size: 1}}}\n", "64 lower-case hex"),
        (f"models: {{m: {{a.pt: {{sha256: {'ab' * 32}, size: -1}}}}}}\n", "non-negative integer"),
        (f"models: {{m: {{a.pt: {{sha256: {'ab' * 32}, size: 1, md5: x}}}}}}\n", "exactly the keys"),
        ("pins: {}\n", "unknown keys"),
    ],
)
def test_a_damaged_lock_file_fails_naming_the_key(tmp_path: Path, text: str, complaint: str) -> None:
    lock = tmp_path / "sources.lock.yaml"
    lock.write_text(text)
    with pytest.raises(PipelineError, match=complaint):
        LockFile.load(lock)


def test_forget_drops_pins_so_the_next_fetch_records_new_bytes(tmp_path: Path) -> None:
    lock = tmp_path / "sources.lock.yaml"
    pins.record("m", ["a", "b"], {"a": pin_of(b"a"), "b": pin_of(b"b")}, lock)
    pins.record("other", ["c"], {"c": pin_of(b"c")}, lock)
    assert pins.forget("m", ["a"], lock) == ["a"]
    assert set(LockFile.load(lock).pins_for("m")) == {"b"}
    assert pins.forget("m", [], lock) == ["b"]
    assert LockFile.load(lock).pins_for("m") == {}
    assert set(LockFile.load(lock).pins_for("other")) == {"c"}
    with pytest.raises(PipelineError, match="no pin for"):
        pins.forget("other", ["zzz"], lock)


def test_command_line_show_and_forget(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "sources.lock.yaml"
    pins.record("m", ["a"], {"a": pin_of(b"a")}, lock)
    assert pins.main(["--lock", str(lock), "show"]) == 0
    assert pin_of(b"a").sha256 in capsys.readouterr().out
    assert pins.main(["--lock", str(lock), "forget", "m"]) == 0
    assert "dvc repro fetch@m" in capsys.readouterr().out
    assert pins.main(["--lock", str(lock), "forget", "m", "a"]) == 1
    assert capsys.readouterr().err.startswith("error: ")
