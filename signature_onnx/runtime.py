"""ONNX Runtime CPU sessions, for the package and the pipeline alike.

A file or graph ONNX Runtime cannot load fails as one line naming it and saying what to do
(`ModelFolderError`), never with ORT's multi-line C++ message.

ONNX Runtime's own log lines stay off the terminal unless asked: by default only FATAL (4)
messages are logged, because its ERROR lines (a failing node, printed before the exception we
turn into one `error:` line) quote node and output names from the model file raw and in color.
Set `SIGNATURE_ONNX_ORT_LOG_LEVEL` to 0 (verbose) .. 3 (error) to see them while debugging.
Telemetry is turned off where the package is imported (`signature_onnx/__init__.py`).
"""

from __future__ import annotations

import os
from pathlib import Path

from signature_onnx.errors import ModelFolderError, SignatureOnnxError, first_line, shown

ORT_LOG_ENV = "SIGNATURE_ONNX_ORT_LOG_LEVEL"
_QUIET = 4  # ORT's FATAL
# ONNX Runtime starts one OS thread per intra-op thread. The largest CPUs sold today have 192-256
# hardware threads, so more than 256 only adds contention, and a huge count (100000) makes ORT
# fail to create its pool (or exhausts the process's thread limit) instead of running.
MAX_THREADS = 256


def ort_log_level() -> int:
    """The severity ONNX Runtime logs at: FATAL only, unless $SIGNATURE_ONNX_ORT_LOG_LEVEL asks for 0..3."""
    asked = os.environ.get(ORT_LOG_ENV, "")
    return int(asked) if asked in {"0", "1", "2", "3", "4"} else _QUIET


def check_threads(threads: int | None) -> None:
    """Refuse a thread count ONNX Runtime cannot or should not start (see MAX_THREADS)."""
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise SignatureOnnxError(
            f"threads {shown(threads)}: expected an integer from 1 to {MAX_THREADS} "
            "(ONNX Runtime starts one OS thread each; leave it out to use every core)"
        )


def cpu_session(model: Path | bytes, what: str, advice: str, threads: int | None = None, spinning: bool = True):
    """An `onnxruntime.InferenceSession` on the CPU provider for a model file or serialized bytes.

    what: the file the message names; advice: what the user should do when it cannot load;
    threads: intra-op threads (None: ORT's default; else 1..MAX_THREADS); spinning: False stops
    idle worker threads from spinning between runs (they would steal the cores another framework
    runs on next).
    """
    check_threads(threads)
    import onnxruntime as ort

    level = ort_log_level()
    ort.set_default_logger_severity(level)  # the process-wide logger: messages outside a session
    options = ort.SessionOptions()
    options.log_severity_level = level
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph / NoSuchFile types
        raise ModelFolderError(f"{shown(what)}: ONNX Runtime cannot load it ({first_line(exc)}); {advice}") from None
