"""The installed package against hostile model folders, files and runs (issue 17).

Every case runs through the command line in a subprocess (`python -m signature_onnx`, the code the
`signature-onnx` entry point runs) with a fake, empty HOME that must stay empty, or through the
API, and must end in one clean `error:` line (or a correct result), print no raw control
character and leave no temporary file. The model folders are tiny ONNX graphs built here with
onnx.helper (a MatMul "SigNet" and a "Siamese" verifier on 30x40 inputs), so the module needs
no pipeline build and runs in well under a minute.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import REPO
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROWS, COLS = 30, 40
PREPROCESSING = {
    "style": "sigver",
    "canvas": [60, 80],
    "img_size": [ROWS, COLS],
    "input_size": [ROWS, COLS],
    "input_divisor": 255,
    "spp": False,
}
ESC = "\x1b"
HOSTILE = "evil\x1b[2J\x1b]52;c;SGVsbG8=\x07\u202e"  # clear screen, OSC 52 clipboard write, bidi override


# ---- tiny model folders ---------------------------------------------------------------------------


def embed_graph(
    output_names: tuple[str, str] = ("fc1", "fc2"), poison: float | None = None, size: tuple = (ROWS, COLS)
) -> onnx.ModelProto:
    """x float [N, 1, 30, 40] -> fc1 = flat(x) @ W1 (8), fc2 = fc1 @ W2 (8); `poison` fills W2 (NaN, inf).

    size: the declared input size (symbolic names let a wrong size reach the MatMul kernel).
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((ROWS * COLS, 8)).astype(np.float32) / 40
    w2 = np.full((8, 8), poison, np.float32) if poison is not None else rng.standard_normal((8, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["flat", "w1"], [output_names[0]], name=f"node {output_names[0]}"),
        helper.make_node("MatMul", [output_names[0], "w2"], [output_names[1]], name=f"node {output_names[1]}"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_signet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, *size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 8]) for name in output_names],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def verify_graph(poison: float | None = None) -> onnx.ModelProto:
    """Two uint8 [30, 40] inputs -> embeddings e1, e2 (8) and a logit (their dot product / 100, or `poison`)."""
    w = (np.random.default_rng(1).standard_normal((ROWS * COLS, 8)) / 4000).astype(np.float32)
    nodes = []
    for k in ("0", "1"):
        nodes += [
            helper.make_node("Cast", [f"input{k}"], [f"f{k}"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", [f"f{k}", "shape"], [f"r{k}"]),
            helper.make_node("MatMul", [f"r{k}", "w"], [f"output{k}"]),
        ]
    nodes += [
        helper.make_node("Mul", ["output0", "output1"], ["product"]),
        helper.make_node("ReduceSum", ["product"], ["dot"], keepdims=1),
        helper.make_node("Mul", ["dot", "scale"], ["output2"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_siamese",
        [helper.make_tensor_value_info(f"input{k}", TensorProto.UINT8, [ROWS, COLS]) for k in "01"],
        [helper.make_tensor_value_info(f"output{k}", TensorProto.FLOAT, None) for k in "012"],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([1, ROWS * COLS], np.int64), "shape"),
            numpy_helper.from_array(np.array(poison if poison is not None else 0.01, np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def write_folder(
    folder: Path,
    model: onnx.ModelProto,
    *,
    task: str = "embed",
    name: str = "tiny",
    source: dict | None = None,
    lineage: bool = True,
    vectors: bool = True,
) -> Path:
    """A model folder as the pipeline publishes it: model.onnx, preprocessing.json, lineage.json, test vectors."""
    from signature_onnx.folder import preprocessing_json
    from signature_onnx.preprocessing import Preprocessing

    folder.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    (folder / "preprocessing.json").write_bytes(
        preprocessing_json(name, task, Preprocessing.from_dict(PREPROCESSING, "test"))
    )
    if lineage:
        record = {
            "source": source or {"kind": "kaggle", "kernel": "someone/signatures"},
            "synthetic_weights": False,
            "onnx": {"file": "model.onnx", "sha256": hashlib.sha256(data).hexdigest(), "opset": 17},
            "validation": {"atol": 1.5e-4, "rtol": 0.0},
        }
        (folder / "lineage.json").write_text(json.dumps(record, indent=2))
    if vectors and task == "embed":
        import onnxruntime as ort

        x = np.random.default_rng(2).random((2, 1, ROWS, COLS), dtype=np.float32)
        outputs = [o.name for o in model.graph.output]
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        expected = session.run(outputs, {"x": x})
        test_set = folder / "test_data_set_0"
        test_set.mkdir()
        (test_set / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
        for k, (output, value) in enumerate(zip(outputs, expected)):
            (test_set / f"output_{k}.pb").write_bytes(numpy_helper.from_array(value, output).SerializeToString())
        tolerance = {"tolerance": {"atol": 1.5e-4, "rtol": 0.0}, "format": 1, "model": name, "sets": 1}
        (folder / "test_vectors.json").write_text(json.dumps(tolerance))
    return folder


def rewrite_lineage(folder: Path, **changes: object) -> None:
    record = json.loads((folder / "lineage.json").read_text())
    record.update(changes)
    (folder / "lineage.json").write_text(json.dumps(record))


def set_tolerance(folder: Path, text: str) -> None:
    (folder / "test_vectors.json").write_text('{"format": 1, "tolerance": {"atol": %s, "rtol": 0.0}}' % text)


@pytest.fixture
def signet(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "signet", embed_graph())


@pytest.fixture
def siamese(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "siamese", verify_graph(), task="verify")


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    image = np.full((50, 70), 255, np.uint8)
    image[15:35, 10:60] = 0
    path = tmp_path_factory.mktemp("scans") / "scan.png"
    Image.fromarray(image).save(path)
    return path


# ---- the command line, with a fake home ------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path):
    """An empty HOME for the subprocesses; nothing may appear in it (ONNX Runtime's telemetry would)."""
    folder = tmp_path / "home"
    folder.mkdir()
    yield folder
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == []


def cli(
    home: Path, *args: str, cwd: Path | None = None, preexec=None, prelude: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`python -m signature_onnx ARGS` with only PATH, a fake HOME and the checkout on PYTHONPATH.

    prelude: Python run first in the same process (a fault to inject), then the command line.
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(REPO),
        "LC_ALL": "C.UTF-8",
    }
    command = [sys.executable, "-m", "signature_onnx", *args]
    if prelude is not None:
        script = f"{prelude}\nimport runpy, sys\nsys.argv = ['signature-onnx', *sys.argv[1:]]\nrunpy.run_module('signature_onnx', run_name='__main__')\n"
        command = [sys.executable, "-c", script, *args]
    return subprocess.run(
        command, cwd=cwd or home.parent, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=timeout
    )


def clean_output(result: subprocess.CompletedProcess) -> None:
    """No raw control character (other than newlines) reaches the terminal."""
    for stream in (result.stdout, result.stderr):
        assert not any(ch in stream for ch in (ESC, "\x07", "\u202e", "\r")), repr(stream)[:400]


def one_error_line(result: subprocess.CompletedProcess, *words: str) -> str:
    clean_output(result)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("!!! WARNING")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")] == []


# ---- 1. nothing written outside the output folder; ORT's log lines off the terminal ---------------


def test_runs_write_nothing_into_home_and_results_are_right(
    home: Path, signet: Path, siamese: Path, scan: Path, tmp_path: Path
):
    out = tmp_path / "out" / "f.npy"
    result = cli(home, "embed", str(scan), str(scan), "--model", str(signet), "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # real weights (lineage says kaggle): no warning, and no ORT log line
    assert np.load(out).shape == (2, 8)
    result = cli(home, "check-vectors", str(signet), "-q")
    assert result.returncode == 0 and result.stdout.count(": ok") == 1, result.stdout + result.stderr
    result = cli(home, "verify", str(scan), str(scan), "--model", str(siamese), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cosine"] == pytest.approx(1.0)
    # the fixture checks that HOME is still empty: ONNX Runtime's telemetry folder is not there


def test_onnx_runtime_log_lines_stay_off_the_terminal(home: Path, tmp_path: Path, scan: Path):
    """A run ONNX Runtime's kernel refuses (an input of another size) logs an ERROR line quoting node names raw."""
    folder = write_folder(
        tmp_path / "fixed", embed_graph(output_names=(f"fc1{HOSTILE}", "fc2"), size=("H", "W")), vectors=False
    )
    settings = json.loads((folder / "preprocessing.json").read_text())
    settings["preprocessing"].update(img_size=[20, COLS], input_size=[20, COLS])
    (folder / "preprocessing.json").write_text(json.dumps(settings))
    result = cli(home, "embed", str(scan), "--model", str(folder), "--out", str(tmp_path / "f.npy"), "-q")
    one_error_line(result, "ONNX Runtime refused the input")


# ---- 2. untrusted text escaped and shortened; the synthetic warning cannot be hidden -----------------


def test_hostile_names_are_escaped_and_the_synthetic_warning_stays(home: Path, tmp_path: Path, scan: Path):
    folder = write_folder(
        tmp_path / "named",
        embed_graph(output_names=(f"fc1{HOSTILE}", "fc2")),
        name=HOSTILE * 300,
        source={"kind": "builtin", "seed": HOSTILE},
    )
    image = tmp_path / f"scan{HOSTILE}.png"
    shutil.copy(scan, image)
    result = cli(home, "embed", str(image), "--model", str(folder), "--out", str(tmp_path / "f.npy"))
    assert result.returncode == 0, result.stderr
    clean_output(result)
    warning = [line for line in result.stderr.splitlines() if line.startswith("!!! WARNING")]
    assert len(warning) == 1 and "SYNTHETIC" in warning[0] and "\\x1b[2J" in warning[0], result.stderr
    assert len(warning[0]) < 600  # a 300-fold name is shortened
    result = cli(home, "check-vectors", str(folder), "-q")
    assert result.returncode == 0, result.stderr
    clean_output(result)
    assert "fc1evil\\x1b[2J" in result.stdout
    # a lineage saying kaggle but synthetic_weights: true still warns
    real = write_folder(tmp_path / "kaggle", embed_graph(), vectors=False)
    rewrite_lineage(real, synthetic_weights=True)
    result = cli(home, "embed", str(scan), "--model", str(real), "--out", str(tmp_path / "g.npy"), "-q")
    assert result.returncode == 0 and "SYNTHETIC" in result.stderr, result.stderr


def test_the_shown_helper_escapes_and_bounds():
    from signature_onnx.errors import shown

    text = shown(HOSTILE * 1000)
    assert ESC not in text and "\x07" not in text and "\u202e" not in text and len(text) < 260
    assert shown(shown(HOSTILE)) == shown(HOSTILE)  # idempotent: a message can be shown again
    assert shown("plain/path.png") == "plain/path.png"


# ---- 3. results checked before they are reported ------------------------------------------------------


def test_non_finite_outputs_are_errors_naming_model_and_output(home: Path, tmp_path: Path, scan: Path):
    from signature_onnx import AutoORTModel, ModelOutputError

    nan_signet = write_folder(tmp_path / "nan_signet", embed_graph(poison=float("nan")), name="nanmodel", vectors=False)
    out = tmp_path / "f.npy"
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(nan_signet), "--out", str(out), "-q"), "nanmodel", "'fc2'", "NaN"
    )
    assert not out.exists()
    inf_siamese = write_folder(
        tmp_path / "inf_siamese", verify_graph(poison=float("inf")), task="verify", name="infmodel"
    )
    result = cli(home, "verify", str(scan), str(scan), "--model", str(inf_siamese), "--json")
    one_error_line(result, "infmodel", "'output2'")
    assert result.stdout == ""
    with pytest.raises(ModelOutputError, match="fc2"):
        AutoORTModel.from_pretrained(nan_signet).embed([scan])


# ---- 4. check-vectors cannot be made to pass anything ---------------------------------------------------


@pytest.mark.parametrize(
    "atol, expected",
    [
        ("Infinity", "not readable JSON"),
        ("NaN", "not readable JSON"),
        ("1e999", "finite"),
        ("1e30", "at most"),
        ("-1e-5", ">= 0"),
        ("2e-4", "validated with"),
        ('"1"', "finite"),
    ],
)
def test_check_vectors_refuses_tolerances_beyond_the_models(signet: Path, atol: str, expected: str):
    from signature_onnx import ModelFolderError, check_vectors

    set_tolerance(signet, atol)
    with pytest.raises(ModelFolderError, match=expected):
        check_vectors(signet)


def test_check_vectors_tolerance_ceiling_holds_without_a_lineage(signet: Path):
    from signature_onnx import ModelFolderError, check_vectors

    (signet / "lineage.json").unlink()
    set_tolerance(signet, "5e-3")
    with pytest.raises(ModelFolderError, match="at most 0.001"):
        check_vectors(signet)
    set_tolerance(signet, "1e-4")
    assert all(r.passed for r in check_vectors(signet))


def test_check_vectors_refuses_nan_expected_values_and_fails_nan_outputs(home: Path, signet: Path, tmp_path: Path):
    from signature_onnx import ModelFolderError, check_vectors

    path = signet / "test_data_set_0" / "output_1.pb"
    tensor = onnx.load_tensor(str(path))
    path.write_bytes(
        numpy_helper.from_array(np.full_like(numpy_helper.to_array(tensor), np.nan), tensor.name).SerializeToString()
    )
    one_error_line(cli(home, "check-vectors", str(signet), "-q"), "output_1.pb", "NaN")
    with pytest.raises(ModelFolderError, match="NaN"):
        check_vectors(signet)
    # a model whose outputs are NaN fails its vectors (NaN compares false with any tolerance)
    nan_model = write_folder(tmp_path / "nan", embed_graph(), vectors=True)
    poisoned = embed_graph(poison=float("nan"))
    (nan_model / "model.onnx").write_bytes(poisoned.SerializeToString())
    results = check_vectors(nan_model, integrity_check=False)
    assert not results[0].passed and "NaN" in results[0].failure


def test_a_test_vector_with_external_data_is_refused(signet: Path, tmp_path: Path):
    from signature_onnx import ModelFolderError, check_vectors

    path = signet / "test_data_set_0" / "input_0.pb"
    tensor = onnx.load_tensor(str(path))
    secret = tmp_path / "outside.bin"
    secret.write_bytes(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=str(secret))
    path.write_bytes(tensor.SerializeToString())
    with pytest.raises(ModelFolderError, match="external file"):
        check_vectors(signet)


# ---- 5. bounded parsing, confined reads --------------------------------------------------------------


@pytest.mark.parametrize("file", ["preprocessing.json", "lineage.json", "test_vectors.json"])
def test_deeply_nested_json_is_refused_by_name(signet: Path, file: str):
    from signature_onnx import AutoORTModel, ModelFolderError, check_vectors

    (signet / file).write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ModelFolderError, match=rf"{file}: not readable JSON \(nested"):
        if file == "test_vectors.json":
            check_vectors(signet)
        else:
            AutoORTModel.from_pretrained(signet)


def test_deep_json_through_the_command_line(home: Path, signet: Path, scan: Path, tmp_path: Path):
    (signet / "lineage.json").write_text('{"a": ' * 50000 + "1" + "}" * 50000)
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(tmp_path / "f.npy")),
        "lineage.json",
        "nested",
    )


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("canvas", [100000, 100000], "from 1 to 2720"),
        ("img_size", [100000, 100000], "from 1 to 2720"),
        ("input_size", [0, 40], "from 1 to 2720"),
        ("canvas", [int("9" * 400), 80], "integer of 400 digits"),
    ],
)
def test_preprocessing_sizes_are_bounded(signet: Path, key: str, value: list[int], expected: str):
    from signature_onnx import ModelFolder, ModelFolderError

    settings = json.loads((signet / "preprocessing.json").read_text())
    settings["preprocessing"][key] = value
    (signet / "preprocessing.json").write_text(json.dumps(settings))
    with pytest.raises(ModelFolderError, match=rf"preprocessing.json: .*{expected}"):
        ModelFolder.open(signet)


def test_files_outside_the_folder_are_not_read(home: Path, signet: Path, tmp_path: Path, scan: Path):
    from signature_onnx import AutoORTModel, ModelFolderError, check_vectors

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(signet / "lineage.json", outside / "lineage.json")
    (signet / "lineage.json").symlink_to(outside / "lineage.json")
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(tmp_path / "f.npy")),
        "lineage.json",
        "outside the model folder",
    )
    (signet / "lineage.json").unlink()
    shutil.move(outside / "lineage.json", signet / "lineage.json")
    shutil.move(signet / "model.onnx", outside / "model.onnx")
    (signet / "model.onnx").symlink_to(outside / "model.onnx")
    with pytest.raises(ModelFolderError, match="outside the model folder"):
        AutoORTModel.from_pretrained(signet)
    (signet / "model.onnx").unlink()
    shutil.move(outside / "model.onnx", signet / "model.onnx")
    moved = signet / "test_data_set_0" / "output_0.pb"
    shutil.move(moved, outside / "output_0.pb")
    moved.symlink_to(outside / "output_0.pb")
    with pytest.raises(ModelFolderError, match="outside the model folder"):
        check_vectors(signet)


