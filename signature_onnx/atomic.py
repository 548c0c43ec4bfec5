"""Atomic file writes, for the package's outputs and the pipeline's: a file appears whole, or the
previous one stays (an interrupted run never leaves half a file where a good one was)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename survives a power cut (best effort on odd filesystems)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a fsynced temporary sibling and an atomic rename.

    The temporary name is chosen before the file is created, so an interruption at any point
    (KeyboardInterrupt, or SIGTERM turned into one by the command line) removes it: no hidden
    `.tmp` file is ever left behind. An OSError without a file name (a full disk, a file-size
    limit) is raised again naming `target`.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    try:
        # O_EXCL: never write through a file or symlink planted under the temporary name.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        os.fchmod(handle, 0o644)  # results are ordinary readable files, whatever the umask
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from None
        raise
    fsync_dir(target.parent)
