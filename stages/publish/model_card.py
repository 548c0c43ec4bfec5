"""Model cards (models/<name>/README.md) in the Hugging Face layout, generated at publish time.

A card is a pure function of the params entry and the lineage record: YAML front matter
(licence, library, tags), description, upstream and licence, intended and out-of-scope use,
inputs and outputs with the exact preprocessing, the validation rule and verdict, and the
lineage digests. Measured errors are not in it (they depend on the CPU; see validation.json).
The per-upstream facts (project, licence, preprocessing; docs/auditing.md, "Model card") are the
model family's: `Upstream` records and `card_preprocessing` in its folder's facts.py
(stages.core.family_facts).
"""

from __future__ import annotations

from typing import Any

from stages.core.family_facts import family_facts
from stages.core.params import ModelSpec

FILE = "README.md"

BIOMETRIC_OUT_OF_SCOPE = (
    "Deciding alone, without a trained human examiner, whether a signature is genuine (legal, "
    "banking or identity decisions): error rates depend on the writers, scanners and forgery "
    "skill and were not measured for your population.",
    "Identifying or tracking people from their handwriting, or any use without the consent the "
    "law requires for biometric data (for example GDPR article 9 in the EU).",
    "Inputs other than single, scanned, grayscale-convertible handwritten signatures "
    "(photos of documents, typed names, digital-pen traces) without re-validation.",
)


def preprocessing(spec: ModelSpec) -> list[str]:
    """The exact preprocessing the ONNX file expects, as code a user can call (the family's facts
    word it: `card_preprocessing` of its facts.py).

    The package `signature_onnx` (in this repository, `pip install ./`) applies it from the
    model folder's preprocessing.json: `python -m signature_onnx preprocess|clean|verify|embed`.
    """
    return family_facts(spec.family).card_preprocessing(spec)


def _tensor_rows(spec: ModelSpec) -> list[str]:
    rows = []
    for kind, tensors in (("input", spec.onnx.inputs), ("output", spec.onnx.outputs)):
        for tensor in tensors:
            shape = ", ".join(str(size) for size in tensor.shape)
            rows.append(f"| {kind} | `{tensor.name}` | {tensor.dtype} | [{shape}] |")
    return rows


def _validation_rows(validation: dict[str, Any]) -> list[str]:
    rows = [
        f"| verdict | **{validation['verdict']}** |",
        f"| reference | {validation['reference']} |",
        f"| samples | {validation['samples']} |",
        f"| element-wise rule | abs(onnx - reference) <= {validation['atol']} + {validation['rtol']} * abs(reference) |",
    ]
    if "min_cosine" in validation:
        rows.append(
            f"| embeddings {', '.join(validation['embedding_outputs'])} | cosine >= {validation['min_cosine']}, "
            "same distance rankings on every triple |"
        )
    if "decision_output" in validation:
        rows.append(f"| decision `{validation['decision_output']}` | same sign as the reference |")
    if graph := validation.get("preprocess_graph"):
        rows.append(
            f"| `preprocess.onnx` against the Python preprocessing | network input bit-equal on >= "
            f"{graph['min_exact_fraction']:.0%} of the accepted pages, at most {graph['max_gray_levels']} gray "
            f"level(s) off on any; `pipeline.onnx` outputs cosine >= {graph['min_cosine']} |"
        )
    return rows


def render(spec: ModelSpec, record: dict[str, Any], onnx_sha256: str) -> str:
    """The card's Markdown for one published model."""
    upstream = spec.architecture_facts.upstream
    name = record["model"]
    synthetic = record["synthetic_weights"]
    tags = ["onnx", *upstream.tags, *(["synthetic-weights"] if synthetic else [])]
    lines = [
        "---",
        f"license: {upstream.license_id}",
        "library_name: onnx",
        f"pipeline_tag: {upstream.task}",
        "tags:",
        *(f"- {tag}" for tag in tags),
        "---",
        "",
        f"# {name} (version {record['model_version']})",
        "",
    ]
    if synthetic:
        lines += [
            f"**Synthetic weights: this file holds a built-in stand-in (seed {record['source']['seed']}), not the "
            "upstream model. It proves the conversion only; its outputs, distances and verdicts mean nothing. "
            "Do not use it on real signatures.**",
            "",
        ]
    lines += [
        "## Model description",
        "",
        f"{record['description']}. ONNX opset {spec.onnx.opset}, converted by {record['converter']['name']} "
        f"{record['converter']['version']} and validated against {record['validation']['reference']}.",
        "",
        "## Upstream and licence",
        "",
        f"- Upstream: {upstream.project}, <{upstream.address}>.",
        f"- Licence: {upstream.license_text}",
        f"- Source of these bytes: `{record['source']['kind']}`"
        + (" (synthetic stand-in in the exact upstream format)." if synthetic else "."),
        *(
            f"- `{file}`: sha256 `{facts['sha256']}`, {facts['size']} bytes."
            for file, facts in sorted(record["upstream_files"].items())
        ),
        "",
        "## Intended use",
        "",
        "- Research, and as one input to a decision a trained human makes, on offline (scanned) handwritten signatures.",
        "- Reproducing the upstream model's outputs in ONNX Runtime, without its original framework.",
        "",
        "## Out-of-scope use",
        "",
        *(f"- {item}" for item in BIOMETRIC_OUT_OF_SCOPE),
        "",
        "## Inputs and outputs",
        "",
        "| | name | dtype | shape |",
        "| --- | --- | --- | --- |",
        *_tensor_rows(spec),
        "",
        *(f"- {step}" for step in preprocessing(spec)),
        "",
        "The same preprocessing as an ONNX graph, for runtimes without Python: `preprocess.onnx` "
        "(each `<input>_pixels`, uint8 [height, width, 3] RGB, gives `<input>` and `<input>_valid`) and "
        "`pipeline.onnx` (that graph composed with `model.onnx`: pixels in, the outputs above out). The build "
        "checks both against the package's Python preprocessing (the targets it met: under Validation).",
        "",
        "## Validation",
        "",
        "| check | value |",
        "| --- | --- |",
        *_validation_rows(record["validation"]),
        "",
        "Measured errors depend on the CPU in their last digits and are in `validation.json`, not here.",
        "",
        "## Lineage",
        "",
        f"- `model.onnx` sha256 `{onnx_sha256}`",
        f"- params entry `models.{name}` sha256 `{record['params_sha256']}`",
        f"- pipeline code (shared code and `stages/families/{record['family']}`) sha256 `{record['code_sha256']}`",
        "- toolchain: "
        + ", ".join(f"{package} {version}" for package, version in sorted(record["toolchain"].items()) if version),
        "",
        f"Check it: `python -m stages.verify models/{name}/model.onnx` (digests, dvc.lock, the commits that hold "
        "this file, the source pins, the provenance statement and the signature when present).",
        "",
    ]
    return "\n".join(lines)
