"""What the shared code may know of a model family, read from the family's own folder.

Every family folder `stages/families/<family>/` holds `facts.py`, a declarative module that
imports nothing heavy (no framework, no onnx):

- `ARCHITECTURES`: architecture name (params `network.architecture`) -> `Architecture`;
- `MAX_BYTES`: the default size limit of one downloaded upstream file (params `source.max_bytes`);
- `card_preprocessing(spec)`: the model card's lines on the exact input and output.

The families are the folder names, so no shared module names one, and a params entry's family is
checked without importing any family. `family_facts` loads one family's `facts.py` by its path:
importing it as a submodule would first run the family package's `__init__`, which imports its
framework: a process that only checks params (`stages.patch` alone, a release, `stages.verify`)
should not pay for that.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from stages.core.errors import PipelineError

if TYPE_CHECKING:  # params imports this module
    from stages.core.params import ModelSpec

# Unresolved, like every imported module's __file__ (the import tracer of tests/ compares paths).
FAMILIES_DIR = Path(__file__).parents[1] / "families"
FACTS_FILE = "facts.py"
MB = 1024 * 1024  # the unit of the download limits (docs/MODEL_FACTS.md counts MB as 2^20 bytes)


@dataclass(frozen=True)
class Upstream:
    """What the model card says about one upstream project."""

    project: str
    address: str
    license_id: str  # Hugging Face `license:` identifier
    license_text: str
    task: str  # Hugging Face `pipeline_tag:`
    tags: tuple[str, ...]


def kaggle_notebook(kernel: str, holds: str, task: str, tags: tuple[str, ...]) -> Upstream:
    """The upstream record of a Kaggle notebook's output `kernel` (owner/slug) holding `holds`:
    Kaggle's terms give public notebooks and their outputs Apache 2.0 unless the author says
    otherwise, one rule for every family with a Kaggle upstream."""
    return Upstream(
        project=f"Kaggle notebook {kernel} ({holds})",
        address=f"https://www.kaggle.com/code/{kernel}",
        license_id="apache-2.0",
        license_text="Apache 2.0: Kaggle releases public notebooks and their outputs under Apache 2.0 "
        "unless the author states otherwise on the notebook page; check it before redistributing.",
        task=task,
        tags=tags,
    )


@dataclass(frozen=True)
class Architecture:
    """One network a family builds, as the shared stages need to know it."""

    # What the published model does, for the `signature_onnx` package (its `preprocessing.json`):
    # one of signature_onnx.folder.TASKS.
    task: str
    upstream: Upstream
    # The boolean `network` fields of params (stages.core.params.NetworkSpec) that apply to it.
    options: tuple[str, ...] = ()


class FamilyFacts(Protocol):
    """The contents of a family's `facts.py`."""

    ARCHITECTURES: Mapping[str, Architecture]
    MAX_BYTES: int

    def card_preprocessing(self, spec: ModelSpec) -> list[str]: ...


def known_families() -> tuple[str, ...]:
    """The family packages, by folder name (sorted): discovered without importing any of them."""
    return tuple(sorted(folder.name for folder in FAMILIES_DIR.iterdir() if (folder / "__init__.py").is_file()))


def family_facts(family: str) -> FamilyFacts:
    """The `facts.py` module of `family`, loaded once per process and only that family's.

    Loaded under a private module name (`_facts_of_<family>`): under its import name, a later
    `import stages.families.<family>.facts` would find it and skip importing its parent packages.
    """
    known = known_families()
    if family not in known:  # also keeps a name from params out of any path
        raise PipelineError(f"unknown family {family!r}; known: {', '.join(known)}")
    name = f"_facts_of_{family}"
    if name in sys.modules:
        return sys.modules[name]  # type: ignore[return-value]
    path = FAMILIES_DIR / family / FACTS_FILE
    spec = importlib.util.spec_from_file_location(name, path)
    if not path.is_file() or spec is None or spec.loader is None:
        raise PipelineError(f"{path} is missing: every family declares its facts there (docs/adding-a-model.md)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module  # type: ignore[return-value]
