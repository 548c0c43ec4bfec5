"""`sources.lock.yaml`: the committed sha256 and size of every upstream file, per model.

Pins belong to a model's upstream bytes, not to the transport: a file pinned from a Kaggle
kernel must come back byte-identical from an HTTPS mirror too. The `source` of each pin says
where it was first seen (a kernel, or a URL with secrets scrubbed), for the reviewer's eyes only.

The fetch stage checks every downloaded file against its pin before the files are loaded, and
records the pins of files that have none only after the whole fetch succeeded (layout checked,
files load in their framework). `builtin` stand-ins are neither checked nor recorded: they are
not upstream bytes, and a builtin fetch must never write a committed file.

Update a pin on purpose with `python -m stages.sources.pins forget MODEL [FILE ...]`, then fetch
again and commit the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages.core.atomic import write_text
from stages.core.cli import report_errors
from stages.core.errors import PipelineError, first_line

LOCK_FILE = Path("sources.lock.yaml")
VERSION = 1
HEADER = """\
# sha256 and size of every upstream file a `kaggle` or `url` source delivered, per model.
# Written by the fetch stage when a file has no pin yet: review it and commit it. A download
# whose bytes differ from its pin fails and leaves the previous data/raw/<model> in place.
# To accept new upstream bytes: python -m stages.sources.pins forget MODEL, fetch, commit.
"""
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Pin:
    """What a file must be: its sha256 (hex) and size; `source` says where it was pinned from."""

    sha256: str
    size: int
    source: str = ""

    def same_bytes(self, other: "Pin") -> bool:
        return self.sha256 == other.sha256 and self.size == other.size


@dataclass(frozen=True)
class LockFile:
    """An immutable snapshot of the lock file: model -> file -> Pin."""

    models: Mapping[str, Mapping[str, Pin]]

    @classmethod
    def load(cls, path: Path = LOCK_FILE) -> "LockFile":
        """Read the lock file; a missing file is an empty lock, a damaged one an error."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(models={})
        except OSError as exc:
            raise PipelineError(f"{path}: cannot read the pins file ({exc.strerror})") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise PipelineError(f"{path}: not valid YAML ({first_line(exc)}); restore it with git checkout") from None
        return cls(models=_parse(raw, path))

    def pins_for(self, model: str) -> dict[str, Pin]:
        return dict(self.models.get(model, {}))

    def with_model(self, model: str, pins: Mapping[str, Pin]) -> "LockFile":
        models = {name: dict(files) for name, files in self.models.items()}
        if pins:
            models[model] = dict(pins)
        else:
            models.pop(model, None)
        return LockFile(models=models)

    def dump(self) -> str:
        """Deterministic YAML (sorted keys), so the same pins always give the same bytes."""
        body = {
            "version": VERSION,
            "models": {
                model: {
                    file: {"sha256": pin.sha256, "size": pin.size, "source": pin.source}
                    for file, pin in sorted(files.items())
                }
                for model, files in sorted(self.models.items())
            },
        }
        return HEADER + yaml.safe_dump(body, sort_keys=True, default_flow_style=False, width=200)

    def write(self, path: Path = LOCK_FILE) -> None:
        try:
            write_text(Path(path), self.dump())
        except OSError as exc:
            raise PipelineError(f"{path}: cannot write the pins file ({exc.strerror})") from None


def _parse(raw: object, path: Path) -> dict[str, dict[str, Pin]]:
    """Check the structure by hand: every problem names the key, so a bad hand edit is obvious."""
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping with 'version' and 'models'")
    if raw.get("version", VERSION) != VERSION:
        raise PipelineError(f"{path}: version {raw.get('version')!r} is not supported (expected {VERSION})")
    unknown = sorted(set(raw) - {"version", "models"})
    if unknown:
        raise PipelineError(f"{path}: unknown keys {unknown}")
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise PipelineError(f"{path}: 'models' must be a mapping of model name to files")
    parsed: dict[str, dict[str, Pin]] = {}
    for model, files in models.items():
        if not isinstance(files, dict):
            raise PipelineError(f"{path}: models.{model} must map file names to {{sha256, size, source}}")
        parsed[str(model)] = {
            str(name): _parse_pin(entry, f"{path}: models.{model}.{name}") for name, entry in files.items()
        }
    return parsed


