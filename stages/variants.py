"""Step `variants` (stage `derive`): faster variants of the published model, each validated against it, published within tolerance.

Builds the variants listed under `models.<model>.variants` in params.yaml (optimized, fp16,
int8_dynamic, int8_static; how each is made and why its bytes are the same on every machine:
`stages/speedups/`) from models/<model>/model.onnx, runs each beside the fp32 model in
ONNX Runtime on the validate stage's inputs (drawn signatures and `validation.image_dirs`), and
publishes models/<model>/variants/<variant>/ only for the variants within their tolerances. Each
variant folder is a model folder of its own (`signature_onnx` loads it, `check-vectors` and
`signature-onnx audit` check it): model.onnx, preprocessing.json, lineage.json (what it is a
variant of: the parent's sha256, the recipe, the tolerances it was checked with, the parent's
source), and the parent's test vectors (inputs and float64 expected outputs) with the variant's
tolerance, atol = its max_abs_error + the parent's atol, which the variant meets on them before
it is published. Every variant's measured deltas and, for one outside its tolerances, the reason
it was not published go to reports/<model>/variants.json (CPU-dependent figures, outside the
published folder, dvc.lock and git). Speed is not measured here: a build measures nothing that
depends on the machine's load; `benchmarks/bench_package.py` times every published variant beside
fp32 and the source framework. A variant outside its tolerances is not an error of the stage (exit 0, a warning
line); a missing fp32 model is.
"""

from __future__ import annotations

if __name__ == "__main__":  # before numpy is imported (stages.core.pinned_kernels)
    from stages.core.pinned_kernels import pin_kernels

    pin_kernels("stages.variants")

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from signature_onnx.folder import LINEAGE_FILE, MODEL_FILE, PREPROCESSING_FILE, VARIANTS_DIR
from signature_onnx.vectors import VECTORS_FILE, compare_set, find_test_sets, read_tensor
from stages import speedups
from stages.core import paths
from stages.core.atomic import staged_directory, write_bytes
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.paths import user_images
from stages.core.pinned_kernels import run_with_pinned_kernels
from stages.families import load_family
from stages.speedups import checks

log = logging.getLogger(__name__)
METRICS_FILE = "variants.json"
FOLDER = VARIANTS_DIR


def _run(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def parent_vectors(
    published: Path,
) -> tuple[dict, dict[str, bytes], list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]]:
    """The parent's test_vectors.json, its test set files (relative path -> bytes) and, per set, (inputs, expected)."""
    description = json.loads((published / VECTORS_FILE).read_text())
    files: dict[str, bytes] = {}
    sets = []
    for folder in find_test_sets(published):
        arrays: dict[str, dict[str, np.ndarray]] = {"input": {}, "output": {}}
        for tensor in sorted(folder.glob("*.pb")):
            files[f"{folder.name}/{tensor.name}"] = tensor.read_bytes()
            name, array = read_tensor(tensor)
            arrays[tensor.name.split("_")[0]][name] = array
        sets.append((arrays["input"], arrays["output"]))
    return description, files, sets


def vectors_failure(session, sets: list, atol: float) -> str | None:
    """How the variant misses its test vectors under check-vectors' own rule (rtol 0), or None."""
    for index, (feeds, expected) in enumerate(sets):
        actual = _run(session, feeds)
        result = compare_set(
            f"test_data_set_{index}", list(expected.items()), [actual[name] for name in expected], atol, 0.0
        )
        if not result.passed:
            return f"{result.name}: {result.failure}"
    return None


