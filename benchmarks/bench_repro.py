"""Benchmark of the main job: cold `dvc repro`, no-op `dvc repro`, `dvc status`, and each stage's share.

Runs in a fresh copy of the repository (the files git tracks), so nothing cached here helps.
Prints the machine (CPUs, load average before and after), the three times against their targets
(cold <= 150 s, no-op <= 2 s, status <= 3 s on 2 cores), then a model x stage table of seconds.
Not a test: it prints figures, it asserts nothing.

    python benchmarks/bench_repro.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
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


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this (empty) folder and keep it")
    args = parser.parse_args()
    before = load()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        fresh_copy(work)
        cold, stages = timed_repro(work)
        noop, _ = timed_repro(work)
        status = min(timed(["dvc", "status"], work) for _ in range(3))
    print(f"machine: {os.cpu_count()} CPUs, load average {before} before, {load()} after")
    print(f"cold dvc repro:  {cold:7.1f} s   (target <= 150 s)")
    print(f"no-op dvc repro: {noop:7.1f} s   (target <= 2 s)")
    print(f"dvc status:      {status:7.1f} s   (target <= 3 s; best of 3)")
    steps = list(dict.fromkeys(stage.split("@")[0] for stage in stages))
    models = list(dict.fromkeys(stage.split("@")[1] for stage in stages if "@" in stage))
    print(f"\n{'seconds':26s}" + "".join(f"{step:>9s}" for step in steps) + f"{'total':>9s}")
    for model in models:
        row = [stages.get(f"{step}@{model}", 0.0) for step in steps]
        print(f"{model:26s}" + "".join(f"{value:9.1f}" for value in row) + f"{sum(row):9.1f}")
    totals = [sum(v for k, v in stages.items() if k.split("@")[0] == step) for step in steps]
    print(f"{'all models':26s}" + "".join(f"{value:9.1f}" for value in totals) + f"{sum(totals):9.1f}")
    print(f"{'share of cold':26s}" + "".join(f"{value / cold:9.0%}" for value in totals))


if __name__ == "__main__":
    main()
