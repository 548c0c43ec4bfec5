"""One streamed, bounded, retried, atomic HTTP download: the only code that writes fetched bytes.

Guarantees, whatever the server does:
- bytes go to a temporary file beside the destination, are fsynced, and are renamed over it
  only when complete, within the size limit and equal to their pin (if one is given);
- connection errors, cut bodies, HTTP 429 and 5xx are retried a bounded number of times with
  exponential backoff (or the server's Retry-After, capped); other statuses fail at once;
- redirects are followed by hand: credentials go only to the origin they belong to, never to
  another host, and https never downgrades to http;
- messages name the model, file and host, never a full URL (Kaggle download URLs are signed)
  nor a header.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import http.client
import logging
import os
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase
from tqdm import tqdm

from stages.atomic import fsync_dir
from stages.errors import PipelineError
from stages.sources.pins import Pin, mismatch_message

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "signature-onnx-pipeline (python-requests)"
T = TypeVar("T")
# Query parameters whose values are secrets in the wild (signed URLs, API keys, OAuth tokens).
SECRET_QUERY_WORDS = ("token", "key", "sig", "secret", "password", "passwd", "auth", "credential", "session", "code")


def pause(seconds: float) -> None:
    """Sleep between attempts; a seam so tests can record the delays instead of waiting."""
    time.sleep(seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts in all, backoff base and cap (also the cap on Retry-After)."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    sleep: Callable[[float], None] | None = None

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        wanted = retry_after if retry_after is not None else self.base_delay * 2 ** (attempt - 1)
        return max(0.0, min(wanted, self.max_delay))

    def wait(self, seconds: float) -> None:
        (self.sleep or pause)(seconds)


@dataclass(frozen=True)
class Job:
    """One file to download into `dest` (already checked to lie inside the target folder)."""

    model: str
    file: str
    url: str
    dest: Path
    max_bytes: int
    source: str
    expected: Pin | None = None
    auth: AuthBase | None = None
    auth_origin: str | None = None
    interstitial: Callable[[requests.Response], str | None] | None = None
    max_interstitials: int = 3

    @property
    def what(self) -> str:
        return f"models.{self.model}: {self.file}"


class HttpStatusError(PipelineError):
    """The server answered a final, non-retryable status; sources reword it with their own advice."""

    def __init__(self, message: str, status: int, host: str) -> None:
        super().__init__(message)
        self.status = status
        self.host = host


class TooLarge(PipelineError):
    """The body is (or announces itself as) larger than the model's `source.max_bytes`."""


class DiskError(PipelineError):
    """Writing the downloaded bytes failed locally (disk full, read-only, permissions)."""


class TransientError(Exception):
    """A failure worth another attempt: network, cut body, 429 or 5xx."""

    ADVICE = {
        "network": "check the network connection (and any HTTP(S)_PROXY setting), then rerun",
        "cut": "the connection keeps dropping mid-download: check the network, then rerun",
        "rate": "the server is rate limiting (HTTP 429): wait a few minutes, then rerun",
        "server": "the server is failing: rerun later",
    }

    def __init__(self, kind: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after = retry_after


def host_of(url: str) -> str:
    """host[:port] of a URL, the only part of a download URL that messages show."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


def origin_of(url: str) -> str:
    """scheme://host:port with the default port made explicit, for same-origin checks."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def scrub_url(url: str) -> str:
    """The URL without user:password, fragment, or the values of secret-looking query parameters."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = [
        (key, "REDACTED" if any(word in key.lower() for word in SECRET_QUERY_WORDS) else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="/:"), ""))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: an integer, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def describe_network_error(exc: BaseException) -> str:
    """A short cause for a connection failure, without the exception text (it holds the URL)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, socket.gaierror):
            return "cannot resolve the host name (offline or DNS down?)"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, http.client.IncompleteRead):
            return "the body ended early"
        if isinstance(current, (TimeoutError, socket.timeout, requests.Timeout)):
            return "timed out"
        if isinstance(current, OSError) and current.errno == errno.ENETUNREACH:
            return "network unreachable"
        stack.extend(x for x in (current.__cause__, current.__context__) if x is not None)
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return f"connection failed ({type(exc).__name__})"


