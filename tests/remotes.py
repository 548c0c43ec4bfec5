"""DVC remotes for tests: an S3-compatible server (moto, on 127.0.0.1) and a plain folder.

Also the helpers that make "another machine": a git clone of a built project, with or without
that project's DVC cache, and an environment holding no credentials but those given.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import requests
from conftest import dvc, git

BUCKET = "signature-models"
# moto accepts any key pair; these stand for real ones and must never reach a committed file
# (drawn per session: a literal would be found in the clones, which hold this file).
ACCESS_KEY = "AKIA" + secrets.token_hex(8).upper()
# AWS's own shape: 40 base64 characters ([A-Za-z0-9+/]). A URL-safe token could start with "-"
# and be read as an option by the command lines it is passed to (a 1-in-64 chance per session; it
# happened once).
SECRET_KEY = base64.b64encode(secrets.token_bytes(30)).decode()
IDENTITY = {
    "GIT_AUTHOR_NAME": "ci",
    "GIT_AUTHOR_EMAIL": "ci@example.com",
    "GIT_COMMITTER_NAME": "ci",
    "GIT_COMMITTER_EMAIL": "ci@example.com",
}


def environment(**extra: str) -> dict[str, str]:
    """os.environ without any AWS setting (no ~/.aws files either), plus a git identity and `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(IDENTITY)
    # botocore refuses /dev/null as a config file; an empty one hides any ~/.aws/ of the machine.
    empty = Path(tempfile.gettempdir()) / "aws-config-empty"
    empty.touch()
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        AWS_CONFIG_FILE=str(empty),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_DEFAULT_REGION="us-east-1",
    )
    env.update(extra)
    return env


@dataclass
class Remote:
    """Where a DVC remote lives: its url, the options committed with it, the credentials' env."""

    kind: str
    url: str
    options: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return environment(**self.credentials)


class MotoS3:
    """moto's S3 server in a thread on 127.0.0.1 (a free port), as DVC's own S3 tests use it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        # moto checks no signature: a plain PUT creates the bucket, as `aws s3 mb` would.
        requests.put(f"{self.endpoint}/{BUCKET}", timeout=30).raise_for_status()

    def remote(self, prefix: str = "dvc") -> Remote:
        """A remote in the bucket under `prefix` (one server can hold several remotes)."""
        return Remote(
            "s3",
            f"s3://{BUCKET}/{prefix}",
            {"endpointurl": self.endpoint},
            {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
        )

    def stop(self) -> None:
        self.server.stop()


def checked(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    if result.returncode != 0:
        raise AssertionError(
            f"{result.args} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    return result


def clone(source: Path, target: Path, share_cache_of: Path | None = None) -> Path:
    """`git clone source target`; with `share_cache_of`, use that project's DVC cache (hardlinks)."""
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True, capture_output=True)
    if share_cache_of is not None:
        checked(dvc(target, "cache", "dir", "--local", str(share_cache_of / ".dvc" / "cache")))
        checked(dvc(target, "config", "--local", "cache.type", "hardlink"))
    return target


def add_default_remote(project: Path, remote: Remote) -> None:
    """What a maintainer commits: the remote's address and options, never its credentials."""
    checked(dvc(project, "remote", "add", "-d", "storage", remote.url))
    for option, value in remote.options.items():
        checked(dvc(project, "remote", "modify", "storage", option, value))
    git(project, "add", ".dvc/config")
    subprocess.run(["git", "commit", "-qm", f"DVC remote ({remote.kind})"], cwd=project, check=True, env=environment())


def release(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m stages.release ...` in `project`, as a maintainer runs it."""
    return subprocess.run(
        [sys.executable, "-m", "stages.release", *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(project)},
    )


def stages_run(output: str) -> list[str]:
    """Names of the stages DVC ran (not skipped, not restored) according to its output."""
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def stages_restored(output: str) -> list[str]:
    """Names of the stages DVC restored from its run-cache."""
    return [line.split("'")[1] for line in output.splitlines() if "is cached - skipping run" in line]
