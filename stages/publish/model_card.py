"""Model cards (models/<name>/README.md) in the Hugging Face layout, generated at publish time.

A card is a pure function of the params entry and the lineage record: YAML front matter
(licence, library, tags), description, upstream and licence, intended and out-of-scope use,
inputs and outputs with the exact preprocessing, the validation rule and verdict, and the
lineage digests. Measured errors are not in it (they depend on the CPU; see validation.json).
The per-upstream facts below (project, licence, preprocessing) are the ones docs/auditing.md ("Model card") states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.core.params import ModelSpec

FILE = "README.md"


@dataclass(frozen=True)
class Upstream:
    """What the card says about one upstream project (a family and architecture)."""

    project: str
    address: str
    license_id: str  # Hugging Face `license:` identifier
    license_text: str
    task: str
    tags: tuple[str, ...]


# sigver_wiwd's three Lasagne architectures share one upstream project.
SIGVER_WIWD = Upstream(
    project="luizgh/sigver_wiwd, SigNet models of Hafemann, Sabourin and Oliveira (Lasagne/Theano pickles)",
    address="https://github.com/luizgh/sigver_wiwd",
    license_id="bsd-2-clause",
    license_text="BSD 2-Clause, the licence of the luizgh/sigver_wiwd repository that distributes the "
    "pickles; the datasets the networks were trained on carry their own (research-only) terms.",
    task="feature-extraction",
    tags=("signature-verification", "biometrics", "signet"),
)

UPSTREAMS = {
    ("keras_cleaning", "autoencoder"): Upstream(
        project="Kaggle notebook victordibia/signature-image-cleaning-with-tensorflow-2-0 (tf.keras 2.6 SavedModel)",
        address="https://www.kaggle.com/code/victordibia/signature-image-cleaning-with-tensorflow-2-0",
        license_id="apache-2.0",
        license_text="Apache 2.0: Kaggle releases public notebooks and their outputs under Apache 2.0 "
        "unless the author states otherwise on the notebook page; check it before redistributing.",
        task="image-to-image",
        tags=("signature-cleaning", "document-images", "autoencoder"),
    ),
    ("torch_sigver", "siamese"): Upstream(
        project="Kaggle notebook medali1992/siamese-signature-verification-with-confidence (PyTorch checkpoint)",
        address="https://www.kaggle.com/code/medali1992/siamese-signature-verification-with-confidence",
        license_id="apache-2.0",
        license_text="Apache 2.0: Kaggle releases public notebooks and their outputs under Apache 2.0 "
        "unless the author states otherwise on the notebook page; check it before redistributing.",
        task="image-classification",
        tags=("signature-verification", "biometrics", "siamese"),
    ),
    ("torch_sigver", "signet"): Upstream(
        project="luizgh/sigver, SigNet models of Hafemann, Sabourin and Oliveira (PyTorch .pth)",
        address="https://github.com/luizgh/sigver",
        license_id="bsd-3-clause",
        license_text="BSD 3-Clause, the licence of the luizgh/sigver repository that links the weights; "
        "the datasets the networks were trained on carry their own (research-only) terms.",
        task="feature-extraction",
        tags=("signature-verification", "biometrics", "signet"),
    ),
    **{("lasagne_signet", arch): SIGVER_WIWD for arch in ("signet", "signet_spp_300dpi", "signet_spp_600dpi")},
}


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
    """The exact preprocessing the ONNX file expects, as code a user can call.

    The package `signature_onnx` (in this repository, `pip install ./`) applies it from the
    model folder's preprocessing.json: `python -m signature_onnx preprocess|clean|verify|embed`.
    """
    if spec.network.architecture == "autoencoder":
        return [
            "Read the page as RGB uint8, resize to 224x224 with `cv2.INTER_AREA` and divide by 255: "
            "float32 [1, 224, 224, 3] in [0, 1] (`python -m signature_onnx clean` does it).",
            "The output is the cleaned image, float32 [1, 224, 224, 3] in [0, 1] (multiply by 255 for uint8).",
        ]
    if spec.network.architecture == "siamese":
        embedding = "2-d projections" if spec.network.projection2d else "2048-d embeddings"
        return [
            "Each signature: sigver's scikit-image preprocessing (`signature_onnx.preprocessing`, style "
            "sigver: centred on a 952x1360 canvas, inverted so ink is bright, resized to 256x256, "
            "cropped to 150x220), uint8 [150, 220]; the graph divides by 255 itself.",
            f"`output0`, `output1` are the two {embedding}; `sigmoid(output2)` is the notebook's "
            "same-writer probability (`python -m signature_onnx verify`).",
        ]
    if spec.family == "torch_sigver":
        return [
            "sigver's scikit-image preprocessing (`signature_onnx.preprocessing`, style sigver, "
            "952x1360 canvas), divided by 255: float32 [batch, 1, 150, 220] in [0, 1].",
            "`fc2` is the 2048-d feature vector; compare two signatures by the Euclidean distance of "
            "their features (`python -m signature_onnx embed`).",
        ]
    if spec.network.architecture != "signet":
        height, width = spec.preprocessing.input_size  # for SPP: the smallest accepted image
        return [
            "`255 - remove_background(scan)` (`signature_onnx.preprocessing`, style wiwd, spp) at the "
            f"scan's own size, float32 [batch, 1, height, width] in 0..255, at least {height}x{width}; "
            "smaller images are refused.",
            "`fc1` and `fc2` are 2048-d feature vectors (`python -m signature_onnx embed`).",
        ]
    return [
        "sigver_wiwd's preprocessing (`signature_onnx.preprocessing`, style wiwd, 952x1360 canvas) "
        "as float32, NOT divided by 255: [batch, 1, 150, 220] in 0..255, ink bright, background 0.",
        "`fc2` (after its ReLU) is the feature vector of the upstream notebook; `fc1` is also a valid "
        "feature layer (`python -m signature_onnx embed`).",
    ]


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
        rows.append(f"| embeddings {', '.join(validation['embedding_outputs'])} | cosine >= {validation['min_cosine']}, "
                    "same distance rankings on every triple |")
    if "decision_output" in validation:
        rows.append(f"| decision `{validation['decision_output']}` | same sign as the reference |")
    return rows


def render(spec: ModelSpec, record: dict[str, Any], onnx_sha256: str) -> str:
    """The card's Markdown for one published model."""
    upstream = UPSTREAMS[spec.family, spec.network.architecture]
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
        *(f"- `{file}`: sha256 `{facts['sha256']}`, {facts['size']} bytes."
          for file, facts in sorted(record["upstream_files"].items())),
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
        "checks both against the package's Python preprocessing (the targets it met: `verdict.json`, `preprocess_graph`).",
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
        "- toolchain: " + ", ".join(f"{package} {version}" for package, version in sorted(record["toolchain"].items()) if version),
        "",
        f"Check it: `python -m stages.verify models/{name}/model.onnx` (digests, dvc.lock, the commits that hold "
        "this file, the source pins, the provenance statement and the signature when present).",
        "",
    ]
    return "\n".join(lines)
