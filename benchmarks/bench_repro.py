"""Benchmark of the main job: cold `dvc repro`, no-op `dvc repro`, and each stage's share.

Runs in a fresh copy of the repository (the files git tracks), so nothing cached here helps.
Not a test: it prints figures and the no-op/cold ratio, it asserts nothing.

    python benchmarks/bench_repro.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"Running stage '([^']+)'")


def fresh_copy(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    for relative in filter(None, files.split("\0")):
        source = REPO / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            (target / relative).write_bytes(source.read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)


def timed_repro(cwd: Path) -> tuple[float, dict[str, float]]:
    """Wall time of `dvc repro` and of each stage (from one 'Running stage' line to the next)."""
    start = time.perf_counter()
    stages: dict[str, float] = {}
    current, since = None, start
    process = subprocess.Popen(["dvc", "repro"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        match = STAGE_LINE.search(line)
        if match:
            now = time.perf_counter()
            if current:
                stages[current] = now - since
            current, since = match.group(1), now
    process.wait()
    end = time.perf_counter()
    if current:
        stages[current] = end - since
    if process.returncode != 0:
        sys.exit(f"dvc repro failed in {cwd} (exit {process.returncode})")
    return end - start, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this (empty) folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        fresh_copy(work)
        cold, stages = timed_repro(work)
        noop, _ = timed_repro(work)
    print(f"cold dvc repro:  {cold:7.1f} s   (target <= 180 s)")
    print(f"no-op dvc repro: {noop:7.1f} s   (target <= 5 s)   no-op/cold = {noop / cold:.3f}")
    print(f"{'stage':32s} {'seconds':>8s} {'share':>6s}")
    for stage, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        print(f"{stage:32s} {seconds:8.1f} {seconds / cold:6.1%}")
    by_step: dict[str, float] = {}
    for stage, seconds in stages.items():
        by_step[stage.split("@")[0]] = by_step.get(stage.split("@")[0], 0.0) + seconds
    print("per step: " + ", ".join(f"{step} {seconds:.1f} s ({seconds / cold:.0%})" for step, seconds in by_step.items()))


if __name__ == "__main__":
    main()
