"""Atomic outputs: a file or folder appears whole, or the previous one stays.

Every stage writes into a temporary sibling and renames it over the target only when the
content is complete and flushed, so an interrupted or failed run never leaves a half-written
artifact where a good one was. (Under `dvc repro`, DVC also removes a stage's outputs before
running it; a failed run leaves dvc.lock on the previous build, which `dvc checkout` restores.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# The one copy of the atomic file write, shared with the package.
from signature_onnx.atomic import fsync_dir, write_bytes

__all__ = ["fsync_dir", "write_bytes", "write_text", "restore_retired", "staged_directory"]


def write_text(target: Path, text: str) -> None:
    """Atomically write UTF-8 text with Unix newlines."""
    write_bytes(target, text.encode("utf-8"))


def restore_retired(target: Path) -> None:
    """Undo a swap cut between its two renames: no `target`, but its retired copy beside it."""
    if target.exists():
        return
    retired = sorted(target.parent.glob(f".{target.name}.*.old"))
    if retired:
        os.replace(retired[-1], target)


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces `target` only if the block succeeds.

    The old folder is moved aside first and deleted after the swap. Linux cannot exchange two
    folders in one rename, so a crash between the two renames leaves only the retired copy;
    the next call puts it back first (`restore_retired`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_retired(target)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield staging
        for root, _dirs, files in os.walk(staging):
            for name in files:
                with open(Path(root) / name, "rb") as handle:
                    os.fsync(handle.fileno())
        retired = None
        if target.exists():
            retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.rmdir(retired)
            os.replace(target, retired)
        os.replace(staging, target)
        fsync_dir(target.parent)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