def test_a_fifo_is_refused_not_waited_on(home: Path, signet: Path, scan: Path, tmp_path: Path):
    for name in ("test_vectors.json", "lineage.json"):
        fifo = signet / name
        fifo.rename(tmp_path / name)
        os.mkfifo(fifo)
        command = (
            ("check-vectors", str(signet))
            if name == "test_vectors.json"
            else ("embed", str(scan), "--model", str(signet), "--out", str(tmp_path / "f.npy"))
        )
        one_error_line(cli(home, *command, timeout=30), name, "not a regular file")
        fifo.unlink()
        (tmp_path / name).rename(fifo)


# ---- 6. integrity at load; signatures ------------------------------------------------------------------


def test_a_tampered_model_is_refused_at_load_naming_both_digests(home: Path, signet: Path, scan: Path, tmp_path: Path):
    from signature_onnx import AutoORTModel, IntegrityError, check_vectors

    recorded = json.loads((signet / "lineage.json").read_text())["onnx"]["sha256"]
    tampered = embed_graph()
    tampered.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros((8, 8), np.float32), "w2"))
    (signet / "model.onnx").write_bytes(tampered.SerializeToString())
    actual = hashlib.sha256((signet / "model.onnx").read_bytes()).hexdigest()
    out = tmp_path / "f.npy"
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out)), recorded, actual, "model.onnx"
    )
    assert not out.exists()
    with pytest.raises(IntegrityError, match=actual):
        AutoORTModel.from_pretrained(signet)
    with pytest.raises(IntegrityError):
        check_vectors(signet)
    result = cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out), "--no-integrity-check", "-q")
    assert result.returncode == 0 and np.load(out).shape == (1, 8), result.stderr
    AutoORTModel.from_pretrained(signet, integrity_check=False)
    rewrite_lineage(signet, onnx={"file": "model.onnx"})
    with pytest.raises(IntegrityError, match="records no valid sha256"):
        AutoORTModel.from_pretrained(signet)


