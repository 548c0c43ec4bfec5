"""Sources of upstream bytes: `builtin` stand-ins, Kaggle notebook outputs, URL downloads.

`fetch_into(folder, name, spec)` fills an empty folder with the model's upstream layout
(`spec.files`); the fetch stage then checks the layout and loads it in its framework.
"""

from __future__ import annotations

import logging
from pathlib import Path

from stages.config import ModelSpec
from stages.errors import PipelineError
from stages.families import load_family

log = logging.getLogger(__name__)


def fetch_into(folder: Path, name: str, spec: ModelSpec) -> None:
    kind = spec.source.kind
    if kind == "builtin":
        log.info("writing the built-in stand-in (synthetic weights, seed %d)", spec.source.seed)
        load_family(spec.family).write_builtin(folder, spec)
    elif kind == "kaggle":
        from stages.sources import kaggle

        kaggle.fetch(folder, name, spec)
    elif kind == "url":
        from stages.sources import url

        url.fetch(folder, name, spec)
    else:  # unreachable: params are checked on load
        raise PipelineError(f"models.{name}.source.kind: unknown kind {kind!r}")


def check_layout(folder: Path, name: str, spec: ModelSpec) -> None:
    """The folder must hold exactly the files params declare, each non-empty."""
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    missing = sorted(set(spec.files) - set(present))
    extra = sorted(set(present) - set(spec.files))
    if missing or extra:
        raise PipelineError(
            f"models.{name}.files: the fetched layout differs from params: missing {missing}, unexpected {extra}"
        )
    empty = [f for f in spec.files if (folder / f).stat().st_size == 0]
    if empty:
        raise PipelineError(f"models.{name}: fetched files are empty: {empty}")
