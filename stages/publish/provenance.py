"""SLSA provenance of a published model as an in-toto Statement (provenance.intoto.json).

The statement is built from the lineage record alone (stages/publish/lineage.py), with no time, host
or invocation id, so the same inputs give the same bytes on every machine; stages.verify
rebuilds it from lineage.json and compares. Its shape is checked with the in-toto attestation
library's own protobuf messages (Statement v1, SLSA Provenance v1).
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from stages.core.errors import PipelineError

FILE = "provenance.intoto.json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# This project's build: the four DVC stages over one params entry (docs/pipeline.md).
BUILD_TYPE = "https://dvc.org/doc/command-reference/repro#signature-models-onnx/fetch-convert-patch-validate/v1"
BUILDER_ID = "https://dvc.org/doc/command-reference/repro#signature-models-onnx"


def _upstream_uri(source: dict[str, Any], file: str) -> str | None:
    if source["kind"] == "kaggle":
        return f"https://www.kaggle.com/code/{source['kernel']}"
    if source["kind"] == "url":
        return source["urls"].get(file)
    return None


def statement(record: dict[str, Any], onnx_sha256: str) -> dict[str, Any]:
    """The in-toto Statement whose subject is model.onnx and whose predicate is SLSA v1 provenance."""
    name = record["model"]
    source = record["source"]
    dependencies: list[dict[str, Any]] = []
    for file, facts in sorted(record["upstream_files"].items()):
        dependency: dict[str, Any] = {"name": f"data/raw/{name}/{file}", "digest": {"sha256": facts["sha256"]}}
        uri = _upstream_uri(source, file)
        if uri:
            dependency["uri"] = uri
        dependency["annotations"] = {"synthetic_weights": record["synthetic_weights"], "size": facts["size"]}
        dependencies.append(dependency)
    dependencies.append(
        {
            "name": f"stages/families/{record['family']} + shared code",
            "digest": {"sha256": record["code_sha256"]},
            "annotations": {"role": "the pipeline code that builds this model (stages.publish.lineage.build_code)"},
        }
    )
    dependencies.append(
        {
            "name": f"params.yaml#models.{name}",
            "digest": {"sha256": record["params_sha256"]},
            "annotations": {
                "role": "the model's params entry over its family's defaults, as checked "
                f"(params.yaml#families.{record['family']}; stages.publish.lineage.params_digest)"
            },
        }
    )
    for package, version in sorted(record["toolchain"].items()):
        if version is not None and package != "python":
            dependencies.append({"uri": f"pkg:pypi/{package}@{version}"})
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": "model.onnx", "digest": {"sha256": onnx_sha256}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "model": name,
                    "model_version": record["model_version"],
                    "params": f"params.yaml#models.{name}",
                    "source": source,
                },
                "internalParameters": {
                    "family": record["family"],
                    "converter": record["converter"],
                    "validation": record["validation"],
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {
                        "dvc": str(record["toolchain"].get("dvc")),
                        "python": str(record["toolchain"].get("python")),
                    },
                },
            },
        },
    }


def check_format(document: dict[str, Any]) -> None:
    """Parse with the in-toto library's messages; raise PipelineError naming what is malformed."""
    try:
        message = json_format.ParseDict(document, statement_pb2.Statement())
        Statement.copy_from_pb(message).validate()
        if message.predicate_type != PREDICATE_TYPE:
            raise ValueError(f"predicateType is {message.predicate_type!r}, expected {PREDICATE_TYPE}")
        json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, KeyError, TypeError) as exc:
        raise PipelineError(f"not an in-toto SLSA provenance statement: {str(exc)[:200]}") from None


def serialize(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
