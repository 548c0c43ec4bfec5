"""`source: {kind: kaggle}`: the output files of a Kaggle notebook (kernel), listed with kagglesdk.

The Kaggle client library lists the kernel's output (`ListKernelSessionOutput`, paginated) and
authenticates that call; the files the params select are then downloaded by our own streamed,
bounded, retried, atomic downloader (stages.sources.download). The library's `kernels_output`
is not used: it writes whatever names the listing holds, unchecked and non-atomically.

Credentials, as the Kaggle tools accept them, first found wins:
1. an API token: KAGGLE_API_TOKEN (the token, or a file holding it), ~/.kaggle/access_token;
2. KAGGLE_USERNAME and KAGGLE_KEY, each overriding the same field of kaggle.json;
3. kaggle.json in $KAGGLE_CONFIG_DIR, ~/.kaggle/ or ~/.config/kaggle/.
Their values never reach a log, an exception message, a pin, dvc.lock or any output file: every
form of them (raw, URL-encoded, base64 of user:key as HTTP Basic sends it) is registered with
`stages.core.untrusted` and redacted from anything printed, server echoes included.

The API is untrusted too: every response is read with a size cap (`MAX_API_RESPONSE_BYTES`,
decompressed bytes: a gzip bomb stops there) within a deadline per call, and an API redirect
is refused (requests would decide whether to keep the Authorization header with a URL parser
other than the one it connects with).

`KAGGLE_API_ENVIRONMENT=TEST` points kagglesdk at http://localhost:7777 (the tests' fake API).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPBasicAuth

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.untrusted import redact, register_secret, shown
from stages.sources.download import (
    DeadlineExceeded,
    HttpStatusError,
    Job,
    RetryPolicy,
    TransientError,
    deadline,
    describe_network_error,
    fetch_file,
    origin_of,
    parse_retry_after,
    with_retries,
)
from stages.sources.pins import Pin
from stages.sources.safe_paths import UnsafeName, check_name, resolve_inside

log = logging.getLogger(__name__)

PAGE_SIZE = 100
MAX_PAGES = 200
TOKEN_HELP = "https://www.kaggle.com/settings/api"
USER_AGENT = "signature-onnx-pipeline (kagglesdk)"
# One page of the output listing (100 files) is a few tens of KB; nothing legitimate is near this.
MAX_API_RESPONSE_BYTES = 8 * 1024 * 1024
API_DEADLINE = 300.0  # seconds for one API call (connect, headers and body)
T = TypeVar("T")


class _BearerAuth(AuthBase):
    """What kagglesdk sends for an API token; repr stays secret-free."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<hidden>)"


@dataclass(frozen=True)
class Credentials:
    """Kaggle credentials and where they were found (`origin` is what messages show)."""

    origin: str
    username: str | None = field(default=None, repr=False)
    key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    def auth(self) -> AuthBase:
        if self.token:
            return _BearerAuth(self.token)
        return HTTPBasicAuth(self.username or "", self.key or "")

    def client_arguments(self) -> dict[str, str | None]:
        """Keyword arguments of kagglesdk.KaggleClient for these credentials."""
        if self.token:
            return {"api_token": self.token}
        return {"username": self.username, "password": self.key}

    def __post_init__(self) -> None:
        # From now on every message and log line of this process hides every form of the secrets.
        register_secret(self.key, self.username)
        register_secret(self.token)

    def redact(self, text: str) -> str:
        """`text` with every form of every secret replaced, for anything a server might echo back."""
        return redact(text)


def _config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """Where the Kaggle tools look for kaggle.json, in their order."""
    if env.get("KAGGLE_CONFIG_DIR"):
        return [Path(env["KAGGLE_CONFIG_DIR"]) / "kaggle.json"]
    xdg = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return [home / ".kaggle" / "kaggle.json", xdg / "kaggle" / "kaggle.json"]


def _read_kaggle_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read Kaggle credentials ({exc.strerror}); check its permissions") from None
    except ValueError:
        raise PipelineError(f"{path}: not valid JSON; download a new kaggle.json from {TOKEN_HELP}") from None
    if not isinstance(data, dict):
        raise PipelineError(
            f'{path}: expected {{"username": ..., "key": ...}}; download a new kaggle.json from {TOKEN_HELP}'
        )
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; run: chmod 600 %s", path, path)
    return {k: v for k, v in data.items() if k in ("username", "key") and isinstance(v, str) and v}


