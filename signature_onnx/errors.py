"""The exceptions of signature_onnx: each message names the file (or key) at fault and says what to do.

The command line prints any of them as one `error:` line; the pipeline (`stages`) does the same.
Text that came from a file or a name (a path, a model name, an output name, ONNX Runtime's own
message) goes through `shown` before it is put in a message or printed: control and format
characters are escaped and the text is shortened, so a hostile name can neither clear the
screen, hide a warning, write the clipboard (OSC 52) nor forge a second line.
"""

from __future__ import annotations

import unicodedata

# Long enough for a real path, short enough that one hostile name cannot flood the terminal.
SHOWN_LIMIT = 200
# Unicode categories that must never reach a terminal raw: controls (C0, C1, DEL), format
# characters (bidi overrides, zero-width joiners), line/paragraph separators, surrogates,
# private use and unassigned code points.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class SignatureOnnxError(Exception):
    """A problem the user can fix: a bad image, a bad model folder, a failed test vector."""


class ImageError(SignatureOnnxError, ValueError):
    """A signature image (file or array) that cannot be preprocessed.

    The message names the file (or the `source` passed by the caller) and says what was
    expected. It is a `ValueError` for callers of the preprocessing functions.
    """


class ModelFolderError(SignatureOnnxError):
    """A model folder or `model.onnx` that cannot be used (missing, damaged, wrong kind of model)."""


class IntegrityError(ModelFolderError):
    """`model.onnx` is not the file its folder's lineage or signature vouches for: refused at load."""


class ModelOutputError(SignatureOnnxError):
    """The model produced a result that cannot be one (NaN or infinite values): nothing is reported."""


def _escape_char(ch: str) -> str:
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """`text` with every control, format, separator or unassigned character backslash-escaped."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(
        _escape_char(ch) if (ch in _SHORT_ESCAPES or unicodedata.category(ch) in _UNSAFE_CATEGORIES) else ch
        for ch in text
    )


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """Untrusted text (a path, a name, a third-party message) as one escaped line of bounded length.

    Escaping is idempotent (its output holds no character it would escape), so a message built
    from shown parts can be shown again when printed.
    """
    text = value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else str(value)
    # Cut before escaping (escaping a huge name would cost its whole size), then cut the result.
    escaped = escape(text[: limit * 2])
    if len(text) <= limit and len(escaped) <= limit:
        return escaped
    return f"{escaped[:limit]}... ({len(text)} characters in all)"


def first_line(exc: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (at most `limit` characters), or its type name.

    Third-party errors (ONNX Runtime, TensorFlow, YAML) carry multi-line messages; one line is
    shown, escaped (they quote names from the model file).
    """
    lines = str(exc).strip().splitlines()
    return shown(lines[0] if lines else type(exc).__name__, limit)