def with_retries(attempt: Callable[[], T], policy: RetryPolicy, what: str, action: str) -> T:
    """Call `attempt` until it returns, retrying each TransientError with backoff.

    When every attempt failed, raise PipelineError: `<what>: <action> failed N times, last: ...`
    with the advice for the last failure's kind. Any other exception passes through at once.
    """
    last: TransientError | None = None
    for number in range(1, policy.attempts + 1):
        try:
            return attempt()
        except TransientError as exc:
            last = exc
            if number == policy.attempts:
                break
            delay = policy.delay(number, exc.retry_after)
            log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", what, exc.reason, delay, number + 1, policy.attempts)
            policy.wait(delay)
    assert last is not None
    raise PipelineError(
        f"{what}: {action} failed {policy.attempts} times, last: {last.reason}; {TransientError.ADVICE[last.kind]}"
    )


def fetch_file(session: requests.Session, job: Job, policy: RetryPolicy = RetryPolicy(), progress: bool | None = None) -> Pin:
    """Download `job` to `job.dest`, retrying transient failures; return the file's Pin.

    Raises PipelineError (or a subclass) with one actionable line on any final failure; the
    destination is then untouched and no temporary file is left behind.
    """
    return with_retries(
        lambda: _attempt(session, job, policy, progress), policy, job.what, f"download from {host_of(job.url)}"
    )


def _attempt(session: requests.Session, job: Job, policy: RetryPolicy, progress: bool | None) -> Pin:
    response = _open(session, job, policy)
    with contextlib.closing(response):
        return _stream(response, job, progress)


def _open(session: requests.Session, job: Job, policy: RetryPolicy) -> requests.Response:
    """GET the job's URL, following redirects and interstitial pages, up to a 200 response."""
    url, redirects, pages = job.url, 0, 0
    while True:
        response = _get(session, url, job, policy)
        status = response.status_code
        if status in REDIRECT_STATUSES:
            url = _redirect_target(url, response, job)
            response.close()
            redirects += 1
            if redirects > MAX_REDIRECTS:
                raise PipelineError(f"{job.what}: more than {MAX_REDIRECTS} redirects from {host_of(job.url)}; check the address")
            continue
        if status == 429 or 500 <= status <= 599:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            kind = "rate" if status == 429 else "server"
            raise TransientError(kind, f"HTTP {status} from {host_of(url)}", retry_after)
        if status != 200:
            response.close()
            raise HttpStatusError(
                f"{job.what}: {host_of(url)} answered HTTP {status} ({response.reason or 'error'}); check the address",
                status,
                host_of(url),
            )
        if job.interstitial is not None:
            next_url = job.interstitial(response)
            if next_url:
                response.close()
                pages += 1
                if pages > job.max_interstitials:
                    raise PipelineError(f"{job.what}: {host_of(url)} keeps answering confirmation pages instead of the file")
                url = next_url
                continue
        return response


def _redirect_target(url: str, response: requests.Response, job: Job) -> str:
    location = response.headers.get("Location")
    if not location:
        raise PipelineError(f"{job.what}: {host_of(url)} answered a redirect without a Location header")
    target = urljoin(url, location)
    scheme = urlsplit(target).scheme
    if scheme not in ("http", "https"):
        raise PipelineError(f"{job.what}: refusing a redirect from {host_of(url)} to a {scheme or 'schemeless'} address")
    if urlsplit(url).scheme == "https" and scheme != "https":
        raise PipelineError(f"{job.what}: refusing a redirect from https to plain http ({host_of(url)} -> {host_of(target)})")
    return target


def _get(session: requests.Session, url: str, job: Job, policy: RetryPolicy) -> requests.Response:
    # Credentials only ever go to their own origin: a redirect to a CDN or another host gets none.
    auth = job.auth if job.auth is not None and job.auth_origin == origin_of(url) else None
    try:
        return session.get(
            url,
            stream=True,
            allow_redirects=False,
            auth=auth,
            timeout=(policy.connect_timeout, policy.read_timeout),
            # Identity encoding: the bytes hashed are the bytes sent, and Content-Length counts them.
            headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
        )
    except requests.exceptions.SSLError as exc:
        raise PipelineError(
            f"{job.what}: TLS verification failed for {host_of(url)} ({_ssl_reason(exc)}); check the system clock and CA certificates"
        ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema):
        raise PipelineError(f"{job.what}: {scrub_url(url)!r} is not a valid download address") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError("network", f"cannot reach {host_of(url)}: {describe_network_error(exc)}") from None


