"""ONNX Runtime CPU sessions, for the package and the pipeline alike.

A file or graph ONNX Runtime cannot load fails as one line naming it and saying what to do
(`ModelFolderError`), never with ORT's multi-line C++ message.
"""

from __future__ import annotations

from pathlib import Path

from signature_onnx.errors import ModelFolderError, first_line


def cpu_session(model: Path | bytes, what: str, advice: str, threads: int | None = None, spinning: bool = True):
    """An `onnxruntime.InferenceSession` on the CPU provider for a model file or serialized bytes.

    what: the file the message names; advice: what the user should do when it cannot load;
    threads: intra-op threads (None: ORT's default); spinning: False stops idle worker threads
    from spinning between runs (they would steal the cores another framework runs on next).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail / InvalidProtobuf / InvalidGraph / NoSuchFile types
        raise ModelFolderError(f"{what}: ONNX Runtime cannot load it ({first_line(exc)}); {advice}") from None
