"""Stage `fetch`: bring a model's upstream files into data/raw/<model>/, whole or not at all.

The files are fetched into a staging folder, checked against the layout in params, loaded in
their framework, and only then swapped in; a failure leaves the previous folder untouched.
"""

from __future__ import annotations

import argparse
import logging

from stages import paths
from stages.atomic import staged_directory
from stages.cli import model_parser, run_stage
from stages.config import ModelSpec
from stages.families import load_family
from stages.sources import check_layout, fetch_into

log = logging.getLogger(__name__)


def fetch(name: str, spec: ModelSpec, args: argparse.Namespace) -> None:
    target = paths.raw_dir(name)
    with staged_directory(target) as staging:
        fetch_into(staging, name, spec)
        check_layout(staging, name, spec)
        log.info("checking that %s loads", spec.family)
        load_family(spec.family).check_loadable(staging, spec)
    log.info("wrote %s (%d files)", target, len(spec.files))


if __name__ == "__main__":
    run_stage(model_parser("stages.fetch", __doc__.splitlines()[0]), fetch)
