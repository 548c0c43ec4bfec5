"""The seven SigNet models through the real stages, checked on real scans.

A session fixture builds all seven models in a scratch project exactly as dvc.yaml runs them
(`python -m stages.<step> MODEL` subprocesses): fetch, convert and patch for all seven, and the
validate stage for one model of each kind (SigNet, SigNet-SPP, .pth), which keeps this file
near a minute; `dvc repro` of the whole pipeline (tests/test_end_to_end.py) validates them all.
The tests then hold every patched ONNX file (what validate publishes, byte for byte) to its
reference on the real scans of ../shared/fixtures: the NumPy oracle for the Lasagne pickles,
PyTorch for the .pth files, within 1e-4 absolute, through the pipeline's own Validator
(element-wise tolerance, cosine, distance rankings).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import (
    CAPPED_REBUILD,
    REPO,
    SIGNET_LASAGNE,
    SIGNET_MODELS,
    SIGNET_PTH,
    SIGNET_PUBLISHED,
    SIGNET_SPP,
    STEPS,
    copy_project,
    ort_session,
    run_step,
    shared_fixture,
)
from onnx import numpy_helper

from signature_onnx.preprocessing.wiwd import load_signature
from stages.core.comparison import Validator
from stages.core.digests import sha256_file as file_digest
from stages.core.errors import PipelineError
from stages.core.params import model_spec
from stages.families import lasagne_signet
from stages.families.lasagne_signet import standin
from stages.families.lasagne_signet.oracle import LasagneOracle
from stages.families.lasagne_signet.pickle_file import load_checked
from stages.families.torch_sigver import inputs as torch_inputs
from stages.families.torch_sigver import signet as torch_signet

LASAGNE, PTH, MODELS, SPP, PUBLISHED = SIGNET_LASAGNE, SIGNET_PTH, SIGNET_MODELS, SIGNET_SPP, SIGNET_PUBLISHED


def spec(name: str):
    return model_spec(name, REPO / "params.yaml")


def onnx_file(project: Path, model: str) -> Path:
    """The patched graph: validate publishes exactly these bytes as models/<model>/model.onnx."""
    return project / "data" / "interim" / model / "patched.onnx"


def session(path: Path) -> ort.InferenceSession:
    return ort_session(path, quiet=True)  # the too-small checks make ORT log the errors they expect


@pytest.fixture(scope="module")
def scans() -> list[tuple[str, np.ndarray]]:
    """Every real scan: 36 of ../shared/fixtures/signatures and the notebook's 5 (gray float32)."""
    paths = sorted(shared_fixture("signatures").glob("*.png")) + sorted(shared_fixture("sigver_wiwd").glob("*.png"))
    assert len(paths) == 41
    return [(p.name, load_signature(p)) for p in paths]


@pytest.fixture(scope="module")
def signet_inputs(scans) -> list[tuple[str, np.ndarray]]:
    """The scans as SigNet takes them: preprocess_signature on the (952, 1360) canvas, 0..255."""
    return [(name, lasagne_signet.signet_input(gray, name)) for name, gray in scans]


def test_all_seven_models_build_with_their_declared_inputs_and_outputs(signet_project: Path):
    for model in MODELS:
        graph = session(onnx_file(signet_project, model))
        shapes = {i.name: i.shape for i in (*graph.get_inputs(), *graph.get_outputs())}
        dims = ["batch", 1, "height", "width"] if model in SPP else ["batch", 1, 150, 220]
        outputs = ["fc2"] if model in PTH else ["fc1", "fc2"]
        assert shapes == {"input": dims, **{o: ["batch", 2048] for o in outputs}}
        meta = graph.get_modelmeta()
        assert meta.producer_name == ("pytorch" if model in PTH else "onnx")
        assert sorted(meta.custom_metadata_map) == ["model", f"upstream_sha256:{spec(model).files[0]}"]
        if model in SPP:  # the input-size guard survives patching (canonical names keep its scope)
            side = 37 if model == "signet_spp_300dpi" else 57
            with pytest.raises(Exception, match=f"input_smaller_than_{side}x{side}/Reshape"):
                graph.run(None, {"input": np.zeros((1, 1, side - 1, 400), np.float32)})


