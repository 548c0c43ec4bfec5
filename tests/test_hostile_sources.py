"""Hostile servers: credentials never leak, no answer is read unbounded, no failure is a traceback.

Against the fake Kaggle API (localhost:7777, the real kagglesdk client) and plain file servers:
- a redirect whose Location urllib and requests/urllib3 read as different hosts: the
  credentials (Basic and Bearer) never reach the host requests connects to;
- an API redirect, an API error echoing the Authorization header (raw, base64, URL-encoded):
  refused, and every form of the secret redacted;
- an endless and a gzip-bombed listing, a server trickling one byte at a time: refused within
  the cap and the deadline, as `python -m stages.fetch` under a 1 GiB address-space limit;
- Retry-After in non-ASCII digits, malformed redirect targets and ports, a listing whose file
  name is not a string or whose address cannot be read, a confirmation page moving https to
  http, a reason phrase with escape codes, zips with duplicate members, an unsupported
  version or hostile member names: each one clear, escaped line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import hostile
import pytest
import requests
import yaml
from conftest import copy_project
from fake_servers import KAGGLE_PORT, LIST_PATH, FakeKaggle, Fault, FileServer, isolated_kaggle

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec, merged_entry, read_params_file
from stages.core.untrusted import forget_secrets, scrub_url
from stages.sources import download, kaggle, url
from stages.sources.download import Job, RetryPolicy, fetch_file

REPO = Path(__file__).resolve().parents[1]
KERNEL = "medali1992/siamese-signature-verification-with-confidence"
CHECKPOINT = "convnet_best_loss.pt"
DATA = os.urandom(50_000)
USER, KEY = "alice", "k+3/b=9&x-0d5c81aa"  # a key whose URL-encoded form differs from the raw one
TOKEN = "KGAT_5f0c2e9d7a"
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def secret_forms(user: str = USER, key: str = KEY) -> list[str]:
    basic = base64.b64encode(f"{user}:{key}".encode()).decode()
    return [key, quote(key, safe=""), basic, basic.rstrip("=")]


@pytest.fixture(autouse=True)
def clean_secrets():
    yield
    forget_secrets()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeKaggle:
    server = isolated_kaggle(monkeypatch, tmp_path / "home")
    server.publish(KERNEL, {CHECKPOINT: DATA})
    server.basic.add((USER, KEY))
    server.tokens.add(TOKEN)
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    monkeypatch.setattr(download, "pause", lambda seconds: None)
    return server


def kaggle_spec(**source) -> ModelSpec:
    raw = merged_entry("siamese", REPO / "params.yaml")
    raw["source"] = {**raw["source"], "kind": "kaggle", **source}
    return ModelSpec.model_validate(raw)


def url_spec(urls: dict[str, str], **source) -> ModelSpec:
    raw = merged_entry("siamese", REPO / "params.yaml")
    raw["source"] = {"kind": "url", "seed": 1, "urls": urls, **source}
    return ModelSpec.model_validate(raw)


def one_line(message: str) -> None:
    assert "\n" not in message and not CONTROL.search(message), repr(message)
    assert len(message) < 2000, f"a {len(message)}-character message"


# ---- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_credentials_never_reach_a_host_the_location_spells_ambiguously(fake, monkeypatch, tmp_path, scheme) -> None:
    if scheme == "bearer":
        monkeypatch.setenv("KAGGLE_API_TOKEN", TOKEN)
    with FileServer() as other:
        # urllib reads this as localhost:7777 (the API's own origin); requests connects to `other`.
        fake.redirect_files_to = f"http://127.0.0.1:{other.port}\\@localhost:{KAGGLE_PORT}"
        location = fake.redirect_files_to + fake.file_path(KERNEL, CHECKPOINT)
        assert (urlsplit(location).hostname, urlsplit(location).port) == ("localhost", KAGGLE_PORT), (
            "the parsers disagree"
        )
        with pytest.raises(PipelineError):
            kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, progress=False)
        reached = other.requests_to("/")
        assert reached, "the download went to the host requests connects to"
        assert all("authorization" not in seen.headers for seen in reached), "credentials leaked to another host"
        assert "authorization" in fake.requests_to("/kf/")[0].headers, "the API's own origin still gets them"


def test_the_origin_is_read_as_the_http_library_connects() -> None:
    assert download.origin_of("http://127.0.0.1:9\\@localhost:7777/x") == "http://127.0.0.1:9"
    assert download.origin_of("HTTPS://Example.COM/x") == "https://example.com:443"
    for address in ("http://localhost:99999/x", "http://[::1/x", "ftp://host/x", "http:///x", "http://a:b:c/x"):
        with pytest.raises(ValueError):
            download.origin_of(address)


def test_an_api_redirect_is_refused_and_sends_nothing_there(fake, tmp_path) -> None:
    with FileServer() as other:
        fake.fail(LIST_PATH, Fault("redirect", location=f"{other.base}/steal"))
        with pytest.raises(PipelineError, match="refused the Kaggle API's answer .* redirect") as caught:
            kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, progress=False)
        one_line(str(caught.value))
        assert other.seen == []


def test_an_error_echoing_the_credentials_is_redacted_in_every_form(fake, tmp_path, caplog) -> None:
    fake.fail(LIST_PATH, Fault("echo"))
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(
            PipelineError, match=r"answered HTTP 400 .*you sent Authorization: Basic <redacted>"
        ) as caught:
            kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, progress=False)
    message = str(caught.value)
    one_line(message)
    for form in secret_forms():
        assert form not in message and form not in caplog.text


def test_the_stage_redacts_secrets_whatever_prints_them(tmp_path) -> None:
    """The stage's error reporter and log handler redact every registered form, as a last net."""
    project = copy_project(tmp_path / "project")
    script = (
        "import logging, sys\n"
        "from stages.core.cli import report_errors, _SafeRecord\n"
        "from stages.core.errors import PipelineError\n"
        "from stages.sources.kaggle import Credentials\n"
        "logging.basicConfig(stream=sys.stderr)\n"
        "[h.addFilter(_SafeRecord()) for h in logging.getLogger().handlers]\n"
        f"c = Credentials(origin='env', username={USER!r}, key={KEY!r})\n"
        f"logging.getLogger('x').warning('key %s basic %s', {KEY!r}, {secret_forms()[2]!r})\n"
        f"def fail(): raise PipelineError('server said ' + {secret_forms()[1]!r} + '\\nerror: forged line')\n"
        "sys.exit(report_errors(fail))\n"
    )
    outcome = hostile.run_limited([sys.executable, "-c", script], project, {"PYTHONPATH": str(project)})
    assert outcome.code == 1 and len(outcome.error_lines) == 1, outcome.stderr
    assert "<redacted>" in outcome.stderr
    for form in secret_forms():
        assert form not in outcome.stderr