def find_credentials() -> Credentials:
    """The first credentials found in the order of the module docstring, or an actionable error."""
    from kagglesdk.kaggle_env import get_access_token_from_env

    env, home = os.environ, Path.home()
    # Tokens are looked up by the library itself, exactly as its own client would.
    token, token_origin = get_access_token_from_env()
    if token:
        return Credentials(origin=_TOKEN_ORIGINS.get(token_origin or "", "an API token"), token=token)
    values: dict[str, str] = {}
    origin = ""
    for path in _config_files(env, home):
        if path.is_file():
            values, origin = _read_kaggle_json(path), str(path)
            break
    overrides = {k: env[v] for k, v in (("username", "KAGGLE_USERNAME"), ("key", "KAGGLE_KEY")) if env.get(v)}
    if overrides:
        values.update(overrides)
        origin = "KAGGLE_USERNAME/KAGGLE_KEY" + (f" over {origin}" if origin else "")
    if values.get("username") and values.get("key"):
        return Credentials(origin=origin, username=values["username"], key=values["key"])
    if origin:
        raise PipelineError(
            f"Kaggle credentials in {origin} lack a username or key; download a new kaggle.json from {TOKEN_HELP}"
        )
    raise PipelineError(
        "no Kaggle credentials: set KAGGLE_API_TOKEN (create one at "
        f"{TOKEN_HELP}), or KAGGLE_USERNAME and KAGGLE_KEY, or save kaggle.json as ~/.kaggle/kaggle.json (chmod 600)"
    )


_TOKEN_ORIGINS = {
    "KAGGLE_API_TOKEN": "KAGGLE_API_TOKEN",
    "access_token": "~/.kaggle/access_token",
    "KAGGLE_API_V1_TOKEN": "the notebook's KAGGLE_API_V1_TOKEN",
}


def api_origin() -> str:
    """scheme://host:port of the Kaggle API kagglesdk talks to (KAGGLE_API_ENVIRONMENT picks it)."""
    from kagglesdk.kaggle_env import get_endpoint, get_env

    try:
        return origin_of(get_endpoint(get_env()))
    except Exception as exc:  # kagglesdk raises a bare Exception for an unknown environment name
        raise PipelineError(f"KAGGLE_API_ENVIRONMENT: {exc}; unset it to use api.kaggle.com") from None


class ApiResponseRefused(requests.RequestException):
    """An API response this client refuses to read further (too large, a redirect, too slow)."""


class _BoundedAdapter(HTTPAdapter):
    """What kagglesdk's session sends through: a timeout on every call (kagglesdk sets none), the
    body read here with a size cap and a deadline (kagglesdk would read it whole), no redirects."""

    def __init__(
        self, timeout: tuple[float, float], max_bytes: int = MAX_API_RESPONSE_BYTES, seconds: float = API_DEADLINE
    ) -> None:
        super().__init__()
        self._timeout, self._max_bytes, self._seconds = timeout, max_bytes, seconds

    def send(self, request, stream=False, timeout=None, **kwargs):  # type: ignore[override]
        ends = time.monotonic() + self._seconds
        response = super().send(
            request, stream=True, timeout=timeout if timeout is not None else self._timeout, **kwargs
        )
        try:
            if response.is_redirect:
                raise ApiResponseRefused("the Kaggle API answered with a redirect, which is refused")
            body = bytearray()
            # Small reads: urllib3 decompresses each (a gzip bomb inflates at most ~1000x per read).
            for chunk in response.raw.stream(16 * 1024, decode_content=True):
                body.extend(chunk)
                if len(body) > self._max_bytes:
                    raise ApiResponseRefused(f"an API response larger than {self._max_bytes} bytes")
                if time.monotonic() > ends:
                    raise ApiResponseRefused(f"an API response still arriving after {self._seconds:g} s")
        except ApiResponseRefused:  # a RequestException, and so an OSError: before the clause below
            response.close()
            raise
        except urllib3.exceptions.ReadTimeoutError as exc:
            response.close()
            raise requests.exceptions.ReadTimeout(exc) from None
        except urllib3.exceptions.DecodeError as exc:
            response.close()
            raise requests.exceptions.ContentDecodingError(exc) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            response.close()
            raise requests.exceptions.ChunkedEncodingError(exc) from None
        except BaseException:
            response.close()
            raise
        response._content = bytes(body)  # what requests' .content/.json() read from here on
        response._content_consumed = True
        response.close()
        return response


