"""commit.json (stages/publish/commit_record.py): the commit a signed build was made at, dirty or not."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from stages.publish.commit_record import public_address, record
from stages.publish.lineage import build_code


def test_public_address_drops_credentials():
    assert (
        public_address("https://user:ghp_SECRET@github.com:8443/org/repo.git") == "https://github.com:8443/org/repo.git"
    )
    assert public_address("https://oauth2:glpat-x@gitlab.example.org/org/repo") == "https://gitlab.example.org/org/repo"
    assert public_address("git@github.com:org/repo.git") == "github.com:org/repo.git"
    assert public_address("/srv/git/repo") == "/srv/git/repo"


def test_record_names_head_and_the_build_files_that_differ(tmp_path: Path):
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    git("init", "-q")
    for name in ("dvc.yaml", "dvc.lock", "params.yaml", "README.md"):
        (tmp_path / name).write_text("x\n")
    code = tmp_path / build_code("lasagne_signet")[0]
    code.mkdir(parents=True)
    (code / "m.py").write_text("x\n")
    git("add", "-A")
    git("commit", "-qm", "build")
    git("remote", "add", "origin", "https://bot:TOKEN@example.org/org/repo")
    clean = json.loads(record(tmp_path, "signet", "lasagne_signet", "ab" * 32))
    assert clean == {
        "model": "signet",
        "model_sha256": "ab" * 32,
        "repository": "https://example.org/org/repo",
        "commit": git("rev-parse", "HEAD").strip(),
        "dirty": [],
    }
    (tmp_path / "params.yaml").write_text("y\n")
    (code / "m.py").write_text("y\n")
    (tmp_path / "README.md").write_text("not a build file\n")
    dirty = json.loads(record(tmp_path, "signet", "lasagne_signet", "ab" * 32))
    assert dirty["dirty"] == sorted(["params.yaml", f"{build_code('lasagne_signet')[0]}/m.py"])
    assert b"TOKEN" not in record(tmp_path, "signet", "lasagne_signet", "ab" * 32)
    git("checkout", "--", ".")
    (code / "new_layer.py").write_text("a module not committed yet\n")  # in the code the lineage digests
    assert json.loads(record(tmp_path, "signet", "lasagne_signet", "ab" * 32))["dirty"] == [
        f"{build_code('lasagne_signet')[0]}/new_layer.py"
    ]