def test_a_variant_folder_loads_without_its_models_digest(signet: Path):
    """A variant borrows its model's provenance; the lineage's sha256 names the fp32 file, not the variant's."""
    from signature_onnx import AutoORTModel

    variant = signet / "variants" / "other"
    variant.mkdir(parents=True)
    other = embed_graph()
    other.doc_string = "a variant"
    (variant / "model.onnx").write_bytes(other.SerializeToString())
    shutil.copy(signet / "preprocessing.json", variant / "preprocessing.json")
    model = AutoORTModel.from_pretrained(variant)
    assert not model.synthetic and model.folder.expected_sha256 is None


def _keys(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_a_required_signature_is_checked(home: Path, signet: Path, scan: Path, tmp_path: Path):
    pytest.importorskip("model_signing")
    from model_signing import hashing, signing

    from signature_onnx import AutoORTModel, IntegrityError
    from signature_onnx.folder import signed_files_config

    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = _keys(keys, "release")
    _, stranger = _keys(keys, "stranger")
    # the release step's format (stages/publish/signing.py): an EC key, the same ignored files
    signing.Config().use_elliptic_key_signer(private_key=private).set_hashing_config(signed_files_config(hashing)).sign(
        signet, signet / "model.sig"
    )
    out = tmp_path / "f.npy"
    result = cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out), "-q", "--public-key", str(public))
    assert result.returncode == 0, result.stderr
    # the signature covers the whole folder: a file added to it fails too
    (signet / "validation.json").write_text("{}")
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out), "--public-key", str(public)),
        "model.sig",
        "does not verify",
    )
    (signet / "validation.json").unlink()
    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out), "--public-key", str(stranger)),
        "model.sig",
        "does not verify",
    )
    (signet / "lineage.json").write_text((signet / "lineage.json").read_text() + " ")
    with pytest.raises(IntegrityError, match="changed since signing: lineage.json"):
        AutoORTModel.from_pretrained(signet, public_key=public)
    (signet / "model.sig").unlink()
    with pytest.raises(IntegrityError, match="model.sig: missing"):
        AutoORTModel.from_pretrained(signet, public_key=public)


