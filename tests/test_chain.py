"""The chain a user runs, in order, with nothing but the documented commands.

build (the session's shared `dvc repro`) -> sign -> commit the signature -> `dvc push` -> release
(GTO tag) -> in a second clone `dvc pull` the published folder -> verify it (the upstream
`model_signing` CLI, `signature-onnx audit`, `stages.verify`) -> `dvc artifacts get` the release
into an empty folder -> verify it there, without a checkout -> run the package on it -> tamper
with any covered byte -> verification fails. Each step's time is printed (`pytest -s`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, dvc, git, shared_fixture
from remotes import Remote, add_default_remote, checked, clone, environment, release

MODEL = "signet"
STAGES = (f"validate@{MODEL}", f"derive@{MODEL}")


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None, code: Path | None = None
) -> subprocess.CompletedProcess:
    """A command in `cwd` with the project's code importable from `code` (default: `cwd`, a checkout;
    a user's folder has the installed package instead, here the repository's copy of it)."""
    return subprocess.run(
        [*args], cwd=cwd, capture_output=True, text=True, env={**(env or environment()), "PYTHONPATH": str(code or cwd)}
    )


def upstream_verify(folder: Path, public_key: Path) -> subprocess.CompletedProcess:
    """The upstream OpenSSF CLI, exactly as its README gives it: no option of this project."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            "--signature",
            str(folder / "model.sig"),
            "--public_key",
            str(public_key),
            str(folder),
        ],
        capture_output=True,
        text=True,
    )


