"""Pinned float64 kernels: the float64 references (test vectors, static quantization ranges) are the
same bits on every machine of the architecture only when OpenBLAS's matrix-product kernel and
numpy's SIMD loops are fixed (the argument is in stages/vectors.py's docstring).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

# OpenBLAS's Prescott kernel (SSE3, on every x86-64 CPU) and numpy's X86_V2 baseline loops.
PINNED_KERNELS = {"OPENBLAS_CORETYPE": "Prescott", "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}


def pin_kernels(module: str) -> None:
    """Re-run `python -m module` in a process whose OpenBLAS kernel and numpy loops are pinned, unless
    this one already is (numpy reads both when it loads, so they cannot be changed in a process that
    has imported it). A stage calls this first, before its imports: the process it replaces should
    not pay for loading ONNX, ONNX Runtime and the families only to be thrown away."""
    if any(os.environ.get(key) != value for key, value in PINNED_KERNELS.items()):
        os.execve(sys.executable, [sys.executable, "-m", module, *sys.argv[1:]], {**os.environ, **PINNED_KERNELS})


def run_with_pinned_kernels(module: str, step: Callable, description: str) -> None:
    """Run a stage's command line (`stages.core.cli.run_stage`) under the pinned kernels."""
    from stages.core.cli import model_parser, run_stage

    pin_kernels(module)
    run_stage(model_parser(module, description), step)