# ---- bounded answers: caps and deadlines, as processes under the memory limit ----------------


def kaggle_project(tmp_path: Path, **source) -> tuple[Path, dict[str, str]]:
    project = copy_project(tmp_path / "project")
    params = read_params_file(project / "params.yaml")
    params["models"]["siamese"]["source"].update(kind="kaggle", **source)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        "KAGGLE_USERNAME": USER,
        "KAGGLE_KEY": KEY,
        "KAGGLE_API_ENVIRONMENT": "TEST",
        "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1",
        "HOME": str(tmp_path / "home"),
    }
    return project, env


@pytest.mark.parametrize(
    "fault, complaint",
    [
        (Fault("endless"), "larger than 8388608 bytes"),
        (Fault("gzip-bomb"), "larger than 8388608 bytes"),
    ],
)
def test_an_endless_or_bombed_listing_is_cut_at_the_cap(fake, tmp_path, fault, complaint) -> None:
    project, env = kaggle_project(tmp_path)
    fake.fail(LIST_PATH, fault)
    before = hostile.snapshot(project)
    outcome = hostile.stage(project, "fetch", "siamese", env=env, timeout=120)
    fake.release.set()
    assert outcome.code == 1 and len(outcome.error_lines) == 1, outcome.stderr[-3000:]
    assert complaint in outcome.error_lines[0] and "Traceback" not in outcome.stderr
    assert outcome.seconds < 60
    assert hostile.snapshot(project) == before


