"""The machine-independent validation record: `models/<model>/verdict.json` (tracked in dvc.lock).

Why a second file beside reports/<model>/validation.json: the measured errors depend on the CPU in their last
digits (ONNX Runtime, oneDNN and BLAS pick kernels by instruction set), and any rounding of such
a value flips for some true value near a rounding boundary, so no precision makes them safe to
hash into dvc.lock. This record holds only what the check *certified*, each a pure function of
params.yaml and the input shapes, never of a measured float:

- `verdict`: "pass" (the stage publishes nothing when the check fails, so there is no "fail");
- `reference` (and `independent_reference`), `samples`, `tolerance` (atol, rtol, and
  min_cosine for a model with embedding outputs): what was compared, on how many samples,
  against which limit: every element of every output within `atol + rtol * |reference|`;
- `preprocess_pages`: on how many pages preprocess.onnx met its targets against the Python
  preprocessing (stages/preprocess_graph/check.py); the counts are in reports/<model>/validation.json.

It is kept to these few fields because DVC shows every field of every model's file as a column
(`dvc exp show`, `dvc metrics show`, which fits a 200-column terminal): the whole rule (embedding
and decision outputs, the required agreements, the preprocessing graph's targets, the
weight-trace counts) is in lineage.json's `validation`. Its bytes are
identical on every machine, so DVC caches, pushes and reads it at any revision: `dvc exp show`
and `dvc metrics diff` show it for main and every experiment. The measured, CPU-dependent numbers
stay in reports/<model>/validation.json and samples.csv, outside dvc.lock and git.
"""

from __future__ import annotations

import json

from stages.core.params import ValidationSpec

VERDICT_FILE = "verdict.json"


def certified_record(
    spec: ValidationSpec, references: list[str], samples: int, preprocess_pages: int | None = None
) -> dict:
    """The record of a passed validation: what the check certified, in a few flat fields.

    `references`: what the outputs were compared with, each within the tolerance (the source
    framework, then the independent float64 oracle where the family has one). Nothing here comes
    from a measured error.
    """
    record: dict = {
        "verdict": "pass",
        "reference": references[0],
        **({"independent_reference": references[1]} if len(references) > 1 else {}),
        "samples": samples,
        "tolerance": {"atol": spec.atol, "rtol": spec.rtol},
    }
    if spec.embedding_outputs:
        record["tolerance"]["min_cosine"] = spec.min_cosine
    if preprocess_pages is not None:
        # preprocess.onnx met its targets (lineage.json) on that many pages; how many pages were
        # bit-equal is measured (OpenCV's and SciPy's kernels are the reference): in the reports.
        record["preprocess_pages"] = preprocess_pages
    return record


def serialize(record: dict) -> bytes:
    """Canonical bytes: sorted keys, two-space indent, trailing newline (Python's float repr of
    params values is exact and the same on every machine)."""
    return (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
