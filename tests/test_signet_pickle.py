"""The SigNet upstream files: the stand-ins' exact format, safe loading, layout checks, minimum size.

Malicious files are proven live first (plain pickle / torch.load without weights_only really
creates the marker file), then proven harmless through our loaders (the marker never appears).
The stand-ins' format is read from the files the shared build's fetch stage wrote
(`signet_project`), not written again here.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import pickletools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

from stages.core.errors import PipelineError
from stages.core.family_facts import family_facts
from stages.core.params import model_spec
from stages.families import lasagne_signet
from stages.families.lasagne_signet import standin
from stages.families.lasagne_signet.layout import ARCHITECTURES, param_layout, spatial_sizes, spp_min_input_size
from stages.families.lasagne_signet.oracle import LasagneOracle
from stages.families.lasagne_signet.pickle_file import load_checked, load_lasagne_pickle, safe_unpickle
from stages.families.lasagne_signet.pickle_writer import dump_py2_pickle
from stages.families.torch_sigver import signet as torch_signet

LASAGNE_MODELS = ["signet", "signet_f_lambda0_95", "signet_f_lambda0_999", "signet_spp_300dpi", "signet_spp_600dpi"]


def spec(name: str):
    return model_spec(name, REPO / "params.yaml")


@pytest.fixture(scope="module")
def signet_bytes(signet_project: Path) -> bytes:
    """The stand-in signet.pkl as the fetch stage wrote it in the shared build."""
    return (signet_project / "data" / "raw" / "signet" / "signet.pkl").read_bytes()


def write_raw(folder: Path, model: str, content: bytes) -> Path:
    """A data/raw/<model>/ folder whose single upstream file holds `content`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / spec(model).files[0]).write_bytes(content)
    return folder


# ---- format of the stand-ins ---------------------------------------------------------------


def test_builtin_pickle_is_a_python2_protocol2_pickle_in_the_upstream_layout(signet_bytes: bytes):
    ops = list(pickletools.genops(signet_bytes))
    assert ops[0][0].name == "PROTO" and ops[0][1] == 2
    assert max(op.proto for op, _arg, _pos in ops) <= 2
    # Python 2 str opcodes only: no Python 3 bytes/unicode opcodes, no _codecs.encode.
    assert not {op.name for op, _a, _p in ops} & {
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINUNICODE",
        "SHORT_BINUNICODE",
        "STACK_GLOBAL",
    }
    globals_used = {arg for op, arg, _pos in ops if op.name == "GLOBAL"}
    assert globals_used == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    with pytest.raises(UnicodeDecodeError):  # Python 2 str holding binary data: needs latin1
        pickle.loads(signet_bytes)
    plain = pickle.loads(signet_bytes, encoding="latin1")
    assert list(plain) == ["input_size", "img_size", "params"]
    assert plain["input_size"] == (150, 220) and plain["img_size"] == (170, 242)
    assert [p.shape for p in plain["params"]] == [slot.shape for slot in param_layout("signet")]
    assert all(p.dtype == np.float32 for p in plain["params"])
    safe = safe_unpickle(signet_bytes, "signet.pkl")
    assert all(np.array_equal(a, b) for a, b in zip(safe["params"], plain["params"]))


def test_builtin_weights_have_realistic_scales_and_batch_norm_statistics():
    params = standin.synthetic_params("signet", spec("signet").source.seed)
    layout = param_layout("signet")
    by_role = {
        role: [p for p, s in zip(params, layout) if s.role == role]
        for role in ("W", "beta", "gamma", "mean", "inv_std")
    }
    assert all(np.all(v > 0) and not np.allclose(v, 1) for v in by_role["inv_std"])
    assert all(np.std(v) > 0.1 for v in by_role["mean"]) and all(not np.allclose(v, 1) for v in by_role["gamma"])
    assert all(np.std(v) > 0.05 for v in by_role["beta"])
    # conv1 sees 0..255: its He-normal weights are divided by 255; the others are plain He-normal.
    assert np.std(by_role["W"][0]) == pytest.approx(np.sqrt(2 / 121) / 255, rel=0.05)
    assert np.std(by_role["W"][1]) == pytest.approx(np.sqrt(2 / (96 * 25)), rel=0.05)


