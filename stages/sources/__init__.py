"""Sources of upstream bytes: `builtin` stand-ins, Kaggle notebook outputs, URL downloads.

`fetch_into(folder, name, spec, pins)` fills an empty folder with the model's upstream layout
(`spec.files`) and returns the sha256 and size of each downloaded file (nothing for `builtin`);
a download whose bytes differ from its pin fails before it lands. The fetch stage then checks
the layout, loads the files in their framework and records pins for files that had none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.families import load_family
from stages.sources.pins import Pin

log = logging.getLogger(__name__)


def fetch_into(folder: Path, name: str, spec: ModelSpec, pins: Mapping[str, Pin] | None = None) -> dict[str, Pin]:
    """Fill `folder`; return {file: Pin} of downloaded files (empty for the builtin stand-in)."""
    kind = spec.source.kind
    pins = pins or {}
    if kind == "builtin":
        log.info("writing the built-in stand-in (synthetic weights, seed %d)", spec.source.seed)
        load_family(spec.family).write_builtin(folder, spec)
        return {}
    if kind == "kaggle":
        # Imported lazily: a builtin fetch must not need kagglesdk, a network or credentials.
        from stages.sources import kaggle

        return kaggle.fetch(folder, name, spec, pins)
    if kind == "url":
        from stages.sources import url

        return url.fetch(folder, name, spec, pins)
    raise PipelineError(f"models.{name}.source.kind: unknown kind {kind!r}")  # unreachable: params are checked


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
