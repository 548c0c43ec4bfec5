"""What a published model is and how it was made: one record, written three ways.

`build_record` gathers the facts (model, source, upstream digests, params and code digests,
converter, toolchain, validation verdict); `lineage.json` holds them plus the digest of the
published bytes, the ONNX file carries them as `metadata_props` (`metadata_entries`) and as a
readable `doc_string` (`doc_string`), and stages.verify recomputes them from the checkout.

Every value is a pure function of the inputs (upstream bytes, params, code, pinned packages):
no measured error, time, date, host or path, so the published bytes are the same on every
machine. Measured errors stay in validation.json, which is not hashed in dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stages.core.digests import sha256_file
from stages.core.params import ModelSpec
from stages.core.untrusted import scrub_url
from stages.core.versions import package_version

# The project root of the code that runs (a checkout holding stages/ and signature_onnx/).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Packages whose releases decide the published bytes or the validation verdict.
TOOLCHAIN = ("dvc", "onnx", "onnxruntime", "tf2onnx", "tensorflow", "tf-keras", "torch", "numpy")
SYNTHETIC_NOTE = "synthetic stand-in weights: its verdicts mean nothing"
# Python caches hold modification times; .dvcignore keeps them out of DVC's hash of `stages` too.
IGNORED_CODE_PARTS = ("__pycache__",)
IGNORED_CODE_SUFFIXES = (".pyc", ".pyo")


def build_code(family: str) -> list[str]:
    """The code that builds a model of `family`, relative to the project root: exactly the code
    dependencies the validate stage declares in dvc.yaml (tests/test_stage_dependencies.py checks
    that they agree and that they hold every module the stages import). A change to another
    family's folder neither reruns this model's stages nor changes this digest."""
    return [
        "signature_onnx",
        "stages/__init__.py",
        "stages/convert.py",
        "stages/core",
        "stages/families/__init__.py",
        f"stages/families/{family}",
        "stages/fetch.py",
        "stages/patch.py",
        "stages/preprocess_graph",
        "stages/publish",
        "stages/validate.py",
    ]


def code_files(root: Path, family: str) -> list[Path]:
    """The files of `build_code(family)` under `root`, sorted, without Python caches."""
    files = []
    for entry in build_code(family):
        path = root / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            relative = candidate.relative_to(root)
            if not candidate.is_file() or any(part in IGNORED_CODE_PARTS for part in relative.parts):
                continue
            if candidate.suffix not in IGNORED_CODE_SUFFIXES:
                files.append(candidate)
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def code_digest(root: Path, family: str) -> str:
    """sha256 over the sorted (path relative to `root`, file sha256) pairs of `code_files`.

    The same files with the same bytes give the same digest on any machine and in any clone.
    """
    lines = [f"{path.relative_to(root).as_posix()}\0{sha256_file(path)}\n" for path in code_files(root, family)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def params_digest(spec: ModelSpec) -> str:
    """sha256 of the model's checked params entry (its family's defaults merged in) as canonical JSON (sorted
    keys, defaults filled)."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def source_record(spec: ModelSpec) -> dict[str, Any]:
    """Where the upstream bytes came from, without secrets (URLs are scrubbed)."""
    source: dict[str, Any] = {"kind": spec.source.kind}
    if spec.source.kind == "kaggle" and spec.source.kaggle:
        source["kernel"] = spec.source.kaggle.kernel
    if spec.source.kind == "url":
        source["urls"] = {file: public_address(address) for file, address in spec.source.urls.items()}
    if spec.source.kind == "builtin":
        source["seed"] = spec.source.seed
        source["note"] = SYNTHETIC_NOTE
    return source


def public_address(address: str) -> str:
    """The URL without secrets; an archive member (`#<member>`) is kept: it names the converted file."""
    member = urlsplit(address).fragment
    return scrub_url(address) + (f"#{member}" if member else "")


def toolchain() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    versions.update({package: package_version(package) for package in TOOLCHAIN})
    return versions


def validation_record(spec: ModelSpec, references: list[str], samples: int, weights: dict[str, int]) -> dict[str, Any]:
    """The verdict and the rule it was given under; never a measured error (CPU-dependent).

    references: what the outputs were compared with (the source framework first, then an
    independent float64 oracle where the family has one); weights: the weight-exactness counts
    per rule (stages.core.weight_trace), a pure function of the bytes.
    """
    rule = spec.validation
    record: dict[str, Any] = {
        "verdict": "passed",
        "reference": references[0],
        "samples": samples,
        "atol": rule.atol,
        "rtol": rule.rtol,
        "weights_traced": dict(weights),
        # preprocess.onnx against the package's Python preprocessing (stages/preprocess_graph/check.py)
        "preprocess_graph": rule.preprocess_graph.model_dump(),
    }
    if len(references) > 1:
        record["independent_reference"] = references[1]
    if rule.embedding_outputs:
        record["embedding_outputs"] = list(rule.embedding_outputs)
        record["min_cosine"] = rule.min_cosine
        record["ranking_agreement"] = 1.0
    if rule.decision_output:
        record["decision_output"] = rule.decision_output
    return record


