"""One streamed, bounded, retried, atomic HTTP download: the only code that writes fetched bytes.

Guarantees, whatever the server does:
- bytes go to a temporary file beside the destination, are fsynced, and are renamed over it
  only when complete, within the size limit and equal to their pin (if one is given);
- connection errors, cut bodies, HTTP 429 and 5xx are retried a bounded number of times with
  exponential backoff (or the server's Retry-After, capped); other statuses fail at once;
- redirects (and confirmation pages) are followed by hand: credentials go only to the origin
  they belong to, decided on every hop from the URL exactly as requests will send it (its own
  normalisation, the host its adapter connects to; an address the two URL parsers involved
  read differently is refused), and https never moves to http by any path;
- a total deadline per file (`source.max_seconds`, all attempts included): a server that
  trickles bytes cannot hold the stage forever;
- messages name the model, file and host, never a full URL (Kaggle download URLs are signed)
  nor a header; text the server chose (a reason phrase) is escaped and shortened.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import hashlib
import http.client
import ipaddress
import logging
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from tqdm import tqdm

from stages.core.atomic import fsync_dir
from stages.core.errors import PipelineError
from stages.core.untrusted import scrub_url, shown
from stages.sources.pins import Pin, mismatch_message

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
MAX_REDIRECTS = 10
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "signature-onnx-pipeline (python-requests)"
T = TypeVar("T")
DEFAULT_PORTS = {"http": 80, "https": 443}
_RETRY_SECONDS = re.compile(r"[0-9]{1,9}", re.ASCII)
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$", re.ASCII)


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
    max_seconds: float | None = None  # total deadline for this file, all attempts included
    limit_param: str = "max_bytes"  # the params key (under source) that sets max_bytes
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


class DeadlineExceeded(BaseException):
    """The file's total deadline passed. A BaseException, so no library's `except Exception` eats it."""


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
    """host[:port] of a URL, the only part of a download URL that messages show (escaped)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "an unparsable address"
    return shown(f"{host}:{port}" if port else host, 120)


def sent_url(url: str) -> tuple[str, str]:
    """(the URL as requests sends it, its origin scheme://host:port as the connection sees it).

    requests normalises the URL with urllib3's parser (PreparedRequest.prepare_url); its adapter
    then picks the host to connect to by reading the normalised string with urllib's parser.
    Raises ValueError for an address that cannot be prepared (see `prepared_origin`).
    """
    prepared = requests.models.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except (requests.RequestException, urllib3.exceptions.HTTPError, UnicodeError, ValueError) as exc:
        raise ValueError(f"not a valid address ({type(exc).__name__})") from None
    final = prepared.url or ""
    return final, prepared_origin(final)


def prepared_origin(final: str) -> str:
    """The origin of an already prepared URL, read by both parsers requests relies on; an
    address they read differently (or an incomplete one) raises ValueError."""
    adapter_view = urlsplit(final)  # how requests.adapters picks the connection's host and port
    scheme = adapter_view.scheme.lower()
    port = adapter_view.port or DEFAULT_PORTS.get(scheme, 0)
    host = (adapter_view.hostname or "").lower()
    library_view = urllib3.util.parse_url(final)
    library_scheme = (library_view.scheme or "").lower()
    library = (
        library_scheme,
        (library_view.host or "").lower().strip("[]"),
        library_view.port or DEFAULT_PORTS.get(library_scheme, 0),
    )
    if (scheme, host, port) != library or not host or scheme not in DEFAULT_PORTS:
        raise ValueError("an ambiguous or incomplete address")
    if not _HOST_NAME.match(host):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("not a valid host name") from None
    return f"{scheme}://{host}:{port}"