def test_validate_publishes_metrics_within_tolerance(signet_project: Path):
    for model in PUBLISHED:
        folder = signet_project / "models" / model
        # The published graph is the validated one; publishing only adds the lineage metadata.
        published, patched = onnx.load(str(folder / "model.onnx")), onnx.load(str(onnx_file(signet_project, model)))
        assert published.graph.SerializeToString(deterministic=True) == patched.graph.SerializeToString(
            deterministic=True
        )
        assert {p.key: p.value for p in published.metadata_props}["synthetic_weights"] == "true"
        metrics = json.loads((signet_project / "reports" / model / "validation.json").read_text())
        assert metrics["reference"] == ("PyTorch" if model in PTH else "NumPy oracle")
        for output, summary in metrics["outputs"].items():
            assert summary["max_abs_error"] <= 1e-4 and summary["min_cosine"] >= 0.99999, (model, output)
            assert summary["ranking_triples"] > 0
        lineage = json.loads((folder / "lineage.json").read_text())
        assert lineage["source"]["kind"] == "builtin" and list(lineage["upstream_files"]) == spec(model).files
    samples = (signet_project / "reports" / "signet_spp_300dpi" / "samples.csv").read_text()
    assert "synthetic_37x37," in samples and "synthetic_2000x3000," in samples


def validate_on(model: str, reference, graph: ort.InferenceSession, samples, batch: np.ndarray | None = None) -> dict:
    """The pipeline's Validator over `samples`; returns its metrics (raises over tolerance).

    `batch` (all samples stacked) is checked element-wise too, outside the Validator, whose
    ranking check would otherwise count every scan twice: the graph's batch output against the
    reference's outputs of the samples one by one (a batch row must be its sample's answer;
    the reference is not run on the batch again, which would double the float64 oracle's time).
    """
    model_spec = spec(model)
    validator = Validator(model_spec.validation, "reference")
    names = [o.name for o in graph.get_outputs()]
    one_by_one = []
    for sample, inputs in samples:
        expected = reference(inputs)
        one_by_one.append(expected)
        validator.add(sample, expected, dict(zip(names, graph.run(names, inputs))))
    validator.check_rankings()
    metrics = validator.metrics()
    for output, summary in metrics["outputs"].items():
        assert summary["max_abs_error"] <= 1e-4, (model, output, summary)
    if batch is not None:
        assert len(batch) == len(one_by_one)
        for name, got in zip(names, graph.run(names, {"input": batch})):
            expected = np.concatenate([outputs[name] for outputs in one_by_one])
            assert got.shape == (len(batch), 2048) and np.abs(got - expected).max() <= 1e-4, name
    return metrics


@pytest.mark.parametrize("model", LASAGNE)
def test_every_lasagne_onnx_matches_the_oracle_on_real_scans(signet_project: Path, scans, signet_inputs, model: str):
    raw = signet_project / "data" / "raw" / model
    reference = lasagne_signet.reference(raw, spec(model))
    graph = session(onnx_file(signet_project, model))
    if model in SPP:  # each scan at its own size, 255 - remove_background
        variant = spec(model).network.architecture
        samples = [(name, {"input": lasagne_signet.spp_input(gray, variant, name)}) for name, gray in scans]
        metrics = validate_on(model, reference, graph, samples)
    else:  # one by one, then all 41 as one batch
        samples = [(name, {"input": x}) for name, x in signet_inputs]
        metrics = validate_on(model, reference, graph, samples, np.concatenate([x for _n, x in signet_inputs]))
    print(model, json.dumps(metrics["outputs"]))


@pytest.mark.parametrize("model", PTH)
def test_every_pth_onnx_matches_pytorch_on_real_scans(signet_project: Path, signet_inputs, model: str):
    reference = torch_signet.reference(signet_project / "data" / "raw" / model, spec(model))
    graph = session(onnx_file(signet_project, model))
    scaled = [(name, x / np.float32(255)) for name, x in signet_inputs]  # sigver takes 0..1
    samples = [(name, {"input": x}) for name, x in scaled]
    metrics = validate_on(model, reference, graph, samples, np.concatenate([x for _n, x in scaled]))
    print(model, json.dumps(metrics["outputs"]))


