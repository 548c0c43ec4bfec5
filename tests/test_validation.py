"""The validator catches what it must: a perturbed weight, a flipped decision, a turned embedding."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import copy_project, run_step
from onnx import numpy_helper

from stages.core.comparison import Validator
from stages.core.errors import PipelineError
from stages.core.params import ValidationSpec, read_params_file


def weight_initializers(graph: onnx.GraphProto, op_types: tuple[str, ...]) -> list[str]:
    """Names of the weight initializers (input slot 1) of nodes of the given types, in graph order."""
    initializers = {i.name for i in graph.initializer}
    return [n.input[1] for n in graph.node if n.op_type in op_types and len(n.input) > 1 and n.input[1] in initializers]


def perturb_one_weight(model_path: Path, initializer_name: str, relative: float) -> tuple[int, ...]:
    """Change the largest element of one initializer by `relative` of itself; return its index."""
    model = onnx.load(str(model_path))
    for init in model.graph.initializer:
        if init.name == initializer_name:
            values = numpy_helper.to_array(init).copy()
            index = np.unravel_index(int(np.argmax(np.abs(values))), values.shape)
            values[index] *= 1 + relative
            init.CopyFrom(numpy_helper.from_array(values, init.name))
            onnx.save(model, str(model_path))
            return tuple(int(i) for i in index)
    raise AssertionError(f"no initializer {initializer_name}")


def project_with(built: Path, target: Path, model: str) -> Path:
    """A scratch project holding the built artifacts of one model (the session fixture stays clean)."""
    project = copy_project(target)
    for part in (f"data/raw/{model}", f"data/interim/{model}", f"models/{model}"):
        shutil.copytree(built / part, project / part, copy_function=shutil.copyfile)
    return project


@pytest.mark.parametrize(
    ("model", "op_types", "position", "relative"),
    [
        ("cleaning", ("Conv",), 0, 0.05),  # first conv layer: the error travels through 9 layers
        ("cleaning", ("Conv",), -1, 0.01),  # the output layer
        ("siamese", ("Conv",), 2, 0.05),  # conv3 of the shared SigNet
        ("siamese", ("Gemm", "MatMul"), -1, 0.01),  # probs: only the logit moves
    ],
)
def test_perturbed_weight_is_rejected_and_nothing_is_published(
    built_project: Path, tmp_path: Path, model: str, op_types: tuple[str, ...], position: int, relative: float
):
    project = project_with(built_project, tmp_path / "p", model)
    patched = project / "data" / "interim" / model / "patched.onnx"
    graph = onnx.load(str(patched)).graph
    target = weight_initializers(graph, op_types)[position]
    perturb_one_weight(patched, target, relative)
    folder = project / "models" / model
    published = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    result = run_step(project, "validate", model, check=False)

    assert result.returncode == 1, result.stderr[-2000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert "output '" in error[0] and "sample '" in error[0] and "off by" in error[0]
    assert {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == published


def test_unperturbed_copy_passes(built_project: Path):
    """The same stage on the unperturbed patched.onnx published (the shared build ran it, and
    `project_with` copies exactly that file): the rejections above are not spurious."""
    assert (built_project / "models" / "siamese" / "model.onnx").is_file()
    metrics = json.loads((built_project / "reports" / "siamese" / "validation.json").read_text())
    assert metrics["outputs"]["output2"]["decisions"] == metrics["samples"] > 0
    assert metrics["outputs"]["output0"]["ranking_triples"] > 0


def spec(**overrides) -> ValidationSpec:
    values = {
        "samples": 2,
        "atol": 1e-4,
        "rtol": 0.0,
        "min_cosine": 0.9999,
        "embedding_outputs": ["emb"],
        "decision_output": "logit",
    }
    values.update(overrides)
    return ValidationSpec(**values)


def outputs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"emb": rng.normal(size=(1, 64)).astype(np.float32), "logit": np.array([[0.7]], np.float32)}


def test_validator_passes_within_tolerance_and_reports_metrics():
    rng = np.random.default_rng(0)
    validator = Validator(spec(), "Reference")
    for index in range(4):
        ref = outputs(rng)
        got = {k: v + np.float32(3e-5) for k, v in ref.items()}
        validator.add(f"s{index}", ref, got)
    validator.check_rankings()
    metrics = validator.metrics()
    assert metrics["outputs"]["emb"]["max_abs_error"] == pytest.approx(3e-5, rel=0.01)
    assert (
        metrics["outputs"]["emb"]["ranking_triples"] + metrics["outputs"]["emb"]["ranking_near_ties_skipped"] == 4 * 3
    )
    assert metrics["outputs"]["logit"]["decisions"] == 4 and metrics["outputs"]["logit"]["decisions_near_zero"] == 0
    assert metrics["samples"] == 4


def test_validator_names_output_sample_and_element():
    ref = outputs(np.random.default_rng(1))
    got = {k: v.copy() for k, v in ref.items()}
    got["emb"][0, 17] += 2e-3
    with pytest.raises(PipelineError, match=r"output 'emb', sample 'page 3', element \(0, 17\).*off by 0\.002"):
        Validator(spec(), "Reference").add("page 3", ref, got)


def test_validator_catches_a_flipped_decision_but_tolerates_one_within_atol_of_zero():
    ref = outputs(np.random.default_rng(2))
    flipped = {"emb": ref["emb"], "logit": -ref["logit"] * 0.5}
    # Loose element-wise tolerance (rtol 2) lets 0.7 -> -0.35 pass allclose; the sign check must not.
    with pytest.raises(PipelineError, match="decision flips"):
        Validator(spec(atol=0.01, rtol=2.0), "Reference").add("s", ref, flipped)
    validator = Validator(spec(), "Reference")
    near_zero = {"emb": ref["emb"], "logit": np.array([[5e-5]], np.float32)}
    validator.add("s", near_zero, {"emb": ref["emb"], "logit": np.array([[-4e-5]], np.float32)})
    assert validator.metrics()["outputs"]["logit"]["decisions_near_zero"] == 1


def test_validator_catches_a_turned_embedding():
    ref = outputs(np.random.default_rng(3))
    got = {"emb": -ref["emb"], "logit": ref["logit"]}
    with pytest.raises(PipelineError, match="cosine similarity"):
        Validator(spec(atol=100.0), "Reference").add("s", ref, got)


def test_validator_catches_reordered_distances():
    rng = np.random.default_rng(4)
    # rtol 1 and min_cosine 0.5 let a swap of positive embeddings through the element-wise and
    # cosine checks, so only the ranking check can notice that distances were reordered.
    validator = Validator(spec(rtol=1.0, min_cosine=0.5), "Reference")
    anchors = [rng.uniform(1, 2, size=(1, 8)).astype(np.float32) for _ in range(4)]
    for index, emb in enumerate(anchors):
        swapped = anchors[(index + 1) % 4] if index < 2 else emb
        validator.add(
            f"s{index}",
            {"emb": emb, "logit": np.ones((1, 1), np.float32)},
            {"emb": swapped, "logit": np.ones((1, 1), np.float32)},
        )
    with pytest.raises(PipelineError, match="rankings agree on only"):
        validator.check_rankings()


def ranking_counts_by_definition(refs: np.ndarray, gots: np.ndarray, atol: float) -> tuple[int, int]:
    """(triples compared, near ties skipped), one (anchor, a, b) at a time: the rule as written."""
    ref_d = np.linalg.norm(refs[:, None] - refs[None], axis=-1)
    got_d = np.linalg.norm(gots[:, None] - gots[None], axis=-1)
    counted = skipped = 0
    for anchor in range(len(refs)):
        for a, b in itertools.combinations([i for i in range(len(refs)) if i != anchor], 2):
            gap = ref_d[anchor, a] - ref_d[anchor, b]
            if abs(gap) <= 2 * atol * np.sqrt(refs.shape[1]):
                skipped += 1
                continue
            counted += 1
            assert np.sign(gap) == np.sign(got_d[anchor, a] - got_d[anchor, b])
    return counted, skipped


@pytest.mark.parametrize("seed", range(6))
def test_the_ranking_check_counts_the_triples_of_its_definition(seed: int):
    """check_rankings (array form) compares and skips exactly the triples the one-by-one rule does,
    near ties included (rounded embeddings make many exact ties)."""
    rng = np.random.default_rng(seed)
    samples, atol = int(rng.integers(3, 14)), (1e-6, 1e-4, 0.05)[seed % 3]
    refs = rng.normal(size=(samples, 16)).astype(np.float32)
    if seed % 2:
        refs = np.round(refs, 1)
    validator = Validator(spec(atol=atol, rtol=1.0, min_cosine=0.5), "Reference")
    for index, ref in enumerate(refs):
        validator.add(
            f"s{index}",
            {"emb": ref[None], "logit": np.ones((1, 1), np.float32)},
            {"emb": ref[None], "logit": np.ones((1, 1), np.float32)},
        )
    validator.check_rankings()
    summary = validator.metrics()["outputs"]["emb"]
    as_float64 = refs.astype(np.float64)
    counted, skipped = ranking_counts_by_definition(as_float64, as_float64, atol)
    assert (summary["ranking_triples"], summary["ranking_near_ties_skipped"]) == (counted, skipped)
    assert counted + skipped == samples * (samples - 1) * (samples - 2) // 2


def test_validator_refuses_shape_dtype_and_non_finite():
    ref = outputs(np.random.default_rng(5))
    with pytest.raises(PipelineError, match=r"ONNX gives float32\[1, 63\]"):
        Validator(spec(), "Reference").add("s", ref, {"emb": ref["emb"][:, :63], "logit": ref["logit"]})
    bad = {"emb": ref["emb"].copy(), "logit": ref["logit"]}
    bad["emb"][0, 0] = np.nan
    with pytest.raises(PipelineError):
        Validator(spec(), "Reference").add("s", ref, bad)


def test_user_image_folder_is_validated_and_bad_images_are_named(built_project: Path, tmp_path: Path):
    import yaml
    from conftest import shared_fixture

    scans = shared_fixture("signatures")
    project = project_with(built_project, tmp_path / "p", "siamese")
    images = project / "user_images"
    images.mkdir()
    for name in ("001_01.png", "002_01.png"):
        shutil.copy(scans / name, images / name)
    params = read_params_file(project / "params.yaml")
    params["models"]["siamese"]["validation"].update(samples=1, stroke_samples=0, image_dirs=["user_images"])
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_step(project, "validate", "siamese")
    metrics = json.loads((project / "reports" / "siamese" / "validation.json").read_text())
    assert metrics["samples"] == 3  # one drawn pair, then the chain through the two scans

    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_step(project, "validate", "siamese", check=False)
    assert result.returncode == 1 and "broken.png" in result.stderr and "Traceback" not in result.stderr


def test_validator_refuses_a_non_finite_reference():
    ref = outputs(np.random.default_rng(6))
    ref["emb"][0, 3] = np.nan
    with pytest.raises(PipelineError, match="Reference produced non-finite values"):
        Validator(spec(), "Reference").add("s", ref, {"emb": np.zeros_like(ref["emb"]), "logit": ref["logit"]})