def origin_of(url: str) -> str:
    """scheme://host:port (default port explicit) of `url` as the HTTP library will connect to it."""
    return sent_url(url)[1]


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: ASCII digits, or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _RETRY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except Exception:  # any header the server makes up: unreadable means "no advice"
        return None


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[float]:
    """Raise DeadlineExceeded in this block after `seconds`; yields the monotonic end time.

    In the main thread (every stage) a SIGALRM timer interrupts even a blocked socket read (a
    server that trickles headers one byte a minute); elsewhere the callers check the end time
    between chunks.
    """
    ends = time.monotonic() + seconds if seconds else float("inf")
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield ends
        return

    def ring(_signum: int, _frame: object) -> None:
        raise DeadlineExceeded()

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield ends
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
            log.warning(
                "%s: %s; retrying in %.1f s (attempt %d of %d)", what, exc.reason, delay, number + 1, policy.attempts
            )
            policy.wait(delay)
    assert last is not None
    raise PipelineError(
        f"{what}: {action} failed {policy.attempts} times, last: {last.reason}; {TransientError.ADVICE[last.kind]}"
    )


def fetch_file(
    session: requests.Session, job: Job, policy: RetryPolicy = RetryPolicy(), progress: bool | None = None
) -> Pin:
    """Download `job` to `job.dest`, retrying transient failures; return the file's Pin.

    Raises PipelineError (or a subclass) with one actionable line on any final failure; the
    destination is then untouched and no temporary file is left behind.
    """
    try:
        with deadline(job.max_seconds) as ends:
            return with_retries(
                lambda: _attempt(session, job, policy, progress, ends),
                policy,
                job.what,
                f"download from {host_of(job.url)}",
            )
    except DeadlineExceeded:
        raise PipelineError(
            f"{job.what}: the download from {host_of(job.url)} took longer than its deadline of {job.max_seconds:g} s "
            f"(all attempts); check the network, or raise models.{job.model}.source.max_seconds in params.yaml"
        ) from None


def _attempt(session: requests.Session, job: Job, policy: RetryPolicy, progress: bool | None, ends: float) -> Pin:
    response = _open(session, job, policy)
    with contextlib.closing(response):
        return _stream(response, job, progress, ends)


def _open(session: requests.Session, job: Job, policy: RetryPolicy) -> requests.Response:
    """GET the job's URL, following redirects and interstitial pages, up to a 200 response."""
    url, redirects, pages = job.url, 0, 0
    while True:
        response = _get(session, url, job, policy)
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            response.close()
            url = _next_hop(url, location, job, "a redirect")
            redirects += 1
            if redirects > MAX_REDIRECTS:
                raise PipelineError(
                    f"{job.what}: more than {MAX_REDIRECTS} redirects from {host_of(job.url)}; check the address"
                )
            continue
        if status == 429 or 500 <= status <= 599:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            response.close()
            kind = "rate" if status == 429 else "server"
            raise TransientError(kind, f"HTTP {status} from {host_of(url)}", retry_after)
        if status != 200:
            response.close()
            raise HttpStatusError(
                f"{job.what}: {host_of(url)} answered HTTP {status} ({shown(response.reason or 'error', 80)}); check the address",
                status,
                host_of(url),
            )
        if job.interstitial is not None:
            next_url = job.interstitial(response)
            if next_url:
                response.close()
                pages += 1
                if pages > job.max_interstitials:
                    raise PipelineError(
                        f"{job.what}: {host_of(url)} keeps answering confirmation pages instead of the file"
                    )
                url = _next_hop(url, next_url, job, "a confirmation page")
                continue
        return response


def _next_hop(url: str, location: str | None, job: Job, how: str) -> str:
    """Where a redirect or a confirmation page sends us, refused if it is not http(s), cannot be
    read unambiguously, or moves an https download to plain http."""
    if not location:
        raise PipelineError(f"{job.what}: {host_of(url)} answered {how} without a target address")
    try:
        target = urljoin(url, location)
        _sent, origin = sent_url(target)
        _sent, here = sent_url(url)
    except ValueError as exc:
        scheme = ""
        try:
            scheme = urlsplit(urljoin(url, location)).scheme
        except ValueError:
            pass
        if scheme and scheme.lower() not in DEFAULT_PORTS:
            raise PipelineError(
                f"{job.what}: refusing {how} from {host_of(url)} to a {shown(scheme, 20)} address"
            ) from None
        raise PipelineError(
            f"{job.what}: refusing {how} from {host_of(url)} to '{shown(scrub_url(location), 120)}': {exc}"
        ) from None
    if here.startswith("https://") and not origin.startswith("https://"):
        raise PipelineError(
            f"{job.what}: refusing {how} from https to plain http ({host_of(url)} -> {host_of(target)})"
        )
    return target


