"""Remote file names: only plain relative paths that stay inside the target folder are accepted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stages.sources.safe_paths import UnsafeName, check_name, resolve_inside

UNSAFE = {
    "../escape.pt": "'..'",
    "model/../../escape.pt": "'..'",
    "/etc/passwd": "absolute",
    "C:/Windows/escape.pt": "drive letter",
    "c:escape.pt": "drive letter",
    "model\\..\\..\\escape.pt": "backslash",
    "model//saved_model.pb": "empty",
    "./model/saved_model.pb": "'.'",
    "model/": "empty",
    "": "empty",
    "bad\x00name": "control",
    "bad\nname": "control",
}


@pytest.mark.parametrize("name", sorted(UNSAFE))
def test_unsafe_names_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(UnsafeName, match=UNSAFE[name]):
        check_name(name)


@pytest.mark.parametrize("name", ["convnet_best_loss.pt", "model/variables/variables.index", "a.b/c..d/e-f_g"])
def test_plain_relative_names_resolve_inside_the_root(tmp_path: Path, name: str) -> None:
    resolved = resolve_inside(tmp_path, name)
    assert resolved == tmp_path.resolve() / name
    assert tmp_path.resolve() in resolved.parents


def test_a_symlink_inside_the_root_cannot_lead_outside(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "model")
    with pytest.raises(UnsafeName, match="resolves outside"):
        resolve_inside(root, "model/saved_model.pb")