def test_inputs_are_the_seed_notebooks_golden_preprocessing():
    """sigver_wiwd's golden outputs for some_signature.png: SigNet and SPP inputs, pixel for pixel."""
    folder = shared_fixture("sigver_wiwd")
    gray = load_signature(folder / "some_signature.png")
    np.testing.assert_array_equal(lasagne_signet.signet_input(gray)[0, 0], np.load(folder / "processed_py3.npy"))
    np.testing.assert_array_equal(
        lasagne_signet.spp_input(gray, "signet_spp_300dpi")[0, 0], np.load(folder / "processed_spp_py3.npy")
    )


def test_the_pth_input_is_the_sigver_preprocessed_scan_divided_by_255(signet_inputs):
    """sigver's models take sigver's scikit-image preprocessing (not sigver_wiwd's) over 255."""
    from signature_onnx.preprocessing import sigver

    name, wiwd_input = signet_inputs[0]
    path = shared_fixture("signatures", name)
    style = spec("signet_pth").preprocessing.package_form()
    expected = sigver.preprocess_signature(sigver.load_signature(path), (952, 1360)) / np.float32(255)
    x = torch_inputs.signet_input(style.load(path), style)
    np.testing.assert_array_equal(x, expected[None, None].astype(np.float32))
    assert not np.array_equal(x, wiwd_input / np.float32(255))  # the two styles do differ


# ---- the validator catches conversion errors -----------------------------------------------