def _redirect_target(url: str, response: requests.Response, job: Job) -> str:
    """The next address of a redirect response (see _next_hop)."""
    return _next_hop(url, response.headers.get("Location"), job, "a redirect")


def _get(session: requests.Session, url: str, job: Job, policy: RetryPolicy) -> requests.Response:
    try:
        request = requests.Request(
            "GET",
            url,
            # Identity encoding: the bytes hashed are the bytes sent, and Content-Length counts them.
            headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
        )
        prepared = session.prepare_request(request)
        origin = prepared_origin(prepared.url or "")
    except (ValueError, requests.RequestException, urllib3.exceptions.HTTPError, UnicodeError):
        raise PipelineError(f"{job.what}: '{shown(scrub_url(url), 120)}' is not a valid download address") from None
    # Credentials only ever go to their own origin, decided on the URL exactly as it is sent:
    # a redirect to a CDN or another host (however its Location is spelled) gets none.
    if job.auth is not None and job.auth_origin == origin:
        prepared = job.auth(prepared)
    try:
        settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
        # The adapter itself, not Session.send: with allow_redirects=False the session still
        # prepares the next hop of a redirect (and raises on a malformed Location) before we
        # have checked it; we follow redirects ourselves.
        response = session.get_adapter(prepared.url).send(
            prepared,
            stream=True,
            timeout=(policy.connect_timeout, policy.read_timeout),
            verify=settings["verify"],
            cert=settings["cert"],
            proxies=settings["proxies"],
        )
        extract_cookies_to_jar(session.cookies, prepared, response.raw)  # Drive's download_warning cookie
        return response
    except requests.exceptions.SSLError as exc:
        raise PipelineError(
            f"{job.what}: TLS verification failed for {host_of(url)} ({_ssl_reason(exc)}); check the system clock and CA certificates"
        ) from None
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.MissingSchema,
        requests.exceptions.InvalidSchema,
        requests.exceptions.InvalidHeader,
        urllib3.exceptions.LocationParseError,
        UnicodeError,
    ):
        raise PipelineError(f"{job.what}: '{shown(scrub_url(url), 120)}' is not a valid download address") from None
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
        f"raise models.{job.model}.source.{job.limit_param} in params.yaml"
    )


def _stream(response: requests.Response, job: Job, progress: bool | None, ends: float = float("inf")) -> Pin:
    length = _content_length(response)
    if length is not None and length > job.max_bytes:
        raise _too_large(job, f"the server announces {length} bytes,")
    with _temporary_beside(job) as (handle, temporary):
        digest, received = hashlib.sha256(), 0
        with _progress(job, length, progress) as bar:
            for chunk in _chunks(response, job, length, lambda: received):
                if time.monotonic() > ends:  # the check outside the main thread (no timer there)
                    raise DeadlineExceeded()
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
    return DiskError(
        f"{job.what}: cannot write into {folder} ({exc.strerror or type(exc).__name__}); check the folder, then rerun"
    )


@contextlib.contextmanager
def _progress(job: Job, total: int | None, enabled: bool | None) -> Iterator[tqdm]:
    """A byte progress bar on stderr, shown on a terminal unless told otherwise; it names the file only."""
    show = sys.stderr.isatty() if enabled is None else enabled
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=job.file,
        file=sys.stderr,
        disable=not show,
        leave=False,
        mininterval=0.5,
    )
    try:
        yield bar
    finally:
        bar.close()
