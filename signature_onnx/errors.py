"""The exceptions of signature_onnx: each message names the file (or key) at fault and says what to do.

The command line prints any of them as one `error:` line; the pipeline (`stages`) does the same.
"""

from __future__ import annotations


class SignatureOnnxError(Exception):
    """A problem the user can fix: a bad image, a bad model folder, a failed test vector."""


class ImageError(SignatureOnnxError, ValueError):
    """A signature image (file or array) that cannot be preprocessed.

    The message names the file (or the `source` passed by the caller) and says what was
    expected. It is a `ValueError` for callers of the preprocessing functions.
    """


class ModelFolderError(SignatureOnnxError):
    """A model folder or `model.onnx` that cannot be used (missing, damaged, wrong kind of model)."""


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (at most `limit` characters), or its type name.

    Third-party errors (ONNX Runtime, TensorFlow, YAML) carry multi-line messages; one line is shown.
    """
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
