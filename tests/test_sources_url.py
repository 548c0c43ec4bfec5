"""The shared downloader and `source: url`, against a real HTTP server on 127.0.0.1 with faults.

Every scenario of issue 3 for plain downloads: success, 401, 404, 429 then success (Retry-After
honoured), 5xx, connection dropped mid-body, truncated body, bytes that differ from the pin,
over the size limit (announced or not), disk full, network down, redirects (credentials never
follow to another origin), and Google Drive's confirmation pages (2024 form, legacy cookie,
quota exceeded, a plain HTML page).
"""

from __future__ import annotations

import errno
import hashlib
import os
import socket
from pathlib import Path

import pytest
import requests
from fake_servers import Fault, FileServer
from requests.auth import HTTPBasicAuth

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec, merged_entry
from stages.core.untrusted import scrub_url
from stages.sources import download, url
from stages.sources.download import Job, RetryPolicy, TooLarge, fetch_file, origin_of
from stages.sources.pins import Pin

REPO = Path(__file__).resolve().parents[1]
DATA = os.urandom(700_000)  # spans several 256 KiB chunks
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy configured on the test machine must not sit between the client and 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def policy(sleeps: list[float]) -> RetryPolicy:
    return RetryPolicy(attempts=3, base_delay=1.0, max_delay=30.0, sleep=sleeps.append)


def job(address: str, dest: Path, **extra) -> Job:
    fields = {
        "model": "m",
        "file": "weights.bin",
        "url": address,
        "dest": dest,
        "max_bytes": 10_000_000,
        "source": scrub_url(address),
    }
    return Job(**{**fields, **extra})


def fetch(address: str, dest: Path, policy: RetryPolicy, **extra) -> Pin:
    with requests.Session() as session:
        return fetch_file(session, job(address, dest, **extra), policy, progress=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_success_streams_hashes_and_renames(server, tmp_path, policy, capsys) -> None:
    address = server.serve("/w.bin", DATA)
    with requests.Session() as session:
        pin = fetch_file(session, job(address, tmp_path / "sub" / "w.bin"), policy, progress=True)
    assert (tmp_path / "sub" / "w.bin").read_bytes() == DATA
    assert (pin.sha256, pin.size, pin.source) == (SHA, len(DATA), address)
    assert leftovers(tmp_path / "sub") == []
    progress = capsys.readouterr().err
    assert "weights.bin" in progress and "/w.bin" not in progress, "the bar names the file, never the address"


@pytest.mark.parametrize("status", [401, 403, 404])
def test_final_statuses_fail_at_once(server, tmp_path, policy, sleeps, status) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.http(status))
    with pytest.raises(download.HttpStatusError) as caught:
        fetch(address, tmp_path / "w.bin", policy)
    assert caught.value.status == status and f"HTTP {status}" in str(caught.value)
    assert len(server.requests_to("/w.bin")) == 1 and sleeps == []
    assert not (tmp_path / "w.bin").exists()


def test_429_then_success_honours_retry_after(server, tmp_path, policy, sleeps) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.http(429, retry_after="7"))
    assert fetch(address, tmp_path / "w.bin", policy).sha256 == SHA
    assert sleeps == [7.0]


def test_retry_after_is_capped_and_5xx_backs_off_exponentially(server, tmp_path, policy, sleeps) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.http(429, retry_after="3600"), Fault.http(503))
    assert fetch(address, tmp_path / "w.bin", policy).sha256 == SHA
    assert sleeps == [30.0, 2.0]


def test_429_until_the_attempts_run_out(server, tmp_path, policy, sleeps) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", *[Fault.http(429, retry_after="1")] * 3)
    with pytest.raises(PipelineError, match=r"failed 3 times, last: HTTP 429 .*wait a few minutes"):
        fetch(address, tmp_path / "w.bin", policy)
    assert len(server.requests_to("/w.bin")) == 3 and sleeps == [1.0, 1.0]


@pytest.mark.parametrize("fault", [Fault("drop", after=300_000), Fault("truncate")], ids=["dropped", "truncated"])
def test_a_cut_body_is_retried_and_never_lands(server, tmp_path, policy, fault) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", fault)
    assert fetch(address, tmp_path / "w.bin", policy).sha256 == SHA
    assert len(server.requests_to("/w.bin")) == 2
    server.fail("/w.bin", *[fault] * 3)
    (tmp_path / "w.bin").write_bytes(b"previous good bytes")
    with pytest.raises(PipelineError, match="keeps dropping"):
        fetch(address, tmp_path / "w.bin", policy)
    assert (tmp_path / "w.bin").read_bytes() == b"previous good bytes"
    assert leftovers(tmp_path) == []