def _parse_pin(entry: object, where: str) -> Pin:
    if not isinstance(entry, dict) or set(entry) - {"sha256", "size", "source"}:
        raise PipelineError(f"{where}: expected exactly the keys sha256, size and source")
    sha256, size, source = entry.get("sha256"), entry.get("size"), entry.get("source", "")
    if not (isinstance(sha256, str) and len(sha256) == 64 and set(sha256) <= _SHA256_HEX):
        raise PipelineError(f"{where}.sha256: expected 64 lower-case hex digits")
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        raise PipelineError(f"{where}.size: expected a non-negative integer")
    if not isinstance(source, str):
        raise PipelineError(f"{where}.source: expected a string")
    return Pin(sha256=sha256, size=size, source=source)


def mismatch_message(model: str, file: str, got: Pin, pinned: Pin, path: Path = LOCK_FILE) -> str:
    """One line with both hashes, where the pin came from, and how to accept new bytes."""
    return (
        f"models.{model}: {file} differs from its pin in {path}: downloaded sha256 {got.sha256} "
        f"({got.size} bytes) from {got.source or 'the source'}, pinned sha256 {pinned.sha256} ({pinned.size} bytes) "
        f"from {pinned.source or 'an earlier fetch'}; data/raw/{model} is left as it was. If the upstream file "
        f"changed on purpose, run `python -m stages.sources.pins forget {model}`, fetch again and commit {path}"
    )


def verify(model: str, fetched: Mapping[str, Pin], pinned: Mapping[str, Pin], path: Path = LOCK_FILE) -> None:
    """Raise PipelineError on the first fetched file whose bytes differ from its pin."""
    for file in sorted(fetched):
        pin = pinned.get(file)
        if pin is not None and not pin.same_bytes(fetched[file]):
            raise PipelineError(mismatch_message(model, file, fetched[file], pin, path))


def record(model: str, files: Iterable[str], fetched: Mapping[str, Pin], path: Path = LOCK_FILE) -> list[str]:
    """Pin the fetched files that have no pin yet; return their names (empty: nothing written).

    Pins of files that params no longer list are dropped in the same write. The file is only
    rewritten when something is new, so a fetch of already-pinned bytes leaves it untouched
    (and `dvc repro` stays a no-op).
    """
    lock = LockFile.load(path)
    current = lock.pins_for(model)
    verify(model, fetched, current, path)
    wanted = list(files)
    new = sorted(f for f in wanted if f in fetched and f not in current)
    if not new:
        return []
    kept = {f: pin for f, pin in current.items() if f in wanted}
    kept.update({f: fetched[f] for f in new})
    lock.with_model(model, kept).write(path)
    return new


def forget(model: str, files: Iterable[str] = (), path: Path = LOCK_FILE) -> list[str]:
    """Drop the pins of `files` of `model` (all its pins if none given); return what was dropped."""
    lock = LockFile.load(path)
    current = lock.pins_for(model)
    names = list(files) or sorted(current)
    unknown = [f for f in names if f not in current]
    if unknown:
        raise PipelineError(f"{path}: models.{model} has no pin for {unknown} (pinned: {sorted(current)})")
    if not names:
        return []
    lock.with_model(model, {f: p for f, p in current.items() if f not in names}).write(path)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stages.sources.pins", description="Manage sources.lock.yaml.")
    parser.add_argument("--lock", type=Path, default=LOCK_FILE, help="lock file (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("show", help="print the pins of a model (or of every model)")
    show.add_argument("model", nargs="?")
    drop = commands.add_parser("forget", help="drop pins so the next fetch records the new upstream bytes")
    drop.add_argument("model")
    drop.add_argument("files", nargs="*", help="only these files (default: every file of the model)")
    args = parser.parse_args(argv)

    def run() -> None:
        if args.command == "forget":
            dropped = forget(args.model, args.files, args.lock)
            print(
                f"dropped {len(dropped)} pin(s) of {args.model}; run `dvc repro fetch@{args.model}` and commit {args.lock}"
            )
            return
        lock = LockFile.load(args.lock)
        for name in [args.model] if args.model else sorted(lock.models):
            for file, pin in sorted(lock.pins_for(name).items()):
                print(f"{name}\t{file}\t{pin.sha256}\t{pin.size}\t{pin.source}")

    return report_errors(run)


if __name__ == "__main__":
    sys.exit(main())