def active_unit_bias(model: onnx.ModelProto, output: str) -> onnx.TensorProto:
    """The beta initializer of `output`'s batch norm (the Add feeding its ReLU)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    relu = producers[output]
    add = producers[relu.input[0]]
    assert add.op_type == "Add"
    return next(i for i in model.graph.initializer if i.name == add.input[1])


@pytest.mark.parametrize("model", ["signet", "signet_spp_300dpi"])
def test_a_single_perturbed_weight_is_caught(signet_project: Path, signet_inputs, scans, model: str):
    onnx_model = onnx.load(str(onnx_file(signet_project, model)))
    reference = lasagne_signet.reference(signet_project / "data" / "raw" / model, spec(model))
    if model in SPP:
        inputs = {"input": lasagne_signet.spp_input(scans[0][1], spec(model).network.architecture)}
    else:
        inputs = {"input": signet_inputs[0][1]}
    expected = reference(inputs)
    unit = int(np.argmax(expected["fc2"][0]))  # an active unit: a change there reaches the output
    beta = active_unit_bias(onnx_model, "fc2")
    values = numpy_helper.to_array(beta).copy()
    values[unit] += 1e-3  # ten times the tolerance, on one of 2048 values
    beta.CopyFrom(numpy_helper.from_array(values, beta.name))
    graph = ort_session(onnx_model.SerializeToString())
    validator = Validator(spec(model).validation, "NumPy oracle")
    names = [o.name for o in graph.get_outputs()]
    with pytest.raises(PipelineError, match=rf"output 'fc2', sample 'scan', element \(0, {unit}\)"):
        validator.add("scan", expected, dict(zip(names, graph.run(names, inputs))))


def test_a_wrong_pyramid_bin_order_is_caught(signet_project: Path, scans):
    """Converter bug simulation: the level-4 bins concatenated column-major instead of row-major."""
    model = "signet_spp_300dpi"
    onnx_model = onnx.load(str(onnx_file(signet_project, model)))
    concat = next(n for n in onnx_model.graph.node if n.name.startswith("large_pool5/Concat"))
    level4 = list(concat.input[:16])
    concat.input[:16] = [level4[(k % 4) * 4 + k // 4] for k in range(16)]
    graph = ort_session(onnx_model.SerializeToString())
    inputs = {"input": lasagne_signet.spp_input(scans[0][1], "signet_spp_300dpi")}
    reference = lasagne_signet.reference(signet_project / "data" / "raw" / model, spec(model))
    names = [o.name for o in graph.get_outputs()]
    with pytest.raises(PipelineError, match="output 'fc1'"):
        Validator(spec(model).validation, "NumPy oracle").add(
            "scan", reference(inputs), dict(zip(names, graph.run(names, inputs)))
        )


def test_validate_stage_over_tolerance_fails_and_publishes_nothing(signet_project: Path, tmp_path: Path):
    project = copy_project(tmp_path / "tampered")
    for part in ("raw", "interim"):
        shutil.copytree(
            signet_project / "data" / part / "signet", project / "data" / part / "signet", copy_function=shutil.copyfile
        )
    patched = project / "data" / "interim" / "signet" / "patched.onnx"
    onnx_model = onnx.load(str(patched))
    beta = active_unit_bias(onnx_model, "fc1")
    beta.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(beta) + np.float32(0.01), beta.name))
    onnx.save(onnx_model, str(patched))
    result = run_step(project, "validate", "signet", check=False)
    assert result.returncode == 1
    assert "output 'fc1'" in result.stderr and "NumPy oracle" in result.stderr
    assert not (project / "models" / "signet").exists()


# ---- determinism -----------------------------------------------------------------------------


def test_rebuild_in_another_process_is_byte_identical(signet_project: Path, tmp_path: Path):
    """fetch and convert (the patch step included) of one model of each kind (SigNet, SigNet-SPP, .pth) rerun in other
    processes on capped kernels with their own hash seed (conftest.CAPPED_REBUILD): the stand-in
    and both ONNX files are the shared build's bytes. Covers the stand-ins' bytes in another
    process too (the .pkl and .pth writers, calibration included)."""
    again = copy_project(tmp_path / "again")
    models = ["signet_f_lambda0_999", "signet_spp_600dpi", "signet_f_lambda0_95_pth"]
    for model in models:
        for step in STEPS[:2]:
            run_step(again, step, model, env=CAPPED_REBUILD)
    changed = [
        relative
        for model in models
        for relative in (
            f"raw/{model}/{spec(model).files[0]}",
            f"interim/{model}/converted.onnx",
            f"interim/{model}/patched.onnx",
        )
        if file_digest(again / "data" / relative) != file_digest(signet_project / "data" / relative)
    ]
    assert not changed, f"rebuilt on capped kernels, differ from the shared build: {changed}"


# ---- the notebook parity example and the benchmark ---------------------------------------------


def test_parity_example_runs_with_onnx_runtime_only(signet_project: Path):
    images = shared_fixture("sigver_wiwd")
    result = subprocess.run(
        [
            sys.executable,
            "examples/signet_parity.py",
            "--models-dir",
            str(signet_project / "models"),
            "--images",
            str(images),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("BUILT-IN STAND-IN weights") == 2 and "these distances mean nothing" in out
    assert out.count("Euclidean distance between signatures from the same user") == 2
    for pair in ("a1~a2", "b1~b2", "a1~b1", "a1~b2", "a2~b1", "a2~b2"):
        assert out.count(f"   {pair}: ") == 2
    assert "inputs: a1 709x1193, a2 753x1403, b1 759x935, b2 594x853" in out  # SPP: unpadded sizes


def test_parity_distances_are_the_oracles(signet_project: Path):
    """The example's distances (ONNX Runtime) equal those of the oracle's features."""
    spec_path = REPO / "examples" / "signet_parity.py"
    parity = load_script("signet_parity", spec_path)
    images = shared_fixture("sigver_wiwd")
    got = parity.run(signet_project / "models", images, "signet", "signet_spp_300dpi")
    grays = {k: load_signature(images / f"{k}.png") for k in ("a1", "a2", "b1", "b2")}
    for key, model in (("signet", "signet"), ("spp", "signet_spp_300dpi")):
        content, _ = load_checked(
            signet_project / "data" / "raw" / model / spec(model).files[0], spec(model).network.architecture
        )
        oracle = LasagneOracle(spec(model).network.architecture, content.params)
        prepare = (
            (lambda g: lasagne_signet.signet_input(g))
            if key == "signet"
            else (lambda g: lasagne_signet.spp_input(g, "signet_spp_300dpi"))
        )
        features = {k: oracle(prepare(g))["fc2"][0] for k, g in grays.items()}
        expected = parity.distances(features)
        for group in expected:
            for pair, value in expected[group].items():
                assert got[key][group][pair] == pytest.approx(value, abs=1e-3), (key, pair)


def test_parity_example_imports_no_other_network_runtime():
    code = "import sys; import examples.signet_parity; print(sorted(m for m in ('torch', 'onnx', 'tensorflow', 'stages', 'pydantic', 'yaml') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_parity_example_refuses_a_too_small_image_clearly(signet_project: Path, tmp_path: Path):
    for name in ("a1", "a2", "b1"):
        shutil.copy(shared_fixture("sigver_wiwd", f"{name}.png"), tmp_path / f"{name}.png")
    from PIL import Image

    tiny = np.full((30, 200), 255, np.uint8)
    tiny[15, 20:180] = 0
    Image.fromarray(tiny).save(tmp_path / "b2.png")
    result = subprocess.run(
        [
            sys.executable,
            "examples/signet_parity.py",
            "--models-dir",
            str(signet_project / "models"),
            "--images",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "b2.png: the image is 30x200, smaller than the 37x37 this SPP model accepts" in result.stderr


def load_script(name: str, path: Path):
    """Import a script (examples/, benchmarks/ are not packages) as module `name`."""
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    module_spec.loader.exec_module(module)
    return module


def load_benchmark():
    return load_script("bench_signet", REPO / "benchmarks" / "bench_signet.py")


@pytest.mark.parametrize(
    "variant, shape", [("signet", (150, 220)), ("signet_spp_300dpi", (211, 307)), ("signet_spp_600dpi", (157, 401))]
)
def test_the_benchmarks_pytorch_twin_computes_what_the_oracle_computes(variant: str, shape):
    bench = load_benchmark()
    params = standin.synthetic_params(variant, 9)
    x = (np.random.default_rng(1).random((2, 1, *shape)) > 0.85).astype(np.float32) * 230
    with torch.no_grad():
        twin = bench.LasagneTwin(variant, params)(torch.from_numpy(x))
    expected = LasagneOracle(variant, params)(x)
    for layer in ("fc1", "fc2"):
        assert np.abs(twin[layer].numpy() - expected[layer]).max() <= 1e-4


def test_benchmark_prints_the_side_by_side_table(signet_project: Path, tmp_path: Path):
    """`--quick` run on the pipeline's files of the three models it times (the published ones of
    signet_project), as after `dvc repro`: it loads them instead of making the stand-ins again.
    The table has its header and one row per case."""
    project = copy_project(tmp_path / "bench")
    (project / "benchmarks").mkdir()
    shutil.copy2(REPO / "benchmarks" / "bench_signet.py", project / "benchmarks")
    timed = ("signet", "signet_spp_300dpi", "signet_pth")
    for model in timed:
        for part in ("data/raw", "models"):
            (project / part).mkdir(parents=True, exist_ok=True)
            (project / part / model).symlink_to(signet_project / part / model)
    result = subprocess.run(
        [sys.executable, "benchmarks/bench_signet.py", "--quick", "--repeat", "1"],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    assert result.returncode == 0, result.stderr
    assert "weights: " + ", ".join(f"{model}: pipeline files" for model in sorted(timed)) in result.stdout
    header = next(line for line in result.stdout.splitlines() if line.startswith("| case"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "case",
        "ORT ms/img",
        "oracle ms/img",
        "PyTorch ms/img",
        "oracle/ORT",
        "PyTorch/ORT",
    ]
    for case in (
        "signet batch 1",
        "signet batch 4",
        "signet_spp_300dpi 100x150",
        "signet_spp_300dpi 300x450",
        "signet_pth batch 1",
    ):
        assert f"| {case} " in result.stdout
