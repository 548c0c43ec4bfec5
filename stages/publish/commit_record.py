"""`models/<name>/commit.json`: the repository and the commit a signed folder was built at.

Why not in lineage.json or the provenance: those are DVC outputs, byte-identical on every
machine, and the commit of a build is not known until the build is committed (a fresh clone
rebuilding at a later commit must write the same bytes). So the release step names it:
`stages.sign` writes this file into the folder just before signing it, so the signature covers
it, and it is committed to git with model.sig (the folder's two git-tracked files):

    {"repository": "https://github.com/ORG/REPO", "commit": "<sha of HEAD>",
     "dirty": ["stages/core/x.py", ...], "model": "signet", "model_sha256": "..."}

`commit` is HEAD when signing, whose dvc.lock records this model.onnx (`stages.sign` verifies
the `dvc.lock` link first); `dirty` lists the build's files (dvc.yaml, dvc.lock, params.yaml,
the model's code, new files in its code folders included) that differ from that commit, empty
for a clean tree. `repository` is
`git remote get-url origin` with any user name or token removed (None without an origin).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stages.core.errors import PipelineError, first_line
from stages.publish import lineage

FILE = "commit.json"
BUILD_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)


def public_address(url: str) -> str:
    """The remote's address without credentials (`https://user:token@host/x` -> `https://host/x`)."""
    parts = urlsplit(url)
    if parts.scheme and parts.hostname:
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return url.split("@", 1)[-1] if "@" in url.split(":", 1)[0] else url  # scp-like git@host:path keeps no secret


def record(root: Path, model: str, family: str, model_sha256: str) -> bytes:
    """The bytes of commit.json for `model`, built at HEAD of the checkout `root`."""
    head = _git(root, "rev-parse", "HEAD")
    if head.returncode != 0:
        raise PipelineError(
            f"{root}: not a git checkout with a commit ({first_line(head.stderr)}); commit the build (dvc.lock) before signing"
        )
    origin = _git(root, "remote", "get-url", "origin")
    paths = [*BUILD_FILES, *lineage.build_code(family)]
    changed = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    dirty = sorted(line[3:] for line in changed.stdout.splitlines() if line.strip())
    document = {
        "model": model,
        "model_sha256": model_sha256,
        "repository": public_address(origin.stdout.strip()) if origin.returncode == 0 else None,
        "commit": head.stdout.strip(),
        "dirty": dirty,
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