def _bound_client_timeouts(client: object, policy: RetryPolicy) -> None:
    # Private attribute of kagglesdk 0.1.x; without it the listing would be read unbounded, so
    # a later version that renames it must fail loudly rather than lose the bounds.
    session = getattr(client.http_client(), "_session", None)  # type: ignore[attr-defined]
    if not isinstance(session, requests.Session):
        raise PipelineError(
            "this kagglesdk version hides its HTTP session; install the pinned kagglesdk (requirements.txt)"
        )
    adapter = _BoundedAdapter(
        (policy.connect_timeout, policy.read_timeout), seconds=min(API_DEADLINE, policy.read_timeout * 5)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 0  # and should a redirect get past the adapter, requests refuses it


@dataclass(frozen=True)
class _Context:
    """What every message of one Kaggle fetch needs."""

    model: str
    kernel: str
    credentials: Credentials

    @property
    def param(self) -> str:
        return f"models.{self.model}.source.kaggle.kernel"


def _status_of(exc: requests.HTTPError) -> int:
    """The HTTP status, or the `code` of Kaggle's JSON error body when the status says less."""
    response = exc.response
    status = response.status_code if response is not None else 0
    if status < 400 and response is not None:
        try:
            status = int(response.json().get("code", status))
        except (ValueError, AttributeError, TypeError, OverflowError, RecursionError):
            pass
    return status


def _listing_error(ctx: _Context, exc: requests.HTTPError, status: int) -> PipelineError:
    origin = ctx.credentials.origin
    if status == 401:
        return PipelineError(
            f"models.{ctx.model}: Kaggle rejected the credentials from {origin} (HTTP 401); check them, "
            f"or create a new API token at {TOKEN_HELP}"
        )
    if status == 403:
        return PipelineError(
            f"models.{ctx.model}: Kaggle denied access to kernel {ctx.kernel} with the credentials from {origin} "
            f"(HTTP 403): the credentials are rejected or the notebook is private; check them and {ctx.param}"
        )
    if status == 404:
        return PipelineError(
            f"models.{ctx.model}: Kaggle has no kernel {ctx.kernel} (HTTP 404); check {ctx.param} "
            "(owner/slug, as in the notebook's URL)"
        )
    detail = shown(str(exc.args[0]) if exc.args else "", 200)  # the server's text: redacted, escaped, short
    return PipelineError(
        f"models.{ctx.model}: the Kaggle API answered HTTP {status} for kernel {ctx.kernel} ({detail})"
    )


def _call_with_retries(ctx: _Context, call: Callable[[], T], policy: RetryPolicy) -> T:
    """Run one kagglesdk call, retrying connection errors, 429 and 5xx like a download."""

    def attempt() -> T:
        try:
            with deadline(policy.read_timeout * 5):  # a server trickling its headers cannot hold us forever
                return call()
        except DeadlineExceeded:
            raise TransientError("network", "the Kaggle API did not answer in time") from None
        except ApiResponseRefused as exc:
            raise PipelineError(
                f"models.{ctx.model}: refused the Kaggle API's answer while listing kernel {ctx.kernel}: {exc}; "
                "rerun, and check any proxy between here and Kaggle"
            ) from None
        except requests.HTTPError as exc:
            status = _status_of(exc)
            if status != 429 and not 500 <= status <= 599:
                raise _listing_error(ctx, exc, status) from None
            headers = exc.response.headers if exc.response is not None else {}
            kind = "rate" if status == 429 else "server"
            raise TransientError(
                kind, f"HTTP {status} from the Kaggle API", parse_retry_after(headers.get("Retry-After"))
            ) from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientError("network", f"cannot reach the Kaggle API: {describe_network_error(exc)}") from None
        except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            # A body that is not the JSON kagglesdk expects (a proxy's HTML page, a truncated reply).
            raise PipelineError(
                f"models.{ctx.model}: unexpected answer from the Kaggle API while listing kernel {ctx.kernel} "
                f"({type(exc).__name__}); rerun, and check any proxy between here and Kaggle"
            ) from None

    return with_retries(attempt, policy, f"models.{ctx.model}", f"listing kernel {ctx.kernel}")


def list_outputs(client: object, ctx: _Context, policy: RetryPolicy) -> dict[str, str]:
    """Every output file of the kernel, name -> download URL, all pages; unsafe names refused."""
    from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

    owner, slug = ctx.kernel.split("/", 1)
    files: dict[str, str] = {}
    token, seen = "", set()
    for _page in range(MAX_PAGES):
        request = ApiListKernelSessionOutputRequest()
        request.user_name, request.kernel_slug = owner, slug
        request.page_size, request.page_token = PAGE_SIZE, token
        api = client.kernels.kernels_api_client  # type: ignore[attr-defined]
        response = _call_with_retries(ctx, lambda: api.list_kernel_session_output(request), policy)
        items = response.files or []
        if not isinstance(items, list):
            raise PipelineError(
                f"models.{ctx.model}: the Kaggle API's listing of kernel {ctx.kernel} is not a list of files"
            )
        for item in items:
            name, url = getattr(item, "file_name", None), getattr(item, "url", None)
            try:
                check_name(name)  # type: ignore[arg-type]
            except UnsafeName as exc:
                raise PipelineError(
                    f"models.{ctx.model}: kernel {ctx.kernel} lists an unsafe output name, nothing was written: {exc}"
                ) from None
            if not isinstance(url, str):
                raise PipelineError(
                    f"models.{ctx.model}: kernel {ctx.kernel} lists '{shown(name, 120)}' without a download address"
                )
            if name in files and files[name] != url:
                raise PipelineError(
                    f"models.{ctx.model}: kernel {ctx.kernel} lists '{shown(name, 120)}' twice with different addresses"
                )
            files[name] = url
        token = response.next_page_token or ""
        if not isinstance(token, str):
            raise PipelineError(
                f"models.{ctx.model}: the Kaggle API's listing of kernel {ctx.kernel} has a malformed page token"
            )
        if not token:
            return files
        if token in seen:
            break
        seen.add(token)
    raise PipelineError(f"models.{ctx.model}: the output listing of kernel {ctx.kernel} does not end; rerun later")


def _download_error(ctx: _Context, file: str, exc: HttpStatusError) -> PipelineError:
    if exc.status in (401, 403):
        return PipelineError(
            f"models.{ctx.model}: {exc.host} refused the download of {file} from kernel {ctx.kernel} (HTTP {exc.status}); "
            f"the credentials from {ctx.credentials.origin} are rejected or the download link expired: check them and rerun"
        )
    if exc.status == 404:
        return PipelineError(
            f"models.{ctx.model}: {file} is listed by kernel {ctx.kernel} but its download is gone (HTTP 404); "
            "rerun, and if it persists check that the kernel's latest version still writes it"
        )
    return PipelineError(f"models.{ctx.model}: downloading {file} of kernel {ctx.kernel}: {exc}")


def fetch(
    folder: Path,
    name: str,
    spec: ModelSpec,
    pins: Mapping[str, Pin],
    policy: RetryPolicy = RetryPolicy(),
    progress: bool | None = None,
) -> dict[str, Pin]:
    """Download the files params select from the kernel's output into `folder`; return their pins."""
    from kagglesdk import KaggleClient

    assert spec.source.kaggle is not None  # params validation guarantees it for kind 'kaggle'
    kernel = spec.source.kaggle.kernel
    credentials = find_credentials()
    ctx = _Context(model=name, kernel=kernel, credentials=credentials)
    origin = api_origin()
    log.info("listing the output of Kaggle kernel %s (credentials from %s)", kernel, credentials.origin)
    with KaggleClient(env=None, verbose=False, user_agent=USER_AGENT, **credentials.client_arguments()) as client:
        _bound_client_timeouts(client, policy)
        listing = list_outputs(client, ctx, policy)
    missing = [f for f in spec.files if f not in listing]
    if missing:
        present = sorted(listing)[:20]
        listed = "[" + ", ".join(f"'{shown(item, 80)}'" for item in present) + "]"
        raise PipelineError(
            f"models.{name}.files: kernel {kernel}'s output has no {missing} (it has {listed}"
            f"{' ...' if len(listing) > len(present) else ''}); check models.{name}.files and {ctx.param}"
        )
    fetched: dict[str, Pin] = {}
    with requests.Session() as session:
        for file in spec.files:
            url = listing[file]
            if not url.startswith(("https://", "http://")):
                raise PipelineError(f"models.{name}: kernel {kernel} gives {file} a non-http(s) download address")
            job = Job(
                model=name,
                file=file,
                url=url,
                dest=resolve_inside(folder, file),
                max_bytes=spec.source.max_bytes,
                source=f"kaggle:{kernel}",
                expected=pins.get(file),
                auth=credentials.auth(),
                auth_origin=origin,
                max_seconds=spec.source.max_seconds,
            )
            log.info("downloading %s", file)
            try:
                fetched[file] = fetch_file(session, job, policy, progress)
            except HttpStatusError as exc:
                raise _download_error(ctx, file, exc) from None
    return fetched
