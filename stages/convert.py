"""Stage `convert`: run the family's converter on data/raw/<model>/ into data/interim/<model>/converted.onnx.

The converter's graph is kept as it comes (names, unknown dimensions); `patch` fixes those.
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

log = logging.getLogger(__name__)


def convert(name: str, spec: ModelSpec) -> None:
    target = paths.converted_onnx(name)
    log.info("converting with the %s converter (opset %d)", spec.family, spec.onnx.opset)
    with tempfile.TemporaryDirectory() as scratch:
        scratch_file = Path(scratch) / "converted.onnx"
        load_family(spec.family).convert(paths.raw_dir(name), spec, scratch_file)
        write_bytes(target, scratch_file.read_bytes())
    log.info("wrote %s (%d bytes)", target, target.stat().st_size)


if __name__ == "__main__":
    run_stage(model_parser("stages.convert", __doc__.splitlines()[0]), convert)