def key_pair(folder: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "release.pem", folder / "release.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def covered_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "model.sig")


def test_build_release_pull_get_verify_run_tamper(reproduced, tmp_path: Path):
    built, build = reproduced
    assert build.returncode == 0, build.stderr[-2000:]
    seconds: dict[str, float] = {}

    def step(name: str, result: subprocess.CompletedProcess, started: float) -> subprocess.CompletedProcess:
        seconds[name] = time.perf_counter() - started
        return checked(result)

    private, public = key_pair(tmp_path / "keys")
    env = environment(MODEL_SIGNING_KEY=str(private))

    # The maintainer: a clone of the build, its outputs checked out, a folder remote committed.
    origin = clone(built, tmp_path / "origin", share_cache_of=built)
    shutil.copy(built / "dvc.lock", origin / "dvc.lock")  # `git commit dvc.lock` after the build (a no-op when current)
    subprocess.run(["git", "commit", "-qm", "build", "--allow-empty", "dvc.lock"], cwd=origin, check=True, env=env)
    checked(dvc(origin, "checkout", *STAGES))
    add_default_remote(origin, Remote("folder", str(tmp_path / "remote")))
    # A file beside the outputs (a leftover of an older build) would be signed and then be missing
    # from every pull: signing refuses it, naming it.
    leftover = origin / "models" / MODEL / "validation.json"
    leftover.write_text("{}")
    refused = run(origin, sys.executable, "-m", "stages.sign", MODEL, env=env)
    assert (
        refused.returncode == 1
        and "validation.json is not an output" in refused.stderr
        and refused.stderr.count("error:") == 1
    )
    leftover.unlink()
    (origin / "models" / MODEL / "commit.json").write_text('{"commit": "stale"}')  # an older release's: rewritten
    started = time.perf_counter()
    step("sign", run(origin, sys.executable, "-m", "stages.sign", MODEL, env=env), started)
    build_commit = git(origin, "rev-parse", "HEAD").strip()
    git(origin, "add", f"models/{MODEL}/model.sig", f"models/{MODEL}/commit.json")  # the folder's git-tracked files
    subprocess.run(["git", "commit", "-qm", f"sign {MODEL}"], cwd=origin, check=True, env=env)
    started = time.perf_counter()
    step("dvc push", dvc(origin, "push", *STAGES, "--with-deps", env=env), started)
    started = time.perf_counter()
    step("release", release(origin, MODEL, "--version", "v1.0.0", "--stage", "prod", env=env), started)
    assert {f"{MODEL}@v1.0.0", f"{MODEL}#prod#1"} <= set(git(origin, "tag").split())
    signed = origin / "models" / MODEL
    assert upstream_verify(signed, public).returncode == 0

    # A second machine: a clone with an empty cache pulls the published folder.
    machine = clone(origin, tmp_path / "machine")
    started = time.perf_counter()
    step("dvc pull", dvc(machine, "pull", *STAGES, env=env), started)
    pulled = machine / "models" / MODEL
    assert [p.relative_to(pulled) for p in covered_files(pulled)] == [
        p.relative_to(signed) for p in covered_files(signed)
    ]
    started = time.perf_counter()
    step("model_signing verify (pulled)", upstream_verify(pulled, public), started)
    started = time.perf_counter()
    audit = step(
        "audit (pulled)",
        run(
            machine,
            sys.executable,
            "-m",
            "signature_onnx",
            "audit",
            str(pulled),
            "--public-key",
            str(public),
            "--require-signature",
        ),
        started,
    )
    assert "=> verified" in audit.stdout and "FAIL" not in audit.stdout
    variants = sorted(pulled.glob("variants/*/model.onnx"))
    assert variants, "the signet build publishes variants"
    started = time.perf_counter()
    full = step(
        "stages.verify (pulled)",
        run(
            machine,
            sys.executable,
            "-m",
            "stages.verify",
            f"models/{MODEL}/model.onnx",
            *(str(v.relative_to(machine)) for v in variants),
            "--public-key",
            str(public),
            "--require-signature",
        ),
        started,
    )
    assert full.stdout.count("=> verified") == 1 + len(variants) and "N/A" not in full.stdout
    assert f"commit {build_commit} from a clean tree, whose dvc.lock records this file" in full.stdout

    # No clone: `dvc artifacts get` of the release into an empty folder.
    user = tmp_path / "user"
    user.mkdir()
    started = time.perf_counter()
    step(
        "dvc artifacts get",
        dvc(user, "artifacts", "get", str(origin), MODEL, "--rev", "v1.0.0", "-o", MODEL, env=env),
        started,
    )
    got = user / MODEL
    assert [p.relative_to(got) for p in covered_files(got)] == [p.relative_to(signed) for p in covered_files(signed)]
    assert (got / "model.sig").read_bytes() == (signed / "model.sig").read_bytes()
    started = time.perf_counter()
    step("model_signing verify (artifacts get)", upstream_verify(got, public), started)
    started = time.perf_counter()
    audit = step(
        "audit (artifacts get)",
        run(
            user,
            sys.executable,
            "-m",
            "signature_onnx",
            "audit",
            MODEL,
            "--public-key",
            str(public),
            "--require-signature",
            code=REPO,
        ),
        started,
    )
    assert "=> verified" in audit.stdout and "N/A   build" in audit.stdout
    assert f"commit {build_commit} from a clean tree" in audit.stdout
    outside = run(
        user,
        sys.executable,
        "-m",
        "stages.verify",
        f"{MODEL}/model.onnx",
        "--root",
        MODEL,
        "--public-key",
        str(public),
        "--require-signature",
        code=machine,
    )
    assert outside.returncode == 0, outside.stdout + outside.stderr
    # dvc.lock, history, pins, upstream, params, code, and which commit's dvc.lock holds the file
    assert outside.stdout.count("  N/A ") == 7 and "=> verified" in outside.stdout

    # The package runs the folder as it arrived: embeddings, its test vectors, each variant's.
    image = shared_fixture("signatures", "001_01.png")
    started = time.perf_counter()
    step(
        "embed",
        run(
            user,
            sys.executable,
            "-m",
            "signature_onnx",
            "embed",
            str(image),
            "--model",
            MODEL,
            "--out",
            "f.npy",
            "--public-key",
            str(public),
            code=REPO,
        ),
        started,
    )
    for folder in (got, *sorted(p.parent for p in got.glob("variants/*/model.onnx"))):
        checked(run(user, sys.executable, "-m", "signature_onnx", "check-vectors", str(folder), "-q", code=REPO))
    print("\nchain step seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items()))

    # Every covered byte counts: one changed byte in any file, or a file added, fails the signature.
    # `dvc artifacts get` of a local origin may hard-link its files to origin's cache, which is the
    # suite's shared build: the tampering works on a private copy of the folder.
    private = user / f"{MODEL}.private"
    shutil.copytree(got, private, copy_function=shutil.copyfile)
    shutil.rmtree(got)
    private.rename(got)
    from signature_onnx.errors import IntegrityError
    from signature_onnx.folder import verify_signature

    for file in covered_files(got):
        original = file.read_bytes()
        file.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        try:
            with pytest.raises(IntegrityError, match="changed since signing"):
                verify_signature(got, public)
        finally:
            file.write_bytes(original)
    verify_signature(got, public)  # restored
    first = covered_files(got)[0]
    first.write_bytes(first.read_bytes() + b"\0")
    refused = upstream_verify(got, public)
    assert refused.returncode != 0 and "Verification failed" in refused.stderr
    audit = run(user, sys.executable, "-m", "signature_onnx", "audit", MODEL, "--public-key", str(public), code=REPO)
    assert audit.returncode == 1 and "FAIL  signature" in audit.stdout and audit.stderr.count("error:") == 1
    shutil.copy(got / "README.md", got / "extra.md")
    first.write_bytes(first.read_bytes()[:-1])
    assert upstream_verify(got, public).returncode != 0  # a file the signature does not list