def test_a_signature_without_the_signing_extra_is_a_clear_error(home: Path, signet: Path, scan: Path, tmp_path: Path):
    block = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'model_signing':\n"
        "            raise ImportError('no model_signing here')\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    key = tmp_path / "k.pub"
    key.write_text("not used")
    result = cli(
        home,
        "embed",
        str(scan),
        "--model",
        str(signet),
        "--out",
        str(tmp_path / "f.npy"),
        "--public-key",
        str(key),
        prelude=block,
    )
    one_error_line(result, "k.pub", "model-signing", "[signing]")


# ---- 7. interruption, threads, every refusal one line naming the file -----------------------------------


def test_sigterm_mid_write_leaves_no_temporary_file(home: Path, signet: Path, scan: Path, tmp_path: Path):
    """SIGTERM arrives while the output is being written (injected at its fsync): the temporary goes."""
    out = tmp_path / "out"
    prelude = "import os, signal\n_fsync = os.fsync\ndef fsync(fd):\n    os.kill(os.getpid(), signal.SIGTERM)\n    _fsync(fd)\nos.fsync = fsync\n"
    result = cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out / "f.npy"), "-q", prelude=prelude)
    assert result.returncode == 143, result.stderr
    assert "interrupted" in result.stderr and "Traceback" not in result.stderr
    no_temporaries(out)
    assert not (out / "f.npy").exists()
    # Ctrl-C as a terminal sends it: a process started in the background (as CI may start the
    # suite) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    prelude = (
        "import os, signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        + prelude.replace("SIGTERM", "SIGINT").split("\n", 1)[1]
    )
    result = cli(home, "embed", str(scan), "--model", str(signet), "--out", str(out / "f.npy"), "-q", prelude=prelude)
    assert result.returncode == 130, result.stderr
    no_temporaries(out)


