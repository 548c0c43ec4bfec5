"""Fake upstream servers on 127.0.0.1 for the source tests (stdlib http.server and threads only).

`FakeKaggle` answers what the real kagglesdk client sends when KAGGLE_API_ENVIRONMENT=TEST
(kagglesdk 0.1.37 hard-codes http://localhost:7777 for that environment):

    POST /api/v1/kernels.KernelsApiService/ListKernelSessionOutput
    Content-Type: application/json
    Authorization: Basic base64(username:key)  |  Bearer <api token>
    {"userName": "owner", "kernelSlug": "slug", "pageSize": 100, "pageToken": ""}

    200 application/json
    {"files": [{"fileName": "model/saved_model.pb", "url": "http://localhost:7777/kf/..."}],
     "log": "...", "nextPageToken": "<opaque, empty on the last page>"}

Errors come back as Kaggle's JSON `{"code": 404, "message": "..."}` with the same HTTP status.
Download URLs point back at this server (`GET /kf/<owner>/<slug>/<file>`), or, to test that
credentials never follow a redirect, redirect to a `FileServer` on another port.

`FileServer` serves registered paths and emulates Google Drive's confirmation flows. Both take
`Fault`s, consumed one per request of their path: an HTTP status (with Retry-After), a
connection reset mid-body, a truncated body (Content-Length larger than what is sent), a stall
mid-body (to kill a client mid-download), a request never answered, a redirect, or a chunked
body of unannounced size; and what a hostile server does: trickle the body a byte at a time,
send an endless body or a gzip bomb, echo the request's Authorization header in an error, use
a reason phrase with escape codes, or answer a body of its own choosing (`Fault.raw`).
"""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, unquote, urlsplit

