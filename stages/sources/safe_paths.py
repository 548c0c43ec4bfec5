"""File names that come from a server are untrusted: they must land inside the target folder.

A Kaggle listing (or any other remote listing) names its files; a hostile or broken one could
say `../../.bashrc`, `/etc/passwd`, `C:\\x` or `model\\..\\..\\x`. Every such name is refused
before anything is written, so a bad listing writes nothing outside the data folder.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path, PurePosixPath

from stages.core.errors import PipelineError
from stages.core.untrusted import shown

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_NAME = 1024


class UnsafeName(PipelineError):
    """A remote file name that could escape the target folder or is not a plain relative path."""


def _reason(name: object) -> str | None:
    """Why `name` is not a safe relative POSIX path, or None when it is."""
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if len(name) > _MAX_NAME:
        return "it is too long"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "it holds control characters"
    if "\\" in name:
        return "it holds a backslash"
    if name.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    raw_parts = name.split("/")
    if any(part in ("", ".", "..") for part in raw_parts):
        # '' catches 'a//b' and a trailing '/', '.' and '..' catch every relative trick.
        return "it has an empty, '.' or '..' path component"
    return None


def check_name(name: str) -> PurePosixPath:
    """Return `name` as a relative path, or raise UnsafeName saying why it is refused."""
    reason = _reason(name)
    if reason:
        raise UnsafeName(f"refusing the remote file name '{shown(name, 120)}': {reason}")
    return PurePosixPath(name)


def resolve_inside(root: Path, name: str) -> Path:
    """The path of `name` under `root`, refused if it (or a symlink on the way) leaves `root`."""
    relative = check_name(name)
    base = Path(root).resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise UnsafeName(f"refusing the remote file name '{shown(name, 120)}': it resolves outside {root}")
    return candidate