def test_threads_are_bounded(home: Path, signet: Path, scan: Path, tmp_path: Path):
    from signature_onnx import AutoORTModel, SignatureOnnxError

    one_error_line(
        cli(home, "embed", str(scan), "--model", str(signet), "--out", str(tmp_path / "f.npy"), "--threads", "100000"),
        "threads 100000",
        "from 1 to 256",
    )
    for threads in (0, -1, 257):
        with pytest.raises(SignatureOnnxError, match="from 1 to 256"):
            AutoORTModel.from_pretrained(signet, threads=threads)
    assert AutoORTModel.from_pretrained(signet, threads=1).embed([scan]).shape == (1, 8)


def _file_size_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))


def test_a_full_disk_names_the_output_file(home: Path, signet: Path, scan: Path, tmp_path: Path):
    out = tmp_path / "out"
    result = cli(
        home, "embed", str(scan), "--model", str(signet), "--out", str(out / "f.npy"), "-q", preexec=_file_size_limit
    )
    one_error_line(result, "f.npy", "File too large")
    no_temporaries(out)


def test_a_png_text_chunk_bomb_names_the_file(home: Path, signet: Path, scan: Path, tmp_path: Path):
    import struct
    import zlib

    png = scan.read_bytes()
    data = b"Comment\x00\x00" + zlib.compress(b"A" * (8 << 20))
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(">I", zlib.crc32(b"zTXt" + data) & 0xFFFFFFFF)
    at = png.index(b"IDAT") - 4
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png[:at] + chunk + png[at:])
    one_error_line(cli(home, "embed", str(bomb), "--model", str(signet), "--out", str(tmp_path / "f.npy")), "bomb.png")