def test_a_trickling_download_meets_its_deadline(tmp_path) -> None:
    project = copy_project(tmp_path / "project")
    with FileServer() as server:
        server.fail("/slow.pt", Fault("trickle", extra=200))
        address = server.serve("/slow.pt", DATA)
        params = read_params_file(project / "params.yaml")
        params["models"]["siamese"]["source"].update(kind="url", urls={CHECKPOINT: address}, max_seconds=3)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        before = hostile.snapshot(project)
        outcome = hostile.stage(
            project, "fetch", "siamese", env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}, timeout=60
        )
        server.release.set()
    assert outcome.code == 1 and len(outcome.error_lines) == 1, outcome.stderr[-3000:]
    assert "took longer than its deadline of 3 s" in outcome.error_lines[0]
    assert outcome.seconds < 30
    assert hostile.snapshot(project) == before


def test_a_trickling_api_answer_meets_its_deadline(fake, tmp_path) -> None:
    fake.fail(
        LIST_PATH,
        Fault("trickle", extra=100, body=b'{"files": []}' * 100),
        Fault("trickle", extra=100, body=b"x" * 100),
    )
    policy = RetryPolicy(attempts=2, read_timeout=0.4, sleep=lambda seconds: None)
    with pytest.raises(PipelineError, match="did not answer in time") as caught:
        kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, policy, progress=False)
    fake.release.set()
    one_line(str(caught.value))


# ---- clear errors for odd answers ------------------------------------------------------------


@pytest.fixture
def policy(sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=2, base_delay=1.0, sleep=sleeps.append)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def job(address: str, dest: Path, **extra) -> Job:
    fields = {
        "model": "m",
        "file": "w.bin",
        "url": address,
        "dest": dest,
        "max_bytes": 10_000_000,
        "source": scrub_url(address),
    }
    return Job(**{**fields, **extra})


def fetch(address: str, dest: Path, policy: RetryPolicy, **extra):
    with requests.Session() as session:
        return fetch_file(session, job(address, dest, **extra), policy, progress=False)


@pytest.mark.parametrize("value", ["\u00b2", "\u0661\u0662", "9" * 400, "Mon, 99 Foo 2024 99:99:99 GMT", "\x00"])
def test_odd_retry_after_values_mean_no_advice(server, tmp_path, policy, sleeps, value) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.http(429, retry_after=value))
    assert fetch(address, tmp_path / "w.bin", policy).size == len(DATA)
    assert sleeps == [1.0], "an unreadable Retry-After falls back to the backoff"


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:99999/x",
        "http://[::1/x",
        "http://a:b:c/x",
        "http://ex ample.com/x",
        "http://-a-.example/x",
        "gopher://example.com/x",
        "http://%e3%80%82l/x",
    ],
)
def test_a_malformed_redirect_is_one_clear_line(server, tmp_path, policy, location) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault("redirect", location=location))
    with pytest.raises(PipelineError, match="refusing a redirect") as caught:
        fetch(address, tmp_path / "w.bin", policy)
    one_line(str(caught.value))
    assert list(tmp_path.iterdir()) == []


def test_a_reason_phrase_with_escape_codes_is_escaped(server, tmp_path, policy) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.raw(b"", status=418, reason="I'm a \x1b[31mteapot\x1b[0m" + "!" * 5000))
    with pytest.raises(download.HttpStatusError, match=r"HTTP 418 \(I'm a \\x1b\[31mteapot") as caught:
        fetch(address, tmp_path / "w.bin", policy)
    one_line(str(caught.value))


