"""The machine-independent validation record: `models/<model>/verdict.json` (tracked in dvc.lock).

Why a second file beside validation.json: the measured errors depend on the CPU in their last
digits (ONNX Runtime, oneDNN and BLAS pick kernels by instruction set), and any rounding of such
a value flips for some true value near a rounding boundary, so no precision makes them safe to
hash into dvc.lock. This record holds only what the check *certified*, each a pure function of
params.yaml and the input shapes, never of a measured float:

- `verdict`: "pass" (the stage publishes nothing when the check fails, so there is no "fail");
- `reference`, `samples`, `tolerance` (atol, rtol): what was compared, on how many samples,
  against which limit;
- per output, `elements` compared and the bounds the pass guarantees: every element within
  `atol + rtol * |reference|` (`max_abs_error_bound` = atol when rtol is 0), `min_cosine_bound`
  for embeddings, and the agreements the check requires to be exactly 1 (rankings, decisions).

Its bytes are identical on every machine, so DVC caches, pushes and reads it at any revision:
`dvc exp show` and `dvc metrics diff` show it for main and every experiment. The measured,
CPU-dependent numbers stay in validation.json and samples.csv, outside dvc.lock and git.
"""

from __future__ import annotations

import json

from stages.core.params import ValidationSpec

VERDICT_FILE = "verdict.json"


def certified_record(spec: ValidationSpec, references: list[str], samples: int, elements: dict[str, int],
                     weights: dict[str, int]) -> dict:
    """The record of a passed validation.

    `references`: what the outputs were compared with, each within the tolerance (the source
    framework, then the independent float64 oracle where the family has one); `elements` maps
    each output name to the number of values compared (a pure function of the output shapes and
    the samples); `weights`: the weight-exactness counts per rule (stages.core.weight_trace), a pure
    function of the bytes. Nothing here comes from a measured error.
    """
    outputs: dict[str, dict] = {}
    for name, count in elements.items():
        bounds: dict[str, float | int] = {"elements": count}
        if spec.rtol == 0:
            bounds["max_abs_error_bound"] = spec.atol
        if name in spec.embedding_outputs:
            bounds["min_cosine_bound"] = spec.min_cosine
            bounds["ranking_agreement"] = 1.0
        if name == spec.decision_output:
            bounds["decision_agreement"] = 1.0
        outputs[name] = bounds
    return {
        "verdict": "pass",
        "reference": references[0],
        **({"independent_reference": references[1]} if len(references) > 1 else {}),
        "weights_traced": dict(weights),
        "samples": samples,
        "tolerance": {"atol": spec.atol, "rtol": spec.rtol},
        "outputs": outputs,
    }


def serialize(record: dict) -> bytes:
    """Canonical bytes: sorted keys, two-space indent, trailing newline (Python's float repr of
    params values is exact and the same on every machine)."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