def variant_lineage(
    name: str,
    variant: str,
    data: bytes,
    parent_sha256: str,
    parent: dict,
    recipe: dict,
    tolerance: dict,
    atol: float,
    samples: int,
) -> bytes:
    """The variant folder's lineage.json: machine-independent (recipe, rules, digests; no measured value)."""
    document = {
        "model": name,
        "variant": variant,
        "onnx": {"file": MODEL_FILE, "sha256": hashlib.sha256(data).hexdigest()},
        "parent": {
            "file": f"../../{MODEL_FILE}",
            "sha256": parent_sha256,
            "model_version": parent.get("model_version"),
        },
        "recipe": recipe,
        "source": parent["source"],
        "synthetic_weights": parent["synthetic_weights"],
        "upstream_files": parent["upstream_files"],
        "validation": {
            "verdict": "pass",
            "reference": "ONNX Runtime running the parent model.onnx (fp32)",
            "samples": samples,
            "tolerance": tolerance,
            "atol": atol,
            "rtol": 0.0,
            "test_vectors": "the parent's, within atol = max_abs_error + the parent's validation atol",
        },
    }
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def variants(name: str, spec: ModelSpec) -> None:
    published = paths.published_dir(name)
    model_path, preprocessing_path = published / MODEL_FILE, published / PREPROCESSING_FILE
    for required, stage in (
        (model_path, "validate"),
        (preprocessing_path, "validate"),
        (published / LINEAGE_FILE, "validate"),
        (published / VECTORS_FILE, "derive"),  # its first step, stages.vectors
    ):
        if not required.exists():
            raise PipelineError(f"{required}: not found; run the {stage} stage first (dvc repro {stage}@{name})")
    fp32_bytes = model_path.read_bytes()
    fp32 = onnx.load_from_string(fp32_bytes)
    parent = json.loads((published / LINEAGE_FILE).read_text())
    vectors_description, vector_files, vector_sets = parent_vectors(published)
    samples = load_family(spec.family).validation_inputs(spec, spec.validation.samples, user_images(name, spec))
    fp32_session = checks.session(fp32_bytes, str(model_path))
    references = [_run(fp32_session, feeds) for _sample, feeds in samples]
    record: dict = {
        "model": name,
        "reference": f"ONNX Runtime {onnxruntime.__version__} running {model_path} (fp32)",
        "samples": len(samples),
        "variants": {},
    }
    ready: dict[str, dict[str, bytes]] = {}
    preprocessing_bytes = preprocessing_path.read_bytes()
    for variant in spec.variants.enabled():
        tolerance = getattr(spec.variants, variant)
        entry: dict = {
            "tolerance": tolerance.model_dump(
                include={"min_cosine", "max_abs_error", "decision_agreement"}, exclude_none=True
            )
        }
        record["variants"][variant] = entry
        try:
            data, recipe = speedups.build(variant, fp32, spec, lambda count: checks.calibration_inputs(spec, count))
        except PipelineError as exc:
            entry.update(published=False, failure=f"not built: {exc}")
            log.warning("%s: NOT published: %s", variant, entry["failure"])
            continue
        session = checks.session(data, f"the {variant} variant")
        check = checks.VariantCheck(
            tolerance, spec.validation.embedding_outputs, spec.validation.decision_output, spec.validation.atol
        )
        for (sample, feeds), reference in zip(samples, references):
            check.add(sample, reference, _run(session, feeds))
        entry.update(check.result())
        entry.update(recipe=recipe, bytes=len(data))
        if check.failures:
            entry.update(published=False, failure="; ".join(check.failures))
            log.warning("%s: NOT published, outside its tolerances: %s", variant, entry["failure"])
            continue
        atol = tolerance.max_abs_error + spec.validation.atol
        missed = vectors_failure(session, vector_sets, atol)
        if missed:
            entry.update(published=False, failure=f"misses its test vectors: {missed}")
            log.warning("%s: NOT published: %s", variant, entry["failure"])
            continue
        entry["published"] = True
        vectors_json = {**vectors_description, "tolerance": {"atol": atol, "rtol": 0.0}, "variant": variant}
        ready[variant] = {
            MODEL_FILE: data,
            PREPROCESSING_FILE: preprocessing_bytes,
            LINEAGE_FILE: variant_lineage(
                name,
                variant,
                data,
                hashlib.sha256(fp32_bytes).hexdigest(),
                parent,
                recipe,
                entry["tolerance"],
                atol,
                len(samples),
            ),
            VECTORS_FILE: (json.dumps(vectors_json, indent=2, sort_keys=True) + "\n").encode(),
            **vector_files,
        }
        log.info(
            "%s: within tolerance (min cosine %s, max abs error %s)",
            variant,
            entry["min_cosine"],
            entry["max_abs_error"],
        )
    # Every payload is ready before the folder is swapped in: all of it appears, or the old one stays.
    with staged_directory(published / FOLDER) as staging:
        for variant, files in ready.items():
            for relative, payload in files.items():
                write_bytes(staging / variant / relative, payload)
    record["model_sha256"] = hashlib.sha256(fp32_bytes).hexdigest()
    write_bytes(paths.reports_dir(name) / METRICS_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    log.info("published %d of %d variants in %s", len(ready), len(record["variants"]), published / FOLDER)


if __name__ == "__main__":
    run_with_pinned_kernels("stages.variants", variants, __doc__.splitlines()[0])
