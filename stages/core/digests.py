"""Digests of files: sha256 (lineage metadata, lineage.json, source pins) and md5 (dvc.lock)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (hashlib.file_digest)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def md5_file(path: Path) -> str:
    """Hex md5 of a file's bytes: the hash DVC 3 records for a file output in dvc.lock."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()
