"""Stage `convert`: run the family's converter on data/raw/<model>/, then patch its graph (stages.patch).

The converter's graph is written as it comes (names, unknown dimensions) to
data/interim/<model>/converted.onnx; `stages.patch` then names and shapes it as params say and
writes data/interim/<model>/patched.onnx. Both steps run in this one process (one stage, one
start-up); `python -m stages.patch MODEL` repeats the second step alone.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from stages.core import paths
from stages.core.atomic import write_bytes
from stages.core.cli import model_parser, run_stage
from stages.core.params import ModelSpec
from stages.families import load_family
from stages.patch import patch

log = logging.getLogger(__name__)


def convert(name: str, spec: ModelSpec) -> None:
    target = paths.converted_onnx(name)
    log.info("converting with the %s converter (opset %d)", spec.family, spec.onnx.opset)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_file = Path(scratch) / "converted.onnx"
        load_family(spec.family).convert(paths.raw_dir(name), spec, scratch_file)
        write_bytes(target, scratch_file.read_bytes())
    log.info("wrote %s (%d bytes)", target, target.stat().st_size)


def convert_and_patch(name: str, spec: ModelSpec) -> None:
    convert(name, spec)
    patch(name, spec)


if __name__ == "__main__":
    run_stage(model_parser("stages.convert", __doc__.splitlines()[0]), convert_and_patch)