@pytest.mark.parametrize(
    "item, complaint",
    [
        ({"fileName": 5, "url": "http://localhost:7777/kf/x"}, "it is a int, not a string"),
        ({"fileName": ["a"], "url": "http://localhost:7777/kf/x"}, "it is a list, not a string"),
        ({"fileName": "\x1b[31mx\ny", "url": "http://localhost:7777/kf/x"}, r"'\\x1b\[31mx\\ny'"),
        ({"fileName": CHECKPOINT, "url": None}, r"without a download address|non-http\(s\) download address"),
        ({"fileName": CHECKPOINT, "url": "http://localhost:99999/kf/x"}, "is not a valid download address"),
        ({"fileName": CHECKPOINT, "url": "http://[::1/kf/x"}, "is not a valid download address"),
    ],
)
def test_an_odd_listing_is_one_clear_line(fake, tmp_path, item, complaint) -> None:
    fake.fail(LIST_PATH, Fault.raw(json.dumps({"files": [item], "nextPageToken": ""}).encode()))
    with pytest.raises(PipelineError) as caught:
        kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, progress=False)
    assert re.search(complaint, str(caught.value)), str(caught.value)
    one_line(str(caught.value))
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_a_listing_that_is_not_json_objects(fake, tmp_path) -> None:
    for body in (
        b'{"files": 5}',
        b'{"files": [7], "nextPageToken": ""}',
        b"[" * 100_000,
        b'{"files": [], "nextPageToken": 3}',
    ):
        fake.reset()
        fake.publish(KERNEL, {CHECKPOINT: DATA})
        fake.basic.add((USER, KEY))
        fake.fail(LIST_PATH, Fault.raw(body))
        with pytest.raises(PipelineError) as caught:
            kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, progress=False)
        one_line(str(caught.value))


def fake_response(address: str, body: bytes, content_type: str = "text/html; charset=utf-8") -> requests.Response:
    response = requests.Response()
    response.status_code, response.url, response._content = 200, address, body
    response._content_consumed = True
    response.headers["Content-Type"] = content_type
    return response


@pytest.mark.parametrize(
    "action, complaint",
    [
        ("http://drive.usercontent.google.com/download", "refusing a confirmation page from https to plain http"),
        ("https://drive.usercontent.google.com:99999/download", "unreadable address|refusing a confirmation page"),
        ("javascript:alert(1)", "refusing a confirmation page"),
    ],
)
def test_a_confirmation_page_never_moves_https_to_http(monkeypatch, tmp_path, policy, action, complaint) -> None:
    start = "https://drive.google.com/uc?export=download&id=1AbC"
    page = (
        f'<html><form id="download-form" action="{action}" method="get">'
        '<input type="hidden" name="id" value="1AbC"><input type="hidden" name="confirm" value="t"></form></html>'
    )
    sent: list[str] = []

    def fake_get(session, address, job, policy):
        sent.append(address)
        return fake_response(address, page.encode())

    monkeypatch.setattr(download, "_get", fake_get)
    drive_job = job(start, tmp_path / "w.bin", interstitial=url._interstitial("m", "w.bin"))
    with pytest.raises(PipelineError) as caught, requests.Session() as session:
        download._open(session, drive_job, policy)
    assert re.search(complaint, str(caught.value)), str(caught.value)
    one_line(str(caught.value))
    assert sent == [start], "nothing is requested from the page's address"


def test_a_page_in_an_unknown_charset_is_still_read(server, tmp_path) -> None:
    address = server.serve("/page.html", b"<html>Sign in</html>", content_type="text/html; charset=x-no-such-charset")
    with pytest.raises(PipelineError, match="sent an HTML page instead of the file"):
        url.fetch(tmp_path, "siamese", url_spec({CHECKPOINT: address}), {}, RetryPolicy(attempts=1), progress=False)


# ---- zip archives (`#member` addresses) --------------------------------------------------------


def archive_fetch(server: FileServer, folder: Path, archive: bytes, member: str):
    address = server.serve("/models.zip", archive)
    spec = url_spec({CHECKPOINT: f"{address}#{member}"})
    return url.fetch(folder, "siamese", spec, {}, RetryPolicy(attempts=1), progress=False)


