"""The building blocks of hostile-input handling: shown text, the one-line reporter, the pickle reader."""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest
from conftest import IMPORT_TRACER, REPO

from stages.core.cli import one_message, report_errors
from stages.core.errors import PipelineError
from stages.core.untrusted import forget_secrets, redact, register_secret, shown, shown_names, shown_repr
from stages.families.lasagne_signet import unpickler


@pytest.fixture(autouse=True)
def clean_secrets():
    yield
    forget_secrets()


# ---- shown text ------------------------------------------------------------------------------


def test_shown_escapes_control_format_and_separator_characters() -> None:
    text = "a\nerror: forged\r\x1b[31mred\x1b[0m\u202eevil\u2028\x00\x7f\x85"
    result = shown(text)
    assert result == "a\\nerror: forged\\r\\x1b[31mred\\x1b[0m\\u202eevil\\u2028\\x00\\x7f\\x85"
    assert shown("plain ascii and é ü 中文") == "plain ascii and é ü 中文"


def test_shown_is_short_whatever_the_input() -> None:
    result = shown("x" * 10_000_000, 100)
    assert len(result) < 150 and result.endswith("(10000000 characters in all)")
    assert len(shown("\x1b" * 1000, 100)) < 150, "escaping expands; the limit still holds"
    assert shown(b"\xff\xfebytes") == "\\xff\\xfebytes"


def test_shown_repr_is_bounded_for_self_repeating_and_deep_values() -> None:
    loop: list = []
    loop.extend([loop] * 1000)
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    big = {"k" * 10_000_000: [b"b" * 10_000_000] * 1_000_000}
    for value in (loop, deep, big, 10**5000, {(1, 2): frozenset(range(10**6))}):
        result = shown_repr(value)
        assert len(result) < 300 and "\n" not in result


def test_shown_names_lists_a_few_escaped_names() -> None:
    assert shown_names(["a\n", "b"]) == "['a\\n', 'b']"
    assert shown_names([str(i) for i in range(50)], 3) == "['0', '1', '2', ... (50 in all)]"


def test_every_form_of_a_registered_secret_is_redacted() -> None:
    register_secret("k+3/b=9&x", "alice")
    basic = base64.b64encode(b"alice:k+3/b=9&x").decode()
    text = f"raw k+3/b=9&x, url k%2B3%2Fb%3D9%26x, plus k%2B3%2Fb%3D9%26x, basic {basic} and {basic.rstrip('=')}"
    assert redact(text).count("<redacted>") == 5 and "k+3" not in redact(text)
    assert "k+3/b=9&x" not in shown("server said k+3/b=9&x")


# ---- the one-line reporter --------------------------------------------------------------------


def run_reporter(error: BaseException, capsys) -> tuple[int, list[str]]:
    def fail() -> None:
        raise error

    code = report_errors(fail)
    return code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    "error",
    [
        PipelineError("server said: x\nerror: forged\x1b[2J"),
        RecursionError("maximum recursion depth exceeded"),
        MemoryError(),
        TypeError("'<' not supported between instances of 'int' and 'str'\n  a second line"),
        OSError(28, "No space left on device", "data/raw/\nerror: x"),
    ],
)
def test_every_failure_is_one_error_line_and_exit_1(error, capsys, monkeypatch) -> None:
    monkeypatch.delenv("STAGES_TRACEBACK", raising=False)
    code, lines = run_reporter(error, capsys)
    assert code == 1
    assert len([line for line in lines if line.startswith("error:")]) == 1, lines
    assert lines[0].startswith("error:") and "\x1b" not in "".join(lines)


def test_a_multi_line_message_keeps_its_lines_indented() -> None:
    message = one_message("params.yaml: invalid parameters:\n  models.a: bad\nerror: not a second error")
    lines = message.split("\n")
    assert lines == ["params.yaml: invalid parameters:", "  models.a: bad", "  error: not a second error"]


def test_stages_traceback_shows_the_traceback(monkeypatch) -> None:
    monkeypatch.setenv("STAGES_TRACEBACK", "1")
    with pytest.raises(TypeError):
        report_errors(lambda: (_ for _ in ()).throw(TypeError("boom")))


def fetch_unknown_model(env: dict[str, str], **run_options) -> subprocess.CompletedProcess:
    """`python -m stages.fetch no_such_model` (a stage that fails at once) with `env` added."""
    full_env = {key: value for key, value in os.environ.items() if key != "STAGES_TRACEBACK"} | env
    command = [sys.executable, "-m", "stages.fetch", "no_such_model"]
    return subprocess.run(command, cwd=REPO, env=full_env, stderr=subprocess.PIPE, text=True, **run_options)


