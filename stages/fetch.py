"""Stage `fetch`: bring a model's upstream files into data/raw/<model>/, whole or not at all.

The files are fetched into a staging folder, checked against the layout in params and against
their sha256 pins in sources.lock.yaml (kaggle and url sources), loaded in their framework, and
only then swapped in; a failure leaves the previous folder untouched. Files without a pin get
one recorded after the whole fetch succeeded, and the stage asks the user to commit it.
When data/raw/<model> already holds exactly the pinned bytes, nothing is downloaded again.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from stages.core import paths
from stages.core.atomic import restore_retired, staged_directory
from stages.core.cli import model_parser, run_stage
from stages.core.digests import sha256_file
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.families import load_family
from stages.sources import check_layout, fetch_into, pins

log = logging.getLogger(__name__)


def remove_stale_staging(target: Path) -> None:
    """Delete what a killed run left beside `target`: staging (`.tmp`), retired (`.old`) and
    archive scratch (`.archive.`) folders (DVC never runs a stage twice at once)."""
    patterns = (f".{target.name}.*.tmp", f".{target.name}.*.old", f".{target.name}.archive.*")
    leftovers = [path for pattern in patterns for path in target.parent.glob(pattern)]
    for leftover in leftovers:
        if leftover.is_dir():
            log.info("removing %s, left by an interrupted run", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def holds_pinned_bytes(target: Path, name: str, spec: ModelSpec, pinned: dict[str, pins.Pin]) -> bool:
    """True when `target` has exactly the params layout and every file matches its pin."""
    if not target.is_dir() or any(f not in pinned for f in spec.files):
        return False
    try:
        check_layout(target, name, spec)
    except PipelineError:
        return False
    return all(
        (target / f).stat().st_size == pinned[f].size and sha256_file(target / f) == pinned[f].sha256
        for f in spec.files
    )


def fetch(name: str, spec: ModelSpec) -> None:
    target = paths.raw_dir(name)
    restore_retired(target)
    remove_stale_staging(target)
    family = load_family(spec.family)
    # Pins describe upstream bytes; the builtin stand-in is not upstream, so it neither reads nor writes them.
    remote = spec.source.kind != "builtin"
    pinned = pins.LockFile.load(pins.LOCK_FILE).pins_for(name) if remote else {}
    if remote and holds_pinned_bytes(target, name, spec, pinned):
        log.info("%s already holds the bytes pinned in %s; not downloading again", target, pins.LOCK_FILE)
        family.check_loadable(target, spec)
        return
    with staged_directory(target) as staging:
        fetched = fetch_into(staging, name, spec, pinned)
        check_layout(staging, name, spec)
        # Downloads are checked as they land; checking again here keeps the guarantee whatever the source.
        pins.verify(name, fetched, pinned)
        log.info("checking that %s loads", spec.family)
        family.check_loadable(staging, spec)
        recorded = pins.record(name, spec.files, fetched) if remote else []
    log.info("wrote %s (%d files)", target, len(spec.files))
    if recorded:
        log.warning(
            "models.%s: recorded new sha256 pins for %s in %s; review and commit it (git add %s)",
            name,
            ", ".join(recorded),
            pins.LOCK_FILE,
            pins.LOCK_FILE,
        )


if __name__ == "__main__":
    run_stage(model_parser("stages.fetch", __doc__.splitlines()[0]), fetch)
