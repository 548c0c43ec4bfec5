"""`source: {kind: url}`: one HTTP(S) address per file, e.g. Google Drive links or a mirror.

Each address in `source.urls` is downloaded by the shared downloader (streamed, bounded,
retried, atomic, pinned). An address ending in `#member` names one file inside a zip archive
(the sigver_wiwd pickles are published that way; see stages/sources/archive.py). Google Drive needs two extra steps, both handled here:
- share links (`https://drive.google.com/file/d/ID/view`, `/open?id=ID`) become the download
  endpoint `https://drive.google.com/uc?export=download&id=ID`;
- files too large for Drive's virus scan answer with an HTML confirmation page instead of the
  bytes: the newer page holds a `download-form` (action drive.usercontent.google.com/download,
  hidden `id`, `export`, `confirm`, `uuid`), the older one a `/uc?export=download&confirm=TOKEN`
  link and a `download_warning_*` cookie. The page is read (bounded) and its form submitted.
An HTML page that is neither (quota exceeded, sign-in wall, a plain web page) is an error that
says why; it never ends up as a model file. url sources send no credentials anywhere.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec
from stages.core.untrusted import scrub_url, shown
from stages.sources.archive import extract_member, split_member
from stages.sources.download import HttpStatusError, Job, RetryPolicy, fetch_file, host_of
from stages.sources.pins import Pin, mismatch_message
from stages.sources.safe_paths import resolve_inside

log = logging.getLogger(__name__)

DRIVE_HOSTS = frozenset({"drive.google.com", "docs.google.com"})
DRIVE_DOWNLOAD = "https://drive.google.com/uc"
MAX_PAGE_BYTES = 1 << 20
_SHARE_PATH = re.compile(r"^/file(?:/u/\d+)?/d/([A-Za-z0-9_-]+)")


def direct_url(url: str) -> str:
    """A Google Drive share link as its download address; any other URL unchanged."""
    parts = urlsplit(url)
    if (parts.hostname or "").lower() not in DRIVE_HOSTS:
        return url
    query = dict(parse_qsl(parts.query))
    match = _SHARE_PATH.match(parts.path)
    file_id = match.group(1) if match else query.get("id") if parts.path in ("/open", "/uc") else None
    if not file_id:
        return url
    params = {"export": "download", "id": file_id}
    if query.get("resourcekey"):  # older shared files need it to be downloadable at all
        params["resourcekey"] = query["resourcekey"]
    return f"{DRIVE_DOWNLOAD}?{urlencode(params)}"


class _PageParser(HTMLParser):
    """The parts of a Drive interstitial page that matter: forms, confirm links, error captions."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self.links: list[str] = []
        self.errors: list[str] = []
        self._form: dict | None = None
        self._error_depth = 0
        self._error_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {
                "id": attributes.get("id", ""),
                "action": attributes.get("action", ""),
                "method": attributes.get("method", "get").lower(),
                "inputs": [],
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and attributes.get("type", "").lower() == "hidden":
            if attributes.get("name"):
                self._form["inputs"].append((attributes["name"], attributes.get("value", "")))
        elif tag == "a" and "confirm=" in attributes.get("href", ""):
            self.links.append(attributes["href"])
        elif tag == "p" and "uc-error-subcaption" in attributes.get("class", ""):
            self._error_depth = 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "p" and self._error_depth:
            self._error_depth = 0
            self.errors.append(" ".join("".join(self._error_text).split()))
            self._error_text = []

    def handle_data(self, data: str) -> None:
        if self._error_depth:
            self._error_text.append(data)


def _read_page(response: requests.Response) -> str:
    """Up to MAX_PAGE_BYTES of an HTML answer: enough for any confirmation page, bounded for a hostile one."""
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body.extend(chunk)
        if len(body) >= MAX_PAGE_BYTES:
            break
    try:
        return body[:MAX_PAGE_BYTES].decode(response.encoding or "utf-8", errors="replace")
    except LookupError:  # a charset the server made up
        return body[:MAX_PAGE_BYTES].decode("utf-8", errors="replace")


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update(extra)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def confirmation_url(page: str, base_url: str, cookies: Mapping[str, str], model: str, file: str) -> str:
    """Where Drive's confirmation page says the bytes are, or PipelineError saying why none is.

    The address is the page's to choose: the downloader checks it like a redirect (http(s)
    only, never from https to http, read unambiguously) before anything is sent there.
    """
    parser = _PageParser()
    try:
        parser.feed(page)
        parser.close()
    except (AssertionError, ValueError):  # html.parser on a page crafted to confuse it: read what it got
        pass
    what = f"models.{model}: {file}"
    try:
        for form in parser.forms:
            if form["id"] == "download-form" and form["method"] == "get":
                return _with_query(urljoin(base_url, form["action"] or base_url), dict(form["inputs"]))
        for href in parser.links:
            if "export=download" in href:
                return urljoin(base_url, href)
    except ValueError:  # a form action or link whose host or port cannot be read
        raise PipelineError(
            f"{what}: {host_of(base_url)} sent a confirmation page with an unreadable address; refused"
        ) from None
    warning = next((value for name, value in cookies.items() if name.startswith("download_warning")), None)
    if warning:
        return _with_query(base_url, {"confirm": warning})
    where = f"models.{model}.source.urls"
    if parser.errors:
        raise PipelineError(
            f"{what}: Google Drive refuses the download: {shown(parser.errors[0], 300)}; wait (the quota resets within "
            f"a day) or point {where} at a mirror"
        )
    raise PipelineError(
        f"{what}: {host_of(base_url)} sent an HTML page instead of the file; the address must be a direct download "
        f"(on Google Drive: shared with 'Anyone with the link'); check {where}"
    )


def _interstitial(model: str, file: str) -> Callable[[requests.Response], str | None]:
    """The downloader's hook: None for a file response, the next URL for a confirmation page."""

    def handle(response: requests.Response) -> str | None:
        if "text/html" not in response.headers.get("Content-Type", "").lower():
            return None
        if "attachment" in response.headers.get("Content-Disposition", "").lower():
            return None
        return confirmation_url(_read_page(response), response.url, response.cookies.get_dict(), model, file)

    return handle


def _status_error(name: str, file: str, address: str, exc: HttpStatusError) -> PipelineError:
    where = f"models.{name}.source.urls"
    shown_address = shown(scrub_url(address), 200)
    if exc.status in (401, 403):
        return PipelineError(
            f"models.{name}: {exc.host} refused {file} (HTTP {exc.status}): the link is not public (on Google Drive: "
            f"share it with 'Anyone with the link'); url sources send no credentials; check {where} ({shown_address})"
        )
    if exc.status in (404, 410):
        return PipelineError(f"models.{name}: {file} is not at {shown_address} (HTTP {exc.status}); check {where}")
    return PipelineError(f"models.{name}: {file} from {shown_address}: {exc}")


def fetch(
    folder: Path,
    name: str,
    spec: ModelSpec,
    pins: Mapping[str, Pin],
    policy: RetryPolicy = RetryPolicy(),
    progress: bool | None = None,
) -> dict[str, Pin]:
    """Download every file of params from its address in `source.urls`; return their pins."""
    fetched: dict[str, Pin] = {}
    with requests.Session() as session:
        for file in spec.files:
            address, member = split_member(spec.source.urls[file])
            dest = resolve_inside(folder, file)
            if member is None:
                fetched[file] = _download(session, name, file, address, dest, spec, pins.get(file), policy, progress)
                continue
            # The archive goes to a scratch folder beside the staging folder, never into the layout.
            with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{name}.archive.") as scratch:
                archive = Path(scratch) / "archive.zip"
                _download(session, name, file, address, archive, spec, None, policy, progress, archive=True)
                log.info("extracting %s from the archive", member)
                pin = extract_member(
                    archive, member, dest, spec.source.max_bytes, f"models.{name}: {file}", scrub_url(address)
                )
            if file in pins and not pins[file].same_bytes(pin):
                dest.unlink()
                raise PipelineError(mismatch_message(name, file, pin, pins[file]))
            fetched[file] = pin
    return fetched


def _download(
    session: requests.Session,
    name: str,
    file: str,
    address: str,
    dest: Path,
    spec: ModelSpec,
    expected: Pin | None,
    policy: RetryPolicy,
    progress: bool | None,
    archive: bool = False,
) -> Pin:
    """One address to `dest` through the shared downloader, with Drive pages and HTTP errors explained."""
    shown_address = scrub_url(address)
    if urlsplit(address).scheme == "http" and expected is None:
        log.warning(
            "models.%s: %s comes over plain http with no pin yet: its pin will only be as good as this network",
            name,
            file,
        )
    job = Job(
        model=name,
        file=file,
        url=direct_url(address),
        dest=dest,
        max_bytes=spec.source.max_archive_bytes if archive else spec.source.max_bytes,
        limit_param="max_archive_bytes" if archive else "max_bytes",
        source=shown_address,
        expected=expected,
        max_seconds=spec.source.max_seconds,
        interstitial=_interstitial(name, file),
    )
    log.info("downloading %s from %s", file, host_of(address))
    try:
        return fetch_file(session, job, policy, progress)
    except HttpStatusError as exc:
        raise _status_error(name, file, address, exc) from None