def test_a_stage_exit_keeps_its_code_output_and_exit_handlers(tmp_path) -> None:
    """A stage skips the interpreter's teardown (`stages.core.cli.exit_without_teardown`), not what
    a process owes at its exit: the exit code, the error line, the exit handlers (here the
    tests' import tracer, which writes one file when its process exits)."""
    result = fetch_unknown_model(
        {"PYTHONPATH": str(IMPORT_TRACER), "STAGE_IMPORT_TRACE": str(tmp_path)}, stdout=subprocess.PIPE
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: params.yaml: no model 'no_such_model'"), result.stderr
    traces = [json.loads(path.read_text()) for path in tmp_path.glob("*.json")]
    assert [trace["argv"][-1] for trace in traces] == ["no_such_model"]
    assert any(path.endswith("stages/core/cli.py") for path in traces[0]["files"])


def test_a_stage_exit_with_stdout_closed_is_still_one_error_line(tmp_path) -> None:
    """Started with descriptor 1 closed, Python has no sys.stdout: the exit must not trip on it."""
    result = fetch_unknown_model({}, preexec_fn=lambda: os.close(1))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, result.stderr


def test_a_stage_exit_waits_for_a_thread_still_working(tmp_path) -> None:
    """Work a thread (not a daemon) still does at the exit is finished, as a usual exit does."""
    written = tmp_path / "written"
    script = (
        "import pathlib, sys, threading, time\n"
        "from stages.core.cli import exit_without_teardown\n"
        "target = pathlib.Path(sys.argv[1])\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), target.write_text('done'))).start()\n"
        "exit_without_teardown(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(written)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert written.read_text() == "done"


# ---- the pickle reader ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4])
def test_python3_numpy_pickles_of_every_protocol_read_back(protocol: int) -> None:
    value = {
        "f4": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        "big-endian": np.arange(5, dtype=">i4"),
        "bool": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.uint8),
        "scalar": np.float32(2.5),
        "nested": [(1, 2.0, "s", b"b", None, True), {"k": [1, 2]}],
        "ordered": OrderedDict([("a", 1), ("b", 2)]),
        "set": {1, 2, 3},
        "frozen": frozenset({"x"}),
    }
    data = pickle.dumps(value, protocol=protocol)
    loaded = unpickler.load(data)
    for key in ("f4", "fortran", "big-endian", "bool", "empty"):
        assert np.array_equal(loaded[key], value[key]) and loaded[key].shape == value[key].shape
        assert loaded[key].dtype == value[key].dtype.newbyteorder("=")
        assert loaded[key].flags.c_contiguous and loaded[key].flags.owndata
    assert loaded["scalar"] == value["scalar"] and loaded["nested"] == value["nested"]
    assert (
        loaded["ordered"] == dict(value["ordered"])
        and loaded["set"] == value["set"]
        and loaded["frozen"] == value["frozen"]
    )


def test_a_bool_array_holds_only_zeros_and_ones() -> None:
    import hostile

    bool_dtype = hostile.dtype_with_state(b"b1", hostile.plain_dtype_state(order=b"|"))
    data = hostile.PROTO2 + hostile.array((2,), bool_dtype, hostile.binstring(b"\x01\x02")) + hostile.STOP
    with pytest.raises(unpickler.Refused, match="bytes other than 0 and 1"):
        unpickler.load(data)


def test_shared_values_are_converted_once_and_depth_is_counted_without_recursion() -> None:
    shared = [np.ones(3, np.float32)]
    value = [shared] * 1000
    loaded = unpickler.load(pickle.dumps(value, protocol=2))
    assert all(item is loaded[0] for item in loaded), "a DAG stays a DAG (no exponential copy)"
    chain: list = []
    for _ in range(40):
        chain = [chain, chain]  # 2**40 paths, 40 levels
    with pytest.raises(unpickler.Refused, match="nested more than 32 levels"):
        unpickler.load(pickle.dumps(chain, protocol=2))
    assert sys.getrecursionlimit() < 100_000


def test_an_oversized_upstream_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """The bounded read (core.untrusted.read_bounded) behind the pickle and SavedModel loaders:
    a file above its kind's limit fails naming the file and the limit; a missing one names it."""
    import pytest

    from stages.core.errors import PipelineError
    from stages.core.untrusted import read_bounded
    from stages.families.keras_cleaning import savedmodel_ops
    from stages.families.lasagne_signet import pickle_file

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 1001)
    assert read_bounded(big, 1001, "test file", "") == b"x" * 1001
    with pytest.raises(PipelineError, match=r"big\.bin: 1001 bytes, more than any test file \(1000 at most\); refused"):
        read_bounded(big, 1000, "test file", "")
    with pytest.raises(PipelineError, match=r"absent\.bin: not found; fetch it"):
        read_bounded(tmp_path / "absent.bin", 1000, "test file", "; fetch it")
    monkeypatch.setattr(pickle_file, "MAX_PICKLE_BYTES", 1000)
    with pytest.raises(PipelineError, match="more than any SigNet pickle"):
        pickle_file.load_lasagne_pickle(big)
    (tmp_path / "saved_model.pb").write_bytes(b"x" * 1001)
    monkeypatch.setattr(savedmodel_ops, "MAX_SAVED_MODEL_BYTES", 1000)
    with pytest.raises(PipelineError, match="more than any SavedModel graph"):
        savedmodel_ops.check_savedmodel(tmp_path)