KAGGLE_PORT = 7777
LIST_PATH = "/api/v1/kernels.KernelsApiService/ListKernelSessionOutput"


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for one request: status, drop, truncate, stall, hang, redirect or chunked."""

    kind: str
    status: int = 0
    retry_after: str | None = None
    after: int = 0
    location: str = ""
    extra: int = 1000
    body: bytes = b""
    content_type: str = "application/json"
    reason: str = ""

    @classmethod
    def http(cls, status: int, retry_after: str | None = None) -> "Fault":
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def raw(cls, body: bytes, status: int = 200, content_type: str = "application/json", reason: str = "") -> "Fault":
        """Answer exactly `body` (a listing of the server's choosing, an odd page)."""
        return cls("raw", status=status, body=body, content_type=content_type, reason=reason)


_BOMB: list[bytes] = []


def gzip_bomb() -> bytes:
    """About 250 KB of gzip that inflates to 256 MB of JSON-ish spaces (made once per process)."""
    if not _BOMB:
        _BOMB.append(gzip.compress(b"[" + b" " * (256 << 20), compresslevel=9))
    return _BOMB[0]


@dataclass(frozen=True)
class Seen:
    """A request as the server saw it (headers lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (after a size-limit abort, a kill) is expected, not news."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: "_Base"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def _record(self, body: bytes = b"") -> None:
        self.owner._record(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))

    def do_GET(self) -> None:
        self._record()
        self.owner.handle_get(self)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self._record(body)
        self.owner.handle_post(self, body)

    # Responses ---------------------------------------------------------------------------------
    def send_body(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, payload: object) -> None:
        self.send_body(status, json.dumps(payload).encode(), "application/json")

    def send_file(
        self,
        data: bytes,
        fault: Fault | None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Serve `data`, misbehaving as `fault` says."""
        if fault is None:
            self.send_body(200, data, content_type, headers)
            return
        if fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            body = json.dumps({"code": fault.status, "message": f"fake error {fault.status}"}).encode()
            self.send_body(fault.status, body, "application/json", extra)
            return
        if fault.kind == "raw":
            self.send_response(fault.status, fault.reason or None)
            self.send_header("Content-Type", fault.content_type)
            self.send_header("Content-Length", str(len(fault.body)))
            self.end_headers()
            self.wfile.write(fault.body)
            return
        if fault.kind == "echo":  # an error page that repeats the request's credentials back
            auth = self.headers.get("Authorization") or ""
            decoded = ""
            if auth.startswith("Basic "):
                decoded = base64.b64decode(auth[6:]).decode("utf-8", "replace")
            message = f"bad request; you sent Authorization: {auth} ({decoded}), key={quote(decoded.partition(':')[2], safe='')}"
            self.send_json(400, {"code": 400, "message": message})
            return
        if fault.kind == "trickle":  # headers at once, then one byte every `extra` ms
            data = fault.body or data
            self.send_response(200)
            self.send_header("Content-Type", fault.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for index in range(len(data)):
                    if self.owner.release.is_set():
                        break
                    self.wfile.write(data[index : index + 1])
                    self.wfile.flush()
                    time.sleep(fault.extra / 1000)
            except OSError:
                pass
            self.close_connection = True
            return
        if fault.kind == "endless":  # a chunked JSON body that never ends
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            piece = b'{"fileName": "f", "url": "http://x/y"},' * 1000
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (10, b'{"files":['))
                for _ in range(200_000):  # 8 GB at most, should the client never stop reading
                    if self.owner.release.is_set():
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            except OSError:
                pass
            self.close_connection = True
            return
        if fault.kind == "gzip-bomb":
            bomb = gzip_bomb()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(bomb)))
            self.end_headers()
            try:
                self.wfile.write(bomb)
            except OSError:
                pass
            return
        if fault.kind == "hang":  # accept the request, never answer: only a client timeout ends it
            self.owner.stalled.set()
            self.owner.release.wait(timeout=60)
            self.close_connection = True
            return
        if fault.kind == "redirect":
            self.send_response(302)
            self.send_header("Location", fault.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault.kind == "chunked":
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(data), 65536):
                piece = data[start : start + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        declared = len(data) + (fault.extra if fault.kind == "truncate" else 0)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(declared))
        self.end_headers()
        if fault.kind == "truncate":
            self.wfile.write(data)
            self.wfile.flush()
            self.close_connection = True  # a clean FIN, short of the announced length
            return
        self.wfile.write(data[: fault.after])
        self.wfile.flush()
        if fault.kind == "stall":
            self.owner.stalled.set()
            self.owner.release.wait(timeout=60)
        # A reset (RST), not a clean close: what a dropped connection looks like to the client.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class _Base:
    """Server thread, request log, and per-path fault queues shared by both fakes."""

    def __init__(self, port: int) -> None:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = _Server(("127.0.0.1", port), handler)
        self.port = self._server.server_address[1]
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        self._faults: dict[str, deque[Fault]] = {}
        self.stalled = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "_Base":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def fail(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests of `path` (without query)."""
        with self._lock:
            self._faults.setdefault(path, deque()).extend(faults)

    def next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.popleft() if queue else None

    def requests_to(self, path_prefix: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(path_prefix)]

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self._faults.clear()
        self.stalled.clear()
        self.release.clear()

    def handle_get(self, handler: _Handler) -> None:
        handler.send_json(404, {"code": 404, "message": "not found"})

    def handle_post(self, handler: _Handler, body: bytes) -> None:
        handler.send_json(404, {"code": 404, "message": "not found"})


class FakeKaggle(_Base):
    """The Kaggle API endpoints the pipeline uses, with real kagglesdk wire format."""

    def __init__(self, port: int = KAGGLE_PORT) -> None:
        super().__init__(port)
        self.kernels: dict[str, dict[str, bytes]] = {}
        self.extra_names: dict[str, list[str]] = {}
        self.basic: set[tuple[str, str]] = set()
        self.tokens: set[str] = set()
        self.page_cap = 100
        self.redirect_files_to: str | None = None

    @property
    def base(self) -> str:
        return f"http://localhost:{self.port}"

    def reset(self) -> None:
        super().reset()
        self.kernels.clear()
        self.extra_names.clear()
        self.basic.clear()
        self.tokens.clear()
        self.page_cap = 100
        self.redirect_files_to = None

    def publish(self, kernel: str, files: dict[str, bytes], *, extra_names: Iterable[str] = ()) -> None:
        """Make `files` the kernel's output; `extra_names` are listed too (e.g. traversal names)."""
        self.kernels[kernel] = dict(files)
        self.extra_names[kernel] = list(extra_names)

    def file_path(self, kernel: str, name: str) -> str:
        return f"/kf/{kernel}/{quote(name)}"

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if scheme == "Bearer":
            return value in self.tokens
        if scheme == "Basic":
            try:
                user, _, key = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return False
            return (user, key) in self.basic
        return False

    def handle_post(self, handler: _Handler, body: bytes) -> None:
        if handler.path != LIST_PATH:
            handler.send_json(404, {"code": 404, "message": f"unknown endpoint {handler.path}"})
            return
        if not self._authorized(handler.headers.get("Authorization")):
            handler.send_json(401, {"code": 401, "message": "Unauthenticated"})
            return
        fault = self.next_fault(LIST_PATH)
        if fault is not None:
            handler.send_file(b"", fault)
            return
        request = json.loads(body or b"{}")
        kernel = f"{request.get('userName', '')}/{request.get('kernelSlug', '')}"
        if kernel not in self.kernels:
            handler.send_json(404, {"code": 404, "message": "Kernel not found"})
            return
        names = sorted(self.kernels[kernel]) + self.extra_names.get(kernel, [])
        size = min(int(request.get("pageSize") or 20), self.page_cap)
        start = int(request.get("pageToken") or 0)
        page = names[start : start + size]
        following = start + size if start + size < len(names) else None
        handler.send_json(
            200,
            {
                "files": [{"fileName": name, "url": self.base + self.file_path(kernel, name)} for name in page],
                "log": '[{"data": "training done"}]',
                "nextPageToken": str(following) if following is not None else "",
            },
        )

    def handle_get(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        if not path.startswith("/kf/"):
            super().handle_get(handler)
            return
        owner, slug, name = path[len("/kf/") :].split("/", 2)
        data = self.kernels.get(f"{owner}/{slug}", {}).get(unquote(name))
        fault = self.next_fault(path)
        if data is None and fault is None:
            handler.send_json(404, {"code": 404, "message": "No such output file"})
            return
        if self.redirect_files_to and fault is None:
            fault = Fault("redirect", location=self.redirect_files_to + path)
        handler.send_file(data or b"", fault)


@dataclass
class _DriveFile:
    data: bytes
    flow: str
    uuid: str = field(default_factory=lambda: secrets.token_hex(8))
    token: str = field(default_factory=lambda: secrets.token_hex(4))


class FileServer(_Base):
    """Plain files by path, plus Google Drive's `/uc` and `/download` confirmation flows."""

    def __init__(self) -> None:
        super().__init__(0)
        self.files: dict[str, tuple[bytes, str]] = {}
        self.drive: dict[str, _DriveFile] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        self.files[path] = (data, content_type)
        return self.url(path)

    def serve_drive(self, file_id: str, data: bytes, flow: str = "form") -> str:
        """A Drive file behind a confirmation page: flow 'form' (2024 page), 'legacy', 'quota' or 'none'."""
        self.drive[file_id] = _DriveFile(data, flow)
        return self.url(f"/uc?export=download&id={file_id}")

    def handle_get(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path in ("/uc", "/download") and query.get("id") in self.drive:
            self._drive(handler, parts.path, query, self.drive[query["id"]])
            return
        if parts.path not in self.files:
            handler.send_body(404, b"<html>Not Found</html>", "text/html")
            return
        data, content_type = self.files[parts.path]
        handler.send_file(data, self.next_fault(parts.path), content_type=content_type)

    def _drive(self, handler: _Handler, path: str, query: dict[str, str], file: _DriveFile) -> None:
        attachment = {"Content-Disposition": f'attachment; filename="{query["id"]}.bin"'}
        confirmed = (path == "/download" and query.get("confirm") == "t" and query.get("uuid") == file.uuid) or (
            path == "/uc"
            and file.flow == "legacy"
            and query.get("confirm") == file.token
            and f"download_warning_{query['id']}={file.token}" in (handler.headers.get("Cookie") or "")
        )
        if confirmed or file.flow == "none":
            handler.send_file(file.data, self.next_fault(path), attachment)
            return
        handler.send_body(
            200, self._page(query["id"], file).encode(), "text/html; charset=utf-8", self._cookie(query["id"], file)
        )

    def _cookie(self, file_id: str, file: _DriveFile) -> dict[str, str]:
        if file.flow != "legacy":
            return {}
        return {"Set-Cookie": f"download_warning_{file_id}={file.token}; Path=/"}

    def _page(self, file_id: str, file: _DriveFile) -> str:
        title = "<html><head><title>Google Drive - Virus scan warning</title></head><body>"
        if file.flow == "quota":
            return (
                title + '<p class="uc-error-caption">Sorry, you can&#39;t view or download this file at this time.</p>'
                '<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. '
                "Please try accessing the file again later.</p></body></html>"
            )
        if file.flow == "legacy":
            return (
                title
                + f'<a id="uc-download-link" href="/uc?export=download&amp;confirm={file.token}&amp;id={file_id}">'
                "Download anyway</a></body></html>"
            )
        return (
            title + "<p>Google Drive can&#39;t scan this file for viruses.</p>"
            f'<form id="download-form" action="{self.base}/download" method="get">'
            '<input type="submit" id="uc-download-link" value="Download anyway"/>'
            f'<input type="hidden" name="id" value="{file_id}">'
            '<input type="hidden" name="export" value="download">'
            '<input type="hidden" name="confirm" value="t">'
            f'<input type="hidden" name="uuid" value="{file.uuid}"></form></body></html>'
        )


# Helpers shared by the source tests ---------------------------------------------------------------

_shared: dict[str, FakeKaggle] = {}


def shared_kaggle() -> FakeKaggle:
    """The one FakeKaggle of this test process (port 7777 can be bound once), started on first use.

    Raises OSError when the port is taken; callers turn that into a clear skip or failure.
    """
    if "server" not in _shared:
        _shared["server"] = FakeKaggle().start()
    server = _shared["server"]
    server.reset()
    return server


def isolate_kaggle_env(monkeypatch, home) -> None:
    """No real credentials, config or proxy of the developer's machine may reach a test."""
    import os

    for name in list(os.environ):
        if name.startswith("KAGGLE_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "TEST")


def isolated_kaggle(monkeypatch, home) -> FakeKaggle:
    """The process's FakeKaggle, reset, with the developer's Kaggle environment shut out.

    kagglesdk's TEST environment only calls port 7777: when it is busy the test fails under CI
    (a result must not silently vanish there) and is skipped on a developer's machine.
    """
    import os

    import pytest

    isolate_kaggle_env(monkeypatch, home)
    try:
        return shared_kaggle()
    except OSError as exc:
        message = f"127.0.0.1:{KAGGLE_PORT} is busy ({exc.strerror}); kagglesdk's TEST environment only calls that port"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
        raise  # unreachable: fail and skip raise