def test_each_model_has_its_own_weights():
    first = {
        name: standin.synthetic_params(spec(name).network.architecture, spec(name).source.seed)[0]
        for name in LASAGNE_MODELS
    }
    digests = {hashlib.sha256(w.tobytes()).hexdigest() for w in first.values()}
    assert len(digests) == len(LASAGNE_MODELS)


def raw_file(project: Path, model: str) -> Path:
    """`model`'s upstream file as the fetch stage wrote it in `project`."""
    return project / "data" / "raw" / model / spec(model).files[0]


def test_pth_stand_in_is_the_sigver_tuple(signet_project: Path):
    """The two .pth stand-ins of the shared build (stand-in bytes in another process:
    test_signet_family.py::test_rebuild_in_another_process_is_byte_identical)."""
    plain = torch.load(raw_file(signet_project, "signet_pth"), weights_only=True)
    state, classification, forgery = plain
    assert "conv_layers.conv1.conv.weight" in state and "fc_layers.fc2.bn.running_var" in state
    assert classification["weight"].shape == (torch_signet.BUILTIN_USERS, 2048) and forgery == {}
    _state, _classification, forgery_f = torch.load(
        raw_file(signet_project, "signet_f_lambda0_95_pth"), weights_only=True
    )
    assert forgery_f["weight"].shape == (1, 2048) and forgery_f["bias"].shape == (1,)


# ---- malicious files -------------------------------------------------------------------------