def test_bytes_that_differ_from_the_pin_fail_with_both_hashes(server, tmp_path, policy) -> None:
    address = server.serve("/w.bin", DATA)
    (tmp_path / "w.bin").write_bytes(b"previous good bytes")
    pinned = Pin(sha256="ab" * 32, size=len(DATA), source="https://mirror.example/w.bin")
    with pytest.raises(PipelineError) as caught:
        fetch(address, tmp_path / "w.bin", policy, expected=pinned)
    message = str(caught.value)
    assert SHA in message and "ab" * 32 in message and "\n" not in message
    assert (tmp_path / "w.bin").read_bytes() == b"previous good bytes" and leftovers(tmp_path) == []
    assert len(server.requests_to("/w.bin")) == 1, "a pin mismatch is not retried"


def test_an_announced_size_over_the_limit_fails_before_reading(server, tmp_path, policy) -> None:
    address = server.serve("/w.bin", DATA)
    with pytest.raises(TooLarge, match=r"announces 700000 bytes.*raise models\.m\.source\.max_bytes"):
        fetch(address, tmp_path / "w.bin", policy, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_an_unannounced_body_is_cut_at_the_limit(server, tmp_path, policy) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault("chunked"))
    with pytest.raises(TooLarge, match="the body grew over the limit of 300000 bytes"):
        fetch(address, tmp_path / "w.bin", policy, max_bytes=300_000)
    assert list(tmp_path.iterdir()) == []
    server.fail("/w.bin", Fault("chunked"))
    assert fetch(address, tmp_path / "w.bin", policy).sha256 == SHA, "chunked bodies within the limit are fine"