def test_the_api_raises_the_packages_own_errors(signet: Path, tmp_path: Path):
    from signature_onnx import AutoORTModel, ModelFolderError, SignatureOnnxError

    (signet / "preprocessing.json").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ModelFolderError, match="preprocessing.json"):
        AutoORTModel.from_pretrained(signet)
    write_folder(tmp_path / "again", embed_graph())
    (tmp_path / "again" / "model.onnx").write_bytes(b"\x08\x07garbage")
    with pytest.raises(SignatureOnnxError, match="model.onnx"):
        AutoORTModel.from_pretrained(tmp_path / "again", integrity_check=False)


def test_verify_runs_the_network_once_per_pair(siamese: Path, scan: Path):
    """One verification is one ONNX Runtime run (the three outputs come from the same run)."""
    from signature_onnx import ORTModelForSignatureVerification

    model = ORTModelForSignatureVerification.from_pretrained(siamese)
    calls = []
    run = model.session.run
    model.session = type(
        "Counting",
        (),
        {
            "run": lambda self, names, feeds: calls.append(names) or run(names, feeds),
            "get_inputs": lambda self: run.__self__.get_inputs(),
        },
    )()
    model.verify(scan, scan)
    assert len(calls) == 1, calls


@pytest.mark.parametrize("threads", [1, 2])
def test_verify_prepares_the_pair_at_once_and_names_a_bad_image(
    siamese: Path, scan: Path, tmp_path: Path, threads: int
):
    """With two threads the pair is prepared concurrently, with one in turn: the same result, and a
    bad image is the package's ImageError naming that file either way."""
    from signature_onnx import ImageError, ORTModelForSignatureVerification

    model = ORTModelForSignatureVerification.from_pretrained(siamese, threads=threads)
    assert model.prepare_threads == threads
    single = ORTModelForSignatureVerification.from_pretrained(siamese, threads=1)
    assert model.verify(scan, scan) == single.verify(scan, scan)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(ImageError, match="broken.png"):
        model.verify(scan, broken)
