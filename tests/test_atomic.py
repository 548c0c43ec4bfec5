"""Outputs appear whole or not at all, and a swap cut half way is repaired."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stages.core.atomic import restore_retired, staged_directory, write_bytes


def test_write_bytes_replaces_whole_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "out" / "model.onnx"
    write_bytes(target, b"first")
    write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["model.onnx"]


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch):
    target = tmp_path / "model.onnx"
    write_bytes(target, b"good")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_bytes(target, b"half")
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_staged_directory_swaps_only_on_success(tmp_path: Path):
    target = tmp_path / "raw"
    with staged_directory(target) as staging:
        (staging / "a.bin").write_bytes(b"1")
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "a.bin").write_bytes(b"2")
            raise RuntimeError("download failed")
    assert (target / "a.bin").read_bytes() == b"1"
    assert sorted(os.listdir(tmp_path)) == ["raw"]


def test_a_swap_cut_between_its_renames_is_restored(tmp_path: Path):
    target = tmp_path / "raw"
    retired = tmp_path / ".raw.abc123.old"
    retired.mkdir()
    (retired / "a.bin").write_bytes(b"previous")
    restore_retired(target)
    assert (target / "a.bin").read_bytes() == b"previous"
    assert not retired.exists()
