"""Stage `variants`: faster variants of the published model, each validated against it, published within tolerance.

Builds the variants listed under `models.<model>.variants` in params.yaml (optimized, fp16,
int8_dynamic, int8_static; how each is made and why its bytes are the same on every machine:
`stages/speedups/`) from models/<model>/model.onnx, runs each beside the fp32 model in
ONNX Runtime on the validate stage's inputs (drawn signatures and `validation.image_dirs`), and
publishes models/<model>/variants/<variant>/{model.onnx, preprocessing.json} (a model folder the
`signature_onnx` package loads) only for the variants within their tolerances. Every variant's
deltas and, for one outside its tolerances, the reason it was not published go to
models/<model>/variants.json (CPU-dependent figures: a top-level DVC metric, never hashed into
dvc.lock). Speed is not measured here: a build measures nothing that depends on the machine's
load; `benchmarks/bench_package.py` times every published variant beside fp32 and the source
framework. A variant outside its tolerances is not an error of the stage (exit 0, a warning
line); a missing fp32 model is.
"""

from __future__ import annotations

if __name__ == "__main__":  # before numpy is imported (stages.core.pinned_kernels)
    from stages.core.pinned_kernels import pin_kernels

    pin_kernels("stages.variants")

import json
import logging

import numpy as np
import onnx
import onnxruntime

from signature_onnx.folder import MODEL_FILE, PREPROCESSING_FILE, VARIANTS_DIR
from stages import speedups
from stages.core import paths
from stages.speedups import checks
from stages.core.atomic import staged_directory, write_bytes
from stages.core.params import ModelSpec
from stages.core.errors import PipelineError
from stages.families import load_family
from stages.core.paths import user_images
from stages.core.pinned_kernels import run_with_pinned_kernels

log = logging.getLogger(__name__)
METRICS_FILE = "variants.json"
FOLDER = VARIANTS_DIR


def _run(session, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def variants(name: str, spec: ModelSpec) -> None:
    published = paths.published_dir(name)
    model_path, card_path = published / MODEL_FILE, published / PREPROCESSING_FILE
    for required in (model_path, card_path):
        if not required.exists():
            raise PipelineError(f"{required}: not found; run the validate stage first (dvc repro validate@{name})")
    fp32_bytes = model_path.read_bytes()
    fp32 = onnx.load_from_string(fp32_bytes)
    samples = load_family(spec.family).validation_inputs(spec, spec.validation.samples, user_images(name, spec))
    fp32_session = checks.session(fp32_bytes, str(model_path))
    references = [_run(fp32_session, feeds) for _sample, feeds in samples]
    record: dict = {
        "model": name,
        "reference": f"ONNX Runtime {onnxruntime.__version__} running {model_path} (fp32)",
        "samples": len(samples),
        "variants": {},
    }
    ready: dict[str, bytes] = {}
    for variant in spec.variants.enabled():
        tolerance = getattr(spec.variants, variant)
        entry: dict = {"tolerance": tolerance.model_dump(include={"min_cosine", "max_abs_error", "decision_agreement"}, exclude_none=True)}
        record["variants"][variant] = entry
        try:
            data, recipe = speedups.build(variant, fp32, spec, lambda count: checks.calibration_inputs(spec, count))
        except PipelineError as exc:
            entry.update(published=False, failure=f"not built: {exc}")
            log.warning("%s: NOT published: %s", variant, entry["failure"])
            continue
        session = checks.session(data, f"the {variant} variant")
        check = checks.VariantCheck(tolerance, spec.validation.embedding_outputs, spec.validation.decision_output, spec.validation.atol)
        for (sample, feeds), reference in zip(samples, references):
            check.add(sample, reference, _run(session, feeds))
        entry.update(check.result())
        entry.update(recipe=recipe, bytes=len(data))
        if check.failures:
            entry.update(published=False, failure="; ".join(check.failures))
            log.warning("%s: NOT published, outside its tolerances: %s", variant, entry["failure"])
            continue
        entry["published"] = True
        ready[variant] = data
        log.info("%s: within tolerance (min cosine %s, max abs error %s)", variant, entry["min_cosine"], entry["max_abs_error"])
    card = card_path.read_bytes()
    # Every payload is ready before the folder is swapped in: all of it appears, or the old one stays.
    with staged_directory(published / FOLDER) as staging:
        for variant, data in ready.items():
            write_bytes(staging / variant / MODEL_FILE, data)
            write_bytes(staging / variant / PREPROCESSING_FILE, card)
    write_bytes(published / METRICS_FILE, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    log.info("published %d of %d variants in %s", len(ready), len(record["variants"]), published / FOLDER)


if __name__ == "__main__":
    run_with_pinned_kernels("stages.variants", variants, __doc__.splitlines()[0])
