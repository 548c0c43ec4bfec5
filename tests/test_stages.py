"""Each stage's output for the two Kaggle models: layout, names, dtypes, shapes, metadata, metrics."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

from stages.core.digests import sha256_file as file_digest

UPSTREAM = {
    "cleaning": [
        "model/keras_metadata.pb",
        "model/saved_model.pb",
        "model/variables/variables.data-00000-of-00001",
        "model/variables/variables.index",
    ],
    "siamese": ["convnet_best_loss.pt"],
}
# (name, ONNX element type, shape) as the seed's manual conversion and export made them.
EXPECTED_IO = {
    "cleaning": (
        [("input", onnx.TensorProto.FLOAT, [1, 224, 224, 3])],
        [("output", onnx.TensorProto.FLOAT, [1, 224, 224, 3])],
    ),
    "siamese": (
        [("input0", onnx.TensorProto.UINT8, [150, 220]), ("input1", onnx.TensorProto.UINT8, [150, 220])],
        [
            ("output0", onnx.TensorProto.FLOAT, [1, 2048]),
            ("output1", onnx.TensorProto.FLOAT, [1, 2048]),
            ("output2", onnx.TensorProto.FLOAT, [1, 1]),
        ],
    ),
}


def io_of(values) -> list[tuple[str, int, list[int]]]:
    return [
        (
            v.name,
            v.type.tensor_type.elem_type,
            [d.dim_value if d.HasField("dim_value") else d.dim_param for d in v.type.tensor_type.shape.dim],
        )
        for v in values
    ]


@pytest.mark.parametrize("model", sorted(UPSTREAM))
def test_fetch_writes_exactly_the_upstream_layout(built_project: Path, model: str):
    raw = built_project / "data" / "raw" / model
    files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*") if p.is_file())
    assert files == UPSTREAM[model]
    assert not list(raw.parent.glob(f".{model}.*")), "staging folders must not be left behind"


def test_cleaning_stand_in_is_a_legacy_keras_savedmodel(built_project: Path):
    """Serving signature input_1 -> conv2d_6; no fingerprint.pb (tf.keras 2.6 wrote none)."""
    from google.protobuf import text_format  # noqa: F401  (protobuf is what SavedModel is made of)
    from tensorflow.core.protobuf import saved_model_pb2

    folder = built_project / "data" / "raw" / "cleaning" / "model"
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    signature = saved.meta_graphs[0].signature_def["serving_default"]
    assert list(signature.inputs) == ["input_1"]
    assert list(signature.outputs) == ["conv2d_6"]
    assert [d.size for d in signature.inputs["input_1"].tensor_shape.dim] == [-1, 224, 224, 3]
    assert not (folder / "fingerprint.pb").exists()


def test_cleaning_architecture_matches_the_upstream_keras_config(built_project: Path):
    """Layer names, classes, filters and activations equal those in the real keras_metadata.pb."""
    from conftest import SHARED

    reference = SHARED / "reference" / "cleaning_autoencoder_keras_config.json"
    if not reference.exists():
        pytest.skip("../shared/reference not available")
    from stages.families.keras_cleaning import build_autoencoder

    def summary(layers):
        keys = ("filters", "activation", "padding", "strides", "pool_size", "rate")
        return [(l["class_name"], l["config"]["name"], {k: l["config"].get(k) for k in keys}) for l in layers]

    upstream = json.loads(reference.read_text())["config"]["layers"]
    ours = json.loads(build_autoencoder().to_json())["config"]["layers"]
    normalise = lambda s: json.loads(
        json.dumps(s).replace('{"class_name": "__tuple__", "items": ', "").replace("]}", "]")
    )
    assert normalise(summary(ours)) == normalise(summary(upstream))
    assert build_autoencoder().count_params() == 2_106_051


def test_siamese_checkpoint_is_the_notebooks_dict(built_project: Path):
    import torch

    from stages.families.torch_sigver.checkpoint import torch_load

    checkpoint = torch_load(built_project / "data" / "raw" / "siamese" / "convnet_best_loss.pt")
    assert list(checkpoint) == ["model"], "exactly what the notebook saves: torch.save({'model': state_dict})"
    state = checkpoint["model"]
    assert tuple(state["model.conv_layers.conv1.conv.weight"].shape) == (96, 1, 11, 11)
    assert tuple(state["model.fc_layers.fc1.fc.weight"].shape) == (2048, 3840)
    assert tuple(state["probs.weight"].shape) == (1, 4096)
    assert tuple(state["projection2d.weight"].shape) == (2, 2048)
    assert "model.conv_layers.conv1.conv.bias" not in state
    running_var = state["model.conv_layers.conv3.bn.running_var"]
    assert running_var.dtype == torch.float32 and float(running_var.std()) > 0.1, "non-trivial BatchNorm statistics"
    assert state["model.conv_layers.conv1.bn.num_batches_tracked"].shape == ()
    # Plain weights_only loading reads it as is: no numpy object, no global beyond torch's own.
    plain = torch.load(built_project / "data" / "raw" / "siamese" / "convnet_best_loss.pt", weights_only=True)
    assert list(plain) == ["model"]


def test_converted_graph_is_the_converters_raw_output(built_project: Path):
    converted = onnx.load(str(built_project / "data" / "interim" / "cleaning" / "converted.onnx"))
    assert [v.name for v in converted.graph.input] == ["input_1"]
    assert io_of(converted.graph.input)[0][2] == ["unk__127", 224, 224, 3], "the seed saw unk__127 / unk__128"
    assert io_of(converted.graph.output)[0][2] == ["unk__128", 224, 224, 3]


@pytest.mark.parametrize("model", sorted(EXPECTED_IO))
def test_patched_names_dtypes_shapes(built_project: Path, model: str):
    path = built_project / "models" / model / "model.onnx"
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    inputs, outputs = EXPECTED_IO[model]
    assert io_of(graph.graph.input) == inputs
    assert io_of(graph.graph.output) == outputs
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [name for name, _, _ in inputs]


@pytest.mark.parametrize("model", sorted(EXPECTED_IO))
def test_published_model_traces_back_to_upstream_bytes(built_project: Path, model: str):
    published = built_project / "models" / model
    graph = onnx.load(str(published / "model.onnx"))
    metadata = {p.key: p.value for p in graph.metadata_props}
    lineage = json.loads((published / "lineage.json").read_text())
    raw = built_project / "data" / "raw" / model
    assert metadata["model"] == model
    for relative in UPSTREAM[model]:
        digest = file_digest(raw / relative)
        assert metadata[f"upstream_sha256:{relative}"] == digest
        assert lineage["upstream_files"][relative]["sha256"] == digest
    assert lineage["onnx"]["sha256"] == file_digest(published / "model.onnx")
    assert lineage["source"]["kind"] == "builtin" and "mean nothing" in lineage["source"]["note"]


@pytest.mark.parametrize("model", sorted(EXPECTED_IO))
def test_validation_metrics_and_plot_rows(built_project: Path, model: str):
    metrics = json.loads((built_project / "reports" / model / "validation.json").read_text())
    outputs = [name for name, _, _ in EXPECTED_IO[model][1]]
    assert sorted(metrics["outputs"]) == sorted(outputs)
    for name in outputs:
        assert 0 <= metrics["outputs"][name]["max_abs_error"] <= 1e-4
        assert {"max_rel_error", "mean_abs_error"} <= set(metrics["outputs"][name])
    rows = list(csv.DictReader((built_project / "reports" / model / "samples.csv").open()))
    assert len(rows) == metrics["samples"] > 0
    assert [int(r["sample"]) for r in rows] == list(range(len(rows)))
    if model == "siamese":
        assert metrics["outputs"]["output0"]["min_cosine"] >= 0.99999
        assert metrics["outputs"]["output0"]["ranking_triples"] > 0
        assert metrics["outputs"]["output2"]["decisions"] == metrics["samples"]


def test_canonical_names_leave_no_generated_counters(built_project: Path):
    import re

    for model in EXPECTED_IO:
        graph = onnx.load(str(built_project / "models" / model / "model.onnx")).graph
        names = (
            [n.name for n in graph.node]
            + [i.name for i in graph.initializer]
            + [o for n in graph.node for o in n.output]
        )
        assert not [n for n in names if re.search(r"__\d+$|onnx::|unk__", n)]
        assert all(not n.doc_string for n in graph.node)