def build_record(
    name: str, spec: ModelSpec, raw: Path, code: Path, converter: tuple[str, str], validation: dict[str, Any]
) -> dict[str, Any]:
    """Every fact about the published model except the digest of its own bytes.

    raw: the model's upstream folder (data/raw/<name>); code: the project root whose code built it
    (`build_code`);
    converter: the ONNX producer name and version.
    """
    return {
        "model": name,
        "model_version": spec.version,
        "description": spec.description,
        "family": spec.family,
        "source": source_record(spec),
        "synthetic_weights": spec.source.kind == "builtin",
        "upstream_files": {
            file: {"sha256": sha256_file(raw / file), "size": (raw / file).stat().st_size}
            for file in sorted(spec.files)
        },
        "params_sha256": params_digest(spec),
        "code_sha256": code_digest(code, spec.family),
        "converter": {"name": converter[0], "version": converter[1]},
        "toolchain": toolchain(),
        "validation": validation,
    }


def lineage_document(
    record: dict[str, Any], onnx_sha256: str, opset: int, graphs: dict[str, str] | None = None
) -> dict[str, Any]:
    """lineage.json: the record plus the published files' digests (`graphs`: preprocess.onnx and
    pipeline.onnx -> sha256, built from model.onnx and the preprocessing params)."""
    onnx_entry: dict[str, Any] = {"file": "model.onnx", "sha256": onnx_sha256, "opset": opset}
    if graphs:
        onnx_entry["graphs"] = {file: {"sha256": digest} for file, digest in sorted(graphs.items())}
    return {**record, "onnx": onnx_entry}


def record_of(lineage: dict[str, Any]) -> dict[str, Any]:
    """The record inside a lineage.json document (everything but the published file's digest)."""
    return {key: value for key, value in lineage.items() if key != "onnx"}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def metadata_entries(record: dict[str, Any]) -> dict[str, str]:
    """The record as ONNX `metadata_props`: flat string keys and values.

    Upstream files keep the keys the patch step writes (`upstream_sha256:<file>`), plus
    `upstream_size:<file>`; nested facts become dotted keys (`validation.atol`); non-strings are
    JSON (`true`, `0.0001`, `["fc1", "fc2"]`).
    """
    entries: dict[str, str] = {}

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                flatten(f"{prefix}.{key}" if prefix else key, value[key])
        else:
            entries[prefix] = _text(value)

    for key in sorted(record):
        if key == "upstream_files":
            for file, facts in sorted(record[key].items()):
                entries[f"upstream_sha256:{file}"] = facts["sha256"]
                entries[f"upstream_size:{file}"] = str(facts["size"])
        else:
            flatten(key, record[key])
    return entries


def doc_string(record: dict[str, Any]) -> str:
    """A readable summary for tools that only show an ONNX file's doc_string."""
    source = record["source"]
    if record["synthetic_weights"]:
        weights = (
            f"SYNTHETIC WEIGHTS: a built-in stand-in (seed {source.get('seed')}), not the upstream model; "
            "its outputs mean nothing."
        )
    elif source["kind"] == "kaggle":
        weights = f"Weights: the output files of Kaggle notebook {source.get('kernel')}."
    else:
        weights = f"Weights: downloaded from {', '.join(sorted(source.get('urls', {}).values()))}."
    validation = record["validation"]
    upstream = ", ".join(f"{file} sha256 {facts['sha256']}" for file, facts in sorted(record["upstream_files"].items()))
    return (
        f"{record['model']} v{record['model_version']}: {record['description']}. {weights} "
        f"Upstream: {upstream}. "
        f"Built by the DVC pipeline (stages.fetch/convert/patch/validate), code sha256 {record['code_sha256']}, "
        f"params sha256 {record['params_sha256']}, converter {record['converter']['name']} {record['converter']['version']}. "
        f"Validation {validation['verdict']} against {validation['reference']}"
        + (f" and {validation['independent_reference']}" if "independent_reference" in validation else "")
        + f" on {validation['samples']} samples "
        f"(|onnx - ref| <= {validation['atol']} + {validation['rtol']} * |ref|); "
        f"all {validation['weights_traced']['constants']} constants traced bit for bit to the upstream bytes. "
        "Every fact is in metadata_props; check the file with `python -m stages.verify`."
    )