def test_disk_full_is_one_line_and_leaves_nothing(server, tmp_path, policy, monkeypatch) -> None:
    address = server.serve("/w.bin", DATA)
    real_fdopen = os.fdopen

    class FullDisk:
        """A file whose disk fills up after the first chunk."""

        def __init__(self, handle) -> None:
            self._handle, self._written = handle, 0

        def write(self, data: bytes) -> int:
            if self._written:
                raise OSError(errno.ENOSPC, "No space left on device")
            self._written += len(data)
            return self._handle.write(data)

        def __getattr__(self, name):
            return getattr(self._handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self._handle.close()

    monkeypatch.setattr(download.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(download.DiskError, match=r"disk full while writing into .*free some space"):
        fetch(address, tmp_path / "w.bin", policy)
    assert list(tmp_path.iterdir()) == []


def test_network_down_is_retried_then_explained(tmp_path, policy, sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(
        PipelineError, match=rf"cannot reach 127\.0\.0\.1:{port}: connection refused; check the network"
    ):
        fetch(f"http://127.0.0.1:{port}/w.bin", tmp_path / "w.bin", policy)
    assert sleeps == [1.0, 2.0]


def test_credentials_never_follow_a_redirect_to_another_origin(server, tmp_path, policy) -> None:
    with FileServer() as other:
        target = other.serve("/cdn/w.bin", DATA)
        address = server.serve("/w.bin", DATA)
        server.fail("/w.bin", Fault("redirect", location=target))
        auth = HTTPBasicAuth("alice", "s3cret")
        assert fetch(address, tmp_path / "w.bin", policy, auth=auth, auth_origin=origin_of(address)).sha256 == SHA
        assert "authorization" in server.requests_to("/w.bin")[0].headers
        assert "authorization" not in other.requests_to("/cdn/w.bin")[0].headers


def test_redirects_never_downgrade_to_plain_http() -> None:
    response = requests.Response()
    response.headers["Location"] = "http://mirror.example/w.bin"
    with pytest.raises(PipelineError, match="refusing a redirect from https to plain http"):
        download._redirect_target("https://host.example/w.bin", response, job("https://host.example/w.bin", Path("x")))


def test_scrub_url_hides_userinfo_and_secret_query_values() -> None:
    scrubbed = scrub_url("https://bob:pw@host.example:8443/f.bin?id=12&token=SECRET&X-Amz-Signature=SIG#frag")
    assert scrubbed == "https://host.example:8443/f.bin?id=12&token=REDACTED&X-Amz-Signature=REDACTED"


# source: url --------------------------------------------------------------------------------------


def url_spec(name: str, urls: dict[str, str], max_bytes: int = 2_000_000_000) -> ModelSpec:
    raw = merged_entry(name, REPO / "params.yaml")
    raw["source"] = {"kind": "url", "seed": raw["source"]["seed"], "urls": urls, "max_bytes": max_bytes}
    return ModelSpec.model_validate(raw)


@pytest.fixture
def no_wait(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(download, "pause", waited.append)
    return waited


@pytest.mark.parametrize("flow", ["form", "legacy", "none"])
def test_google_drive_confirmation_flows(server, tmp_path, no_wait, flow) -> None:
    address = server.serve_drive("1AbC_dEf-9", DATA, flow=flow)
    pins = url.fetch(tmp_path, "siamese", url_spec("siamese", {"convnet_best_loss.pt": address}), {}, progress=False)
    assert (tmp_path / "convnet_best_loss.pt").read_bytes() == DATA
    assert pins["convnet_best_loss.pt"].sha256 == SHA
    assert pins["convnet_best_loss.pt"].source == address
    assert len(server.requests_to("/")) == (1 if flow == "none" else 2)


def test_google_drive_quota_page_is_explained(server, tmp_path, no_wait) -> None:
    address = server.serve_drive("1AbC", DATA, flow="quota")
    with pytest.raises(
        PipelineError,
        match=r"Google Drive refuses the download: Too many users .* point models\.siamese\.source\.urls at a mirror",
    ):
        url.fetch(tmp_path, "siamese", url_spec("siamese", {"convnet_best_loss.pt": address}), {}, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_an_html_page_is_never_taken_for_the_file(server, tmp_path, no_wait) -> None:
    address = server.serve("/share.html", b"<html><body>Sign in to continue</body></html>", content_type="text/html")
    with pytest.raises(PipelineError, match="sent an HTML page instead of the file"):
        url.fetch(tmp_path, "siamese", url_spec("siamese", {"convnet_best_loss.pt": address}), {}, progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status, advice", [(401, "not public"), (403, "not public"), (404, "is not at")])
def test_url_source_status_errors_name_the_param(server, tmp_path, no_wait, status, advice) -> None:
    address = server.serve("/w.bin", DATA)
    server.fail("/w.bin", Fault.http(status))
    with pytest.raises(PipelineError) as caught:
        url.fetch(tmp_path, "siamese", url_spec("siamese", {"convnet_best_loss.pt": address}), {}, progress=False)
    assert advice in str(caught.value) and "check models.siamese.source.urls" in str(caught.value)
    assert no_wait == [] and len(server.requests_to("/w.bin")) == 1


def test_url_source_respects_max_bytes_from_params(server, tmp_path, no_wait) -> None:
    address = server.serve("/w.bin", DATA)
    with pytest.raises(TooLarge, match=r"raise models\.siamese\.source\.max_bytes"):
        url.fetch(
            tmp_path,
            "siamese",
            url_spec("siamese", {"convnet_best_loss.pt": address}, max_bytes=1000),
            {},
            progress=False,
        )


@pytest.mark.parametrize(
    "share, direct",
    [
        (
            "https://drive.google.com/file/d/1AbC_d-E/view?usp=sharing",
            "https://drive.google.com/uc?export=download&id=1AbC_d-E",
        ),
        ("https://drive.google.com/open?id=1AbC", "https://drive.google.com/uc?export=download&id=1AbC"),
        (
            "https://drive.google.com/file/d/1AbC/view?resourcekey=0-xy",
            "https://drive.google.com/uc?export=download&id=1AbC&resourcekey=0-xy",
        ),
        ("https://docs.google.com/uc?id=1AbC&export=download", "https://drive.google.com/uc?export=download&id=1AbC"),
        ("https://mirror.example/signet.pkl", "https://mirror.example/signet.pkl"),
    ],
)
def test_drive_share_links_become_download_addresses(share: str, direct: str) -> None:
    assert url.direct_url(share) == direct


# `#member`: one file out of a zip archive (how the sigver_wiwd pickles are published) ------------


def zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return buffer.getvalue()


def archive_fetch(
    server,
    folder: Path,
    member: str,
    pins: dict | None = None,
    max_bytes: int = 2_000_000_000,
    members: dict[str, bytes] | None = None,
):
    members = members or {"models/signet.pkl": DATA, "models/other.pkl": b"x"}
    address = server.serve("/signet_models.zip", zip_bytes(members))
    spec = url_spec("siamese", {"convnet_best_loss.pt": f"{address}#{member}"}, max_bytes=max_bytes)
    return url.fetch(folder, "siamese", spec, pins or {}, progress=False)


def test_archive_member_is_extracted_alone_and_pinned_as_the_file(server, tmp_path, no_wait) -> None:
    folder = tmp_path / "staging"
    folder.mkdir()
    pins = archive_fetch(server, folder, "models/signet.pkl")
    assert sorted(p.name for p in folder.iterdir()) == ["convnet_best_loss.pt"]
    assert (folder / "convnet_best_loss.pt").read_bytes() == DATA
    assert pins["convnet_best_loss.pt"].sha256 == SHA
    assert pins["convnet_best_loss.pt"].source.endswith("/signet_models.zip#models/signet.pkl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"], "the scratch archive is gone"


def test_archive_member_missing_pin_mismatch_and_bomb_are_refused(server, tmp_path, no_wait) -> None:
    folder = tmp_path / "staging"
    folder.mkdir()
    with pytest.raises(
        PipelineError, match=r"has no member 'signet.pkl' \(it has: models/signet.pkl, models/other.pkl\)"
    ):
        archive_fetch(server, folder, "signet.pkl")
    with pytest.raises(PipelineError, match="differs from its pin"):
        archive_fetch(server, folder, "models/signet.pkl", pins={"convnet_best_loss.pt": Pin("0" * 64, len(DATA))})
    bomb = {"models/signet.pkl": bytes(50_000_000)}  # about 50 KB on the wire, 50 MB inflated
    with pytest.raises(PipelineError, match="inflates beyond the size limit of 1000000 bytes"):
        archive_fetch(server, folder, "models/signet.pkl", max_bytes=1_000_000, members=bomb)
    assert list(folder.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"]
