"""Which git commits' dvc.lock record a given output with a given md5.

Every commit of the current branch is checked, not only those that changed dvc.lock: a commit
"holds" a file when its dvc.lock names that md5 for that output. Two git processes in all:
`git rev-list` for the commits, `git cat-file --batch` for their dvc.lock blobs (each distinct
blob parsed once).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

LOCK = "dvc.lock"


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str


def _git(root: Path, *args: str, data: bytes | None = None) -> bytes | None:
    try:
        result = subprocess.run(["git", *args], cwd=root, input=data, capture_output=True, check=False)
    except FileNotFoundError:  # no git on this machine
        return None
    return result.stdout if result.returncode == 0 else None


def lock_md5s(lock_text: bytes | str, stage: str) -> dict[str, str]:
    """{out path: md5} of `stage` in a dvc.lock text; empty when unreadable or absent."""
    try:
        lock = yaml.safe_load(lock_text)
    except yaml.YAMLError:
        return {}
    entry = lock.get("stages", {}).get(stage) if isinstance(lock, dict) else None
    if not isinstance(entry, dict):
        return {}
    return {str(out.get("path")): str(out.get("md5")) for out in entry.get("outs", []) or [] if isinstance(out, dict)}


def head(root: Path) -> str | None:
    """The sha of HEAD, or None outside a git repository (or without a commit)."""
    out = _git(root, "rev-parse", "HEAD")
    return out.decode().strip() if out else None


def commits_holding(root: Path, stage: str, out_path: str, md5: str) -> list[Commit] | None:
    """Commits (newest first) whose dvc.lock records `md5` for `out_path` of `stage`.

    None when `root` is not in a git repository (or git is absent); [] when no commit holds it.
    """
    log = _git(root, "log", "--format=%H%x00%s")
    if log is None:
        return None
    commits = [Commit(*line.split("\0", 1)) for line in log.decode("utf-8", "replace").splitlines() if "\0" in line]
    if not commits:
        return []
    prefix = (_git(root, "rev-parse", "--show-prefix") or b"").decode().strip()
    requests = "".join(f"{c.sha}:{prefix}{LOCK}\n" for c in commits).encode()
    batch = _git(root, "cat-file", "--batch", data=requests)
    if batch is None:
        return None
    holding: list[Commit] = []
    verdict_by_blob: dict[str, bool] = {}
    position = 0
    for commit in commits:
        header_end = batch.find(b"\n", position)
        if header_end < 0:  # git answered fewer lines than asked: read no further
            break
        header = batch[position:header_end].decode().split()
        position = header_end + 1
        if len(header) != 3:  # "<name> missing": this commit has no dvc.lock
            continue
        blob, size = header[0], int(header[2])
        if blob not in verdict_by_blob:
            verdict_by_blob[blob] = lock_md5s(batch[position : position + size], stage).get(out_path) == md5
        position += size + 1
        if verdict_by_blob[blob]:
            holding.append(commit)
    return holding