def _ssl_reason(exc: BaseException) -> str:
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current.verify_message or "certificate not trusted"
        current = current.__cause__ or current.__context__
    return "TLS error"


def _content_length(response: requests.Response) -> int | None:
    """The announced body size, when it counts the bytes we will read (identity encoding)."""
    if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
        return None
    try:
        value = int(response.headers.get("Content-Length", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def _too_large(job: Job, size: str) -> TooLarge:
    return TooLarge(
        f"{job.what}: {size} over the limit of {job.max_bytes} bytes; if this file is really that big, "
        f"raise models.{job.model}.source.max_bytes in params.yaml"
    )


def _stream(response: requests.Response, job: Job, progress: bool | None) -> Pin:
    length = _content_length(response)
    if length is not None and length > job.max_bytes:
        raise _too_large(job, f"the server announces {length} bytes,")
    with _temporary_beside(job) as (handle, temporary):
        digest, received = hashlib.sha256(), 0
        with _progress(job, length, progress) as bar:
            for chunk in _chunks(response, job, length, lambda: received):
                received += len(chunk)
                if received > job.max_bytes:
                    raise _too_large(job, "the body grew")
                digest.update(chunk)
                _write(handle, chunk, job)
                bar.update(len(chunk))
        _sync(handle, job)
        if length is not None and received != length:
            raise TransientError("cut", f"the body ended after {received} of {length} bytes")
        pin = Pin(sha256=digest.hexdigest(), size=received, source=job.source)
        if job.expected is not None and not job.expected.same_bytes(pin):
            raise PipelineError(mismatch_message(job.model, job.file, pin, job.expected))
        os.replace(temporary, job.dest)
    fsync_dir(job.dest.parent)
    return pin


def _chunks(response: requests.Response, job: Job, length: int | None, received: Callable[[], int]) -> Iterator[bytes]:
    """The body in chunks; a connection that drops mid-body becomes a retryable failure."""
    iterator = response.iter_content(CHUNK_BYTES)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError, requests.Timeout) as exc:
            total = length if length is not None else "?"
            raise TransientError(
                "cut", f"the connection dropped after {received()} of {total} bytes ({describe_network_error(exc)})"
            ) from None
        if chunk:
            yield chunk


@contextlib.contextmanager
def _temporary_beside(job: Job) -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file in the destination's folder (same filesystem: the rename is atomic)."""
    try:
        job.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=job.dest.parent, prefix=f".{job.dest.name}.", suffix=".part")
    except OSError as exc:
        raise _disk_error(job, exc) from None
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, temporary
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    # Reached only after os.replace in _stream; a leftover means the block returned early.
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()


def _write(handle: BinaryIO, chunk: bytes, job: Job) -> None:
    try:
        handle.write(chunk)
    except OSError as exc:
        raise _disk_error(job, exc) from None


def _sync(handle: BinaryIO, job: Job) -> None:
    """Flush, fsync and close: some filesystems report a full disk only here."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
    except OSError as exc:
        raise _disk_error(job, exc) from None


def _disk_error(job: Job, exc: OSError) -> DiskError:
    folder = job.dest.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskError(f"{job.what}: disk full while writing into {folder}; free some space, then rerun")
    return DiskError(f"{job.what}: cannot write into {folder} ({exc.strerror or type(exc).__name__}); check the folder, then rerun")


@contextlib.contextmanager
def _progress(job: Job, total: int | None, enabled: bool | None) -> Iterator[tqdm]:
    """A byte progress bar on stderr, shown on a terminal unless told otherwise; it names the file only."""
    show = sys.stderr.isatty() if enabled is None else enabled
    bar = tqdm(
        total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=job.file,
        file=sys.stderr, disable=not show, leave=False, mininterval=0.5,
    )
    try:
        yield bar
    finally:
        bar.close()
