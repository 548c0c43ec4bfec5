"""Time getting the models from a remote against building them, and the run-cache against a run.

    python benchmarks/bench_distribution.py [--built CLONE --cold-seconds S]

Without --built it first makes a fresh clone of this repository and runs `dvc repro` (the cold
build, the baseline). Then, for a folder remote and for moto's S3 server on 127.0.0.1: push the
whole build with its run-cache, `dvc pull` it into a fresh clone, `dvc repro --pull` in another,
`dvc get` one model (artifacts get needs a released version: the tests time that). Last, the run-cache: validate@siamese run with a changed param,
restored after reverting it, and restored on a second machine from the pushed run-cache. Every
line prints seconds and the ratio to its baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO)]

from conftest import fresh_clone  # noqa: E402  (the tests' clone of the work tree)
from remotes import MotoS3, Remote, add_default_remote, clone, stages_restored, stages_run  # noqa: E402


def run(cwd: Path, *args: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed in {cwd}: {result.stderr.strip()[-500:]}")
    return seconds, result.stdout


def set_atol(project: Path, model: str, atol: float) -> None:
    params = project / "params.yaml"
    text = params.read_text()
    at = text.index("atol: ", text.index(f"\n  {model}:\n"))
    params.write_text(text[:at] + f"atol: {atol:.1e}" + text[text.index("\n", at) :])


def report(label: str, seconds: float, baseline: float, baseline_name: str) -> None:
    print(f"{label:<58} {seconds:7.1f} s   {seconds / baseline:5.3f} x {baseline_name}", flush=True)


def remote_flow(built: Path, remote: Remote, work: Path, cold: float) -> None:
    env = remote.env()
    origin = clone(built, work / "origin", share_cache_of=built)
    add_default_remote(origin, remote)
    seconds, _ = run(origin, "dvc", "push", "--run-cache", env=env)
    report(f"[{remote.kind}] dvc push --run-cache (whole build)", seconds, cold, "cold repro")
    pulled = clone(origin, work / "pulled")
    seconds, _ = run(pulled, "dvc", "pull", env=env)
    report(f"[{remote.kind}] fresh clone: dvc pull (every output)", seconds, cold, "cold repro")
    repro = clone(origin, work / "repro")
    seconds, out = run(repro, "dvc", "repro", "--pull", env=env)
    assert stages_run(out) == [], out
    report(f"[{remote.kind}] fresh clone: dvc repro --pull (no stage runs)", seconds, cold, "cold repro")
    seconds, _ = run(
        work, "dvc", "get", str(origin), "models/signet/model.onnx", "-o", str(work / "signet.onnx"), env=env
    )
    report(f"[{remote.kind}] dvc get REPO models/signet/model.onnx", seconds, cold, "cold repro")


def run_cache_flow(built: Path, remote: Remote, work: Path) -> None:
    env = remote.env()
    origin = clone(built, work / "rc-origin", share_cache_of=built)
    add_default_remote(origin, remote)
    run(origin, "dvc", "push", "--run-cache", env=env)
    first = clone(origin, work / "first")
    run(first, "dvc", "pull", "--run-cache", "validate@siamese", "--with-deps", env=env)
    set_atol(first, "siamese", 0.0002)
    ran, out = run(first, "dvc", "repro", "validate@siamese", env=env)
    assert stages_run(out) == ["validate@siamese"], out
    report("validate@siamese run (changed param): the baseline", ran, ran, "run")
    set_atol(first, "siamese", 0.0001)
    seconds, out = run(first, "dvc", "repro", "validate@siamese", env=env)
    assert stages_restored(out) == ["validate@siamese"], out
    report("param reverted: restored from the run-cache", seconds, ran, "run")
    set_atol(first, "siamese", 0.0002)
    run(first, "dvc", "repro", "validate@siamese", env=env)
    run(first, "dvc", "push", "--run-cache", env=env)
    second = clone(origin, work / "second")
    run(second, "dvc", "pull", "--run-cache", "validate@siamese", "--with-deps", env=env)
    set_atol(second, "siamese", 0.0002)
    seconds, out = run(second, "dvc", "repro", "--pull", "validate@siamese", env=env)
    assert stages_restored(out) == ["validate@siamese"] and stages_run(out) == [], out
    report("another machine: restored from the pushed run-cache", seconds, ran, "run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--built", type=Path, help="a clone where `dvc repro` has run (default: build one, timed)")
    parser.add_argument("--cold-seconds", type=float, help="with --built: how long its cold `dvc repro` took")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-distribution-") as scratch:
        work = Path(scratch)
        env = {**os.environ}
        if args.built:
            built = args.built.resolve()
            noop, _ = run(built, "dvc", "repro", env=env)  # must be a no-op: the build is there
            if args.cold_seconds is None:
                sys.exit("error: with --built, give --cold-seconds (a cold `dvc repro` of that build, timed)")
            cold = args.cold_seconds
            print(f"using {built} (no-op repro {noop:.1f} s), cold repro given: {cold:.1f} s", flush=True)
        else:
            built = fresh_clone(work / "built")
            print("cold dvc repro of every model (the baseline) ...", flush=True)
            cold, _ = run(built, "dvc", "repro", env=env)
            report("cold dvc repro (every model, every stage)", cold, cold, "cold repro")
        folder = work / "folder-remote"
        folder.mkdir()
        remote_flow(built, Remote("folder", str(folder)), work / "folder", cold)
        server = MotoS3()
        try:
            remote_flow(built, server.remote(), work / "s3", cold)
            run_cache_flow(built, server.remote(), work / "run-cache")
        finally:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