def test_an_archive_naming_the_member_twice_is_refused(server, tmp_path) -> None:
    archive = hostile.zip_archive([("signet.pkl", b"first copy, what unzip shows"), ("signet.pkl", b"second copy")])
    with pytest.raises(PipelineError, match="lists signet.pkl more than once") as caught:
        archive_fetch(server, tmp_path, archive, "signet.pkl")
    one_line(str(caught.value))
    assert list(tmp_path.iterdir()) == []


def test_an_archive_of_an_unsupported_version_is_one_line(server, tmp_path) -> None:
    archive = hostile.zip_archive([("signet.pkl", DATA)], extract_version=64)
    with pytest.raises(
        PipelineError, match=r"not a readable zip archive \(NotImplementedError: zip file version 6\.4\)"
    ) as caught:
        archive_fetch(server, tmp_path, archive, "signet.pkl")
    one_line(str(caught.value))
    assert list(tmp_path.iterdir()) == []


def test_hostile_member_names_are_escaped_and_short(server, tmp_path) -> None:
    names = ["\x1b[2J\x1b[31mred", "line\nerror: forged", "\u202egnp.pkl", "n" * 60_000]
    archive = hostile.zip_archive([(name, b"x") for name in names])
    with pytest.raises(PipelineError, match="has no member 'signet.pkl'") as caught:
        archive_fetch(server, tmp_path, archive, "signet.pkl")
    message = str(caught.value)
    one_line(message)
    assert "\\x1b[2J" in message and "\\n" in message and "\\u202e" in message and "characters in all" in message