class Payload:
    """An object whose unpickling calls `func(*args)`: what a hostile pickle does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker: Path) -> dict[str, bytes]:
    """Pickles that create `marker` when loaded naively, in several shapes."""
    arrays = standin.synthetic_params("signet_spp_300dpi", 1)[:3]
    return {
        "os.system": pickle.dumps(Payload(os.system, (f"touch '{marker}'",)), protocol=2),
        "builtins.open": pickle.dumps(Payload(open, (str(marker), "w")), protocol=2),
        "subprocess.run": pickle.dumps(Payload(subprocess.run, (["touch", str(marker)],)), protocol=2),
        "builtins.exec": pickle.dumps(Payload(exec, (f"open({str(marker)!r}, 'w').close()",)), protocol=2),
        "posix.system, protocol 0": f"cposix\nsystem\n(S'touch {marker}'\ntR.".encode(),
        "inside an upstream-looking dict": pickle.dumps(
            {
                "input_size": (150, 220),
                "img_size": (170, 242),
                "params": [*arrays, Payload(os.system, (f"touch '{marker}'",))],
            },
            protocol=4,
        ),
    }


PAYLOAD_NAMES = list(payloads(Path("x")))
# The global each one names (protocol 2 writes Python 2 module names: commands, __builtin__).
PAYLOAD_GLOBALS = {
    "os.system": "posix.system",
    "builtins.open": "io.open",
    "subprocess.run": "commands.run",
    "builtins.exec": "__builtin__.exec",
    "posix.system, protocol 0": "posix.system",
    "inside an upstream-looking dict": "posix.system",
}


@pytest.mark.parametrize("kind", PAYLOAD_NAMES)
def test_a_malicious_pickle_is_live(tmp_path: Path, kind: str):
    """Control: loaded with plain pickle, each payload really creates its file."""
    marker = tmp_path / "created_by_pickle"
    data = payloads(marker)[kind]
    try:
        pickle.loads(data, encoding="latin1")
    finally:
        assert marker.exists()


@pytest.mark.parametrize("kind", PAYLOAD_NAMES)
def test_a_malicious_pickle_is_refused_before_anything_runs(tmp_path: Path, kind: str):
    marker = tmp_path / "created_by_pickle"
    raw = write_raw(tmp_path / "raw", "signet", payloads(marker)[kind])
    model_spec = spec("signet")
    for entry in (
        lambda: lasagne_signet.check_loadable(raw, model_spec),  # what the fetch stage calls
        lambda: lasagne_signet.convert(raw, model_spec, tmp_path / "out.onnx"),
        lambda: lasagne_signet.reference(raw, model_spec),
    ):
        with pytest.raises(
            PipelineError, match=rf"refused to load: the pickle asks for the global '{PAYLOAD_GLOBALS[kind]}'"
        ):
            entry()
        assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_a_malicious_pth_is_refused_by_weights_only(tmp_path: Path):
    marker = tmp_path / "created_by_pth"
    buffer = io.BytesIO()
    torch.save(Payload(os.system, (f"touch '{marker}'",)), buffer)
    write_raw(tmp_path / "live", "signet_pth", buffer.getvalue())
    torch.load(tmp_path / "live" / "signet.pth", weights_only=False)  # control: it is live
    assert marker.exists()
    marker.unlink()
    raw = write_raw(tmp_path / "raw", "signet_pth", buffer.getvalue())
    with pytest.raises(
        PipelineError, match=r"refused to load: the checkpoint asks for the global 'posix\.system'"
    ) as caught:
        torch_signet.check_loadable(raw, spec("signet_pth"))
    assert "weights_only" not in str(caught.value), "the refusal never suggests turning the protection off"
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        # numpy.ndarray called directly with a huge shape would allocate terabytes.
        (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n\x8a\x06\x00\x10\xa5\xd4\xe8\x00\x85U\x01b\x87R.",
            "unexpected numpy _reconstruct arguments",
        ),
        (pickle.dumps(np.array([1, "a"], dtype=object), protocol=4), "refused dtype 'O8'"),
        (b"\x80\x02cnumpy\ndtype\nU\x02V8K\x00K\x01\x87R.", "only plain numeric dtypes"),
        (b"\x80\x02ccopy_reg\n_reconstructor\n.", "copy_reg._reconstructor"),
        (b"\x80\x02}q\x00(U\x06params", "not a readable pickle"),  # truncated
        (b"not a pickle at all", "not a readable pickle"),
    ],
    ids=["huge-array", "object-array", "record-dtype", "copy_reg", "truncated", "garbage"],
)
def test_unsafe_or_broken_content_is_refused_with_a_clear_error(content: bytes, message: str):
    with pytest.raises(PipelineError, match=message.replace(".", r"\.").replace("(", r"\(")):
        safe_unpickle(content, "x.pkl")


# ---- layout checks -------------------------------------------------------------------------


def upstream_pickle(params: list, **overrides) -> bytes:
    content = {"input_size": (150, 220), "img_size": (170, 242), "params": params, **overrides}
    return dump_py2_pickle(content)


@pytest.fixture(scope="module")
def signet_params() -> list[np.ndarray]:
    return standin.synthetic_params("signet", 3)


def test_wrong_array_count_is_named(tmp_path: Path, signet_params):
    raw = write_raw(tmp_path, "signet", upstream_pickle(signet_params[:-1]))
    with pytest.raises(
        PipelineError,
        match=r"'params' holds 34 arrays, expected 35 for signet \(7 layers x 5: W, beta, gamma, mean, inv_std",
    ):
        lasagne_signet.check_loadable(raw, spec("signet"))


def test_wrong_shape_names_layer_expected_and_actual(tmp_path: Path, signet_params):
    params = list(signet_params)
    params[5] = np.zeros((256, 96, 3, 3), np.float32)  # conv2 W with 3x3 instead of 5x5 kernels
    raw = write_raw(tmp_path, "signet", upstream_pickle(params))
    with pytest.raises(PipelineError) as error:
        lasagne_signet.check_loadable(raw, spec("signet"))
    assert "params[5] (conv2 W) has shape (256, 96, 3, 3), expected (256, 96, 5, 5)" in str(error.value)
    assert "signet.pkl" in str(error.value)


def test_dense_weights_stored_as_torch_would_be_refused(tmp_path: Path, signet_params):
    params = list(signet_params)
    params[25] = np.ascontiguousarray(params[25].T)  # fc1 W as (out, in): the layout fact enforced
    raw = write_raw(tmp_path, "signet", upstream_pickle(params))
    with pytest.raises(
        PipelineError, match=r"params\[25\] \(fc1 W\) has shape \(2048, 3840\), expected \(3840, 2048\)"
    ):
        lasagne_signet.check_loadable(raw, spec("signet"))


def test_an_spp_pickle_under_a_signet_name_is_refused(tmp_path: Path):
    params = standin.synthetic_params("signet_spp_300dpi", 3)
    raw = write_raw(tmp_path, "signet", upstream_pickle(params))
    with pytest.raises(
        PipelineError, match=r"params\[0\] \(conv1 W\) has shape \(32, 1, 11, 11\), expected \(96, 1, 11, 11\)"
    ):
        lasagne_signet.check_loadable(raw, spec("signet"))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda p: p.__setitem__(0, p[0].astype(np.float64)),
            r"params\[0\] \(conv1 W\) has dtype float64, expected float32",
        ),
        (lambda p: p.__setitem__(4, -p[4]), r"params\[4\] \(conv1 inv_std\) has 96 values <= 0"),
        (lambda p: p.__setitem__(1, np.full(96, np.nan, np.float32)), r"params\[1\] \(conv1 beta\) contains NaN"),
        (lambda p: p.__setitem__(2, [1] * 96), r"params\[2\] \(conv1 gamma\) is a list, expected a numpy array"),
    ],
    ids=["float64", "inv_std-negative", "nan", "not-an-array"],
)
def test_bad_arrays_are_named(tmp_path: Path, signet_params, change, message: str):
    params = list(signet_params)
    change(params)
    raw = write_raw(tmp_path, "signet", upstream_pickle(params))
    with pytest.raises(PipelineError, match=message):
        lasagne_signet.check_loadable(raw, spec("signet"))


def test_top_level_structure_is_checked(tmp_path: Path, signet_params):
    path = write_raw(tmp_path / "a", "signet", dump_py2_pickle({"input_size": (150, 220), "params": []})) / "signet.pkl"
    with pytest.raises(PipelineError, match=r"the dict lacks \['img_size'\]"):
        load_lasagne_pickle(path)
    path = write_raw(tmp_path / "b", "signet", upstream_pickle(signet_params, input_size=(170, 242))) / "signet.pkl"
    with pytest.raises(PipelineError, match=r"input_size is \(170, 242\), expected \(150, 220\)"):
        load_checked(path, "signet")
    path = write_raw(tmp_path / "c", "signet", dump_py2_pickle([1, 2])) / "signet.pkl"  # type: ignore[arg-type]
    with pytest.raises(PipelineError, match="holds a list, expected a dict"):
        load_lasagne_pickle(path)


def test_pth_with_a_misshaped_tensor_names_the_key(signet_project: Path, tmp_path: Path):
    shutil.copyfile(raw_file(signet_project, "signet_pth"), tmp_path / "signet.pth")
    state, classification, forgery = torch.load(tmp_path / "signet.pth", weights_only=True)
    state["conv_layers.conv2.conv.weight"] = torch.zeros(256, 96, 3, 3)
    torch.save((state, classification, forgery), tmp_path / "signet.pth")
    with pytest.raises(
        PipelineError, match=r"conv_layers\.conv2\.conv\.weight has shape \(256, 96, 3, 3\), expected \(256, 96, 5, 5\)"
    ):
        torch_signet.check_loadable(tmp_path, spec("signet_pth"))
    state["conv_layers.conv2.conv.weight"] = torch.zeros(256, 96, 5, 5)
    torch.save(
        (state, classification, {"weight": torch.zeros(2, 2048), "bias": torch.zeros(2)}), tmp_path / "signet.pth"
    )
    with pytest.raises(
        PipelineError, match=r"forg_layer weight \(2, 2048\) / bias \(2,\), expected weight \(1, 2048\)"
    ):
        torch_signet.check_loadable(tmp_path, spec("signet_pth"))
    torch.save({"state_dict": state}, tmp_path / "signet.pth")
    with pytest.raises(PipelineError, match=r"holds a dict, expected \(state_dict, classification_layer, forg_layer\)"):
        torch_signet.check_loadable(tmp_path, spec("signet_pth"))


# ---- minimum SPP input ---------------------------------------------------------------------


def test_spp_minimum_is_computed_from_the_layer_arithmetic():
    assert spp_min_input_size("signet_spp_300dpi") == (37, 37)
    assert spp_min_input_size("signet_spp_600dpi") == (57, 57)
    for variant in ("signet_spp_300dpi", "signet_spp_600dpi"):
        side = spp_min_input_size(variant)[0]
        assert spatial_sizes(variant, side, side)[-1][1:] == (1, 1)  # conv5 map is exactly 1x1
        for smaller in range(1, side):  # every smaller size loses a layer somewhere
            assert min(h for _n, h, _w in spatial_sizes(variant, smaller, 5000)) < 1
        for larger in range(side, side + 200):  # and every larger one keeps all layers (monotone)
            assert min(h for _n, h, _w in spatial_sizes(variant, larger, larger)) >= 1
    with pytest.raises(PipelineError, match="fixed 150x220 input"):
        spp_min_input_size("signet")


@pytest.mark.parametrize("variant", ["signet_spp_300dpi", "signet_spp_600dpi"])
def test_the_oracle_agrees_on_the_minimum_with_its_own_arithmetic(variant: str):
    """The oracle has its own layer table: it accepts the minimum and refuses one row less."""
    oracle = LasagneOracle(variant, standin.synthetic_params(variant, 5))
    side = spp_min_input_size(variant)[0]
    assert oracle(np.ones((1, 1, side, side)))["fc2"].shape == (1, 2048)
    for shape in ((side - 1, side), (side, side - 1)):
        with pytest.raises(PipelineError, match="too small"):
            oracle(np.ones((1, 1, *shape)))


def test_pyramid_bins_are_never_empty():
    """floor(r h / n) < ceil((r + 1) h / n) <= h for every h >= 1: the basis of the minimum."""
    for h in range(1, 3001):
        for n in (1, 2, 4):
            for r in range(n):
                start, end = (r * h) // n, -(-((r + 1) * h) // n)
                assert 0 <= start < end <= h


def test_architectures_match_the_documented_variants():
    assert set(ARCHITECTURES) == {"signet", "signet_spp_300dpi", "signet_spp_600dpi"}
    assert set(ARCHITECTURES) == set(
        family_facts("lasagne_signet").ARCHITECTURES
    )  # the layer tables cover the facts' list
    assert [len(param_layout(v)) for v in ARCHITECTURES] == [35, 35, 35]


def test_the_upstream_zip_archive_is_named_as_such(tmp_path: Path):
    """sigver_wiwd ships signet_models.zip; fetched as if it were signet.pkl it gets a clear error."""
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("signet.pkl", b"\x80\x02.")
    raw = write_raw(tmp_path, "signet", archive.getvalue())
    with pytest.raises(
        PipelineError,
        match=r"signet\.pkl: is a zip archive, not a pickle; .* \(\.\.\.zip#signet\.pkl\) or take the file out of the archive",
    ):
        lasagne_signet.check_loadable(raw, spec("signet"))
