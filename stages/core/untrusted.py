"""Text that came from outside (a server, an archive, a model file) is shown escaped and short.

Every message that quotes an untrusted value goes through `shown` (text) or `shown_repr` (any
value): control and format characters are escaped (a newline cannot forge a second log line, an
escape code never reaches the terminal, a right-to-left override cannot reorder the line), the
result is cut to a bounded length (a 1 MB name gives a short line), and every registered secret
is redacted. `shown_repr` never builds an unbounded repr: a self-repeating or deeply nested
value prints a few items and levels only.

Secrets: whoever holds a credential registers it once (`register_secret`); `redact` then replaces
every form of it (raw, URL-encoded, base64 of user:key as HTTP Basic sends it) in any text, and
the stages' error reporter and log handler apply it to everything they print.
"""

from __future__ import annotations

import base64
import reprlib
import threading
from pathlib import Path
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from signature_onnx.errors import escape  # the one copy: the package prints untrusted text too

LIMIT = 200
_REDACTED = "<redacted>"
# Query parameter names whose values are secrets in the wild (signed URLs, API keys, OAuth
# tokens): any name containing one of these words, whatever its case or separators ("apikey",
# "X-Amz-Signature", "access_token"). The one rule for params (refused there) and for every
# address shown or recorded (value redacted). Google Drive's `resourcekey` is a public part of a
# share link, needed to download older shared files, so it is the one exception.
SECRET_QUERY_WORDS = ("token", "key", "sig", "secret", "password", "passwd", "auth", "credential", "session", "code")
PUBLIC_QUERY_NAMES = frozenset({"resourcekey"})

_lock = threading.Lock()
_secrets: set[str] = set()


def shorten(text: str, limit: int = LIMIT) -> str:
    """At most about `limit` characters, saying how long the whole was when it is cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters in all)"


def shown(value: object, limit: int = LIMIT) -> str:
    """Untrusted text for a message: redacted, escaped, shortened (one line, bounded)."""
    if isinstance(value, bytes):
        text, total = value[: limit * 4].decode("utf-8", errors="backslashreplace"), len(value)
    elif isinstance(value, str):
        text, total = value, len(value)
    else:
        return shown_repr(value, limit)
    # Cut before escaping (escaping a 1 GB string would cost 1 GB), then redact, escape, cut again.
    head = text[: limit * 4]
    body = escape(redact(head))
    if len(body) > limit or total > len(head):
        return f"{body[:limit]}... ({total} characters in all)"
    return body


class _BoundedRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxarray = self.maxdict = self.maxset = self.maxfrozenset = (
            self.maxdeque
        ) = 6
        self.maxstring = 80
        self.maxlong = 40
        self.maxother = 80

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_dict(self, x: dict, level: int) -> str:
        # reprlib sorts the keys of a dict first: O(n log n) on a hostile dict of a million keys.
        n = len(x)
        if n == 0:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = []
        for index, (key, value) in enumerate(x.items()):
            if index >= self.maxdict:
                pieces.append("...")
                break
            pieces.append(f"{self.repr1(key, level - 1)}: {self.repr1(value, level - 1)}")
        return "{" + ", ".join(pieces) + "}"

    def repr_set(self, x: set, level: int) -> str:  # unsorted, unlike reprlib
        return self._repr_iterable(x, level, "{", "}", self.maxset) if x else "set()"

    def repr_frozenset(self, x: frozenset, level: int) -> str:
        return self._repr_iterable(x, level, "frozenset({", "})", self.maxfrozenset) if x else "frozenset()"

    def repr_bytes(self, x: bytes, level: int) -> str:  # reprlib has none: it would repr all of it
        text = repr(x[: self.maxstring])
        return text if len(x) <= self.maxstring else f"{text}...({len(x)} bytes)"

    repr_bytearray = repr_bytes


_repr = _BoundedRepr()


def shown_repr(value: object, limit: int = LIMIT) -> str:
    """A bounded repr of any value (few items, few levels), escaped, redacted and shortened."""
    try:
        text = _repr.repr(value)
    except Exception:  # a hostile object whose repr fails (it cannot run code: only plain values get here)
        text = f"<{type(value).__name__} object>"
    return shown(text, limit)


def shown_names(names: object, count: int = 10, limit: int = 60) -> str:
    """The first `count` items of a collection of untrusted names, each shown, for a message."""
    items = list(names) if not isinstance(names, (str, bytes)) else [names]
    parts = [f"'{shown(name, limit)}'" if isinstance(name, str) else shown_repr(name, limit) for name in items[:count]]
    more = f", ... ({len(items)} in all)" if len(items) > count else ""
    return "[" + ", ".join(parts) + more + "]"


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------


def secret_forms(secret: str, user: str | None = None) -> set[str]:
    """Every way a secret is seen on the wire: raw, URL-encoded, and base64 of user:secret."""
    if not secret:
        return set()
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe="")}
    if user is not None:
        for pair in (f"{user}:{secret}",):
            raw = pair.encode("utf-8")
            for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
                text = encoded.decode("ascii")
                forms |= {text, text.rstrip("="), quote(text, safe=""), quote_plus(text, safe="")}
    return {form for form in forms if len(form) >= 4}


def register_secret(secret: str | None, user: str | None = None) -> None:
    """Remember a credential: from now on `redact` (and so every message) hides all its forms."""
    if not secret:
        return
    with _lock:
        _secrets.update(secret_forms(secret, user))


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    with _lock:
        _secrets.clear()


def redact(text: str) -> str:
    """`text` with every form of every registered secret replaced."""
    with _lock:
        forms = sorted(_secrets, key=len, reverse=True)
    for form in forms:
        if form in text:
            text = text.replace(form, _REDACTED)
    return text


def is_secret_query_name(name: str) -> bool:
    """Whether a URL query parameter of this name carries a secret (SECRET_QUERY_WORDS)."""
    lowered = name.lower()
    return lowered not in PUBLIC_QUERY_NAMES and any(word in lowered for word in SECRET_QUERY_WORDS)


def scrub_url(url: str) -> str:
    """The URL without user:password, fragment, or the values of secret query parameters."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
    except ValueError:
        return "<an unparsable address>"
    query = [
        (key, "REDACTED" if is_secret_query_name(key) else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/:"), ""))


def read_bounded(path: Path, max_bytes: int, what: str, missing: str) -> bytes:
    """The bytes of an upstream file no larger than `max_bytes`, checked before reading it whole.

    what: the kind of file, for the refusal ("SigNet pickle"); missing: what to say when the file
    is absent. Raises PipelineError naming the file.
    """
    from stages.core.errors import PipelineError

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PipelineError(f"{path}: {size} bytes, more than any {what} ({max_bytes} at most); refused")
        return path.read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found{missing}") from None