def test_a_damaged_archive_through_the_stage_is_one_line(tmp_path) -> None:
    """As a process under the memory limit: exit 1, one error line, the previous data kept."""
    project = copy_project(tmp_path / "project")
    previous = project / "data" / "raw" / "signet" / "signet.pkl"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"previous good bytes")
    with FileServer() as server:
        address = server.serve("/signet_models.zip", hostile.zip_archive([("signet.pkl", DATA)], extract_version=64))
        params = read_params_file(project / "params.yaml")
        params["models"]["signet"]["source"].update(kind="url", urls={"signet.pkl": f"{address}#signet.pkl"})
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        before = hostile.snapshot(project)
        outcome = hostile.stage(project, "fetch", "signet", env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert outcome.code == 1 and len(outcome.error_lines) == 1, outcome.stderr[-3000:]
    assert "zip file version 6.4" in outcome.error_lines[0] and "Traceback" not in outcome.stderr
    assert hostile.snapshot(project) == before
    assert hashlib.sha256(previous.read_bytes()).hexdigest() == hashlib.sha256(b"previous good bytes").hexdigest()


# ---- the same hostile answers through `python -m stages.fetch`, each under the limits ----------

SERVER_CASES = {
    # case: (fault on the file's path, regex of the one error line)
    "redirect-bad-port": (Fault("redirect", location="http://127.0.0.1:99999/x"), "refusing a redirect"),
    "redirect-bad-ipv6": (Fault("redirect", location="http://[::1/x"), "refusing a redirect"),
    "redirect-two-ports": (Fault("redirect", location="http://a:b:c/x"), "refusing a redirect"),
    "redirect-bad-host": (Fault("redirect", location="http://%e3%80%82l/x"), "refusing a redirect"),
    "redirect-other-scheme": (
        Fault("redirect", location="file:///etc/passwd"),
        "refusing a redirect .* to a file address",
    ),
    "redirect-escapes": (
        Fault("redirect", location="http://\x1b\x07\x85" + "z" * 10_000 + "/x"),
        r"refusing a redirect .*\\x1b\\x07\\x85zzz.*characters in all",
    ),
    "reason-escapes": (
        Fault.raw(b"", status=418, reason="I'm a \x1b[31mteapot\x1b[0m" + "!" * 5000),
        r"HTTP 418 \(I'm a \\x1b\[31mteapot",
    ),
    "html-page": (
        Fault.raw(b"<html>\x1b[2J sign in</html>", content_type="text/html"),
        "sent an HTML page instead of the file",
    ),
}
LISTING_CASES = {
    "name-not-a-string": (
        {"files": [{"fileName": 5, "url": "http://localhost:7777/kf/x"}], "nextPageToken": ""},
        "it is a int",
    ),
    "name-escapes": (
        {"files": [{"fileName": "\x1b[31m\nerror: forged", "url": "http://x/y"}], "nextPageToken": ""},
        r"'\\x1b\[31m\\nerror: forged'",
    ),
    "url-bad-port": (
        {"files": [{"fileName": "signet.pkl", "url": "http://localhost:99999/kf/x"}], "nextPageToken": ""},
        "is not a valid download address",
    ),
    "files-not-a-list": ({"files": 5}, "unexpected answer from the Kaggle API|not a list of files"),
    "deep-json": (None, "unexpected answer from the Kaggle API"),
    "echo": ("echo", "answered HTTP 400 .*Basic <redacted>"),
}


def signet_project(root: Path, source: dict) -> Path:
    project = copy_project(root / "project")
    previous = project / "data" / "raw" / "signet" / "signet.pkl"
    previous.parent.mkdir(parents=True)
    previous.write_bytes(b"previous good bytes")
    params = read_params_file(project / "params.yaml")
    params["models"]["signet"]["source"].update(source)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def check_stage_refusal(case: str, outcome, before: dict, after: dict, expect: str) -> None:
    where = f"{case}:\n{outcome.stderr[-2000:]}"
    assert outcome.code == 1 and len(outcome.error_lines) == 1 and "Traceback" not in outcome.stderr, where
    assert re.search(expect, outcome.error_lines[0]), where
    one_line(outcome.error_lines[0][len("error: ") :])
    assert after == before, f"{case}: files changed"


def test_hostile_file_servers_through_the_stage(tmp_path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    env = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with FileServer() as server:

        def one(item):
            case, (fault, expect) = item
            address = server.serve(f"/{case}/signet.pkl", DATA)
            server.fail(f"/{case}/signet.pkl", *[fault] * 5)
            project = signet_project(tmp_path / case, {"kind": "url", "urls": {"signet.pkl": address}})
            before = hostile.snapshot(tmp_path / case)
            outcome = hostile.stage(project, "fetch", "signet", env=env, timeout=120)
            return case, (outcome, before, hostile.snapshot(tmp_path / case), expect)

        with ThreadPoolExecutor(3) as pool:
            results = dict(pool.map(one, SERVER_CASES.items()))
    for case, (outcome, before, after, expect) in results.items():
        check_stage_refusal(case, outcome, before, after, expect)


@pytest.mark.parametrize("case", list(LISTING_CASES))
def test_hostile_listings_through_the_stage(fake, tmp_path, case) -> None:
    body, expect = LISTING_CASES[case]
    fake.publish("owner/kernel", {"signet.pkl": DATA})
    if body == "echo":
        fake.fail(LIST_PATH, Fault("echo"))
    else:
        raw = b"[" * 200_000 if body is None else json.dumps(body).encode()
        fake.fail(LIST_PATH, *[Fault.raw(raw)] * 5)
    project = signet_project(tmp_path, {"kind": "kaggle", "kaggle": {"kernel": "owner/kernel"}})
    env = {
        "KAGGLE_USERNAME": USER,
        "KAGGLE_KEY": KEY,
        "KAGGLE_API_ENVIRONMENT": "TEST",
        "HOME": str(tmp_path / "home"),
        "NO_PROXY": "localhost,127.0.0.1",
        "no_proxy": "localhost,127.0.0.1",
    }
    before = hostile.snapshot(tmp_path)
    outcome = hostile.stage(project, "fetch", "signet", env=env, timeout=120)
    check_stage_refusal(case, outcome, before, hostile.snapshot(tmp_path), expect)
    for form in secret_forms():
        assert form not in outcome.stderr
