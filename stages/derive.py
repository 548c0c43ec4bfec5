"""Stage `derive`: what is made from the published model.onnx: its test vectors, then its faster variants.

Both steps compute float64 references that must be the same bits on every machine, so both run
under the pinned kernels (stages.core.pinned_kernels), in this one process: stages.vectors
writes models/<model>/test_data_set_*, test_vectors.json and pipeline_test_data, then
stages.variants builds, checks and publishes models/<model>/variants/ (each variant folder
carries those test vectors with its own tolerance). `python -m stages.vectors MODEL` and
`python -m stages.variants MODEL` run one step alone.
"""

from __future__ import annotations

if __name__ == "__main__":  # before numpy is imported (stages.core.pinned_kernels)
    from stages.core.pinned_kernels import pin_kernels

    pin_kernels("stages.derive")

from stages.core.params import ModelSpec
from stages.core.pinned_kernels import run_with_pinned_kernels
from stages.variants import variants
from stages.vectors import vectors


def derive(name: str, spec: ModelSpec) -> None:
    vectors(name, spec)
    variants(name, spec)


if __name__ == "__main__":
    run_with_pinned_kernels("stages.derive", derive, __doc__.splitlines()[0])
