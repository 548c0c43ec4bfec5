"""`source: kaggle` driven by the real kagglesdk client against the fake Kaggle API on localhost:7777.

KAGGLE_API_ENVIRONMENT=TEST makes kagglesdk call http://localhost:7777 (a fixed port: if it is
taken the tests skip, or fail under CI). Scenarios: credentials as the Kaggle tools accept
them, pagination, 401, 403, 404 (kernel, file), 429 then success on the listing and on a file,
5xx until the attempts run out, network down, a traversal name in the listing, a redirect to
another host (credentials must not follow), the size limit, and secrets kept out of messages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import socket
from pathlib import Path

import pytest
from fake_servers import LIST_PATH, FakeKaggle, Fault, FileServer, isolated_kaggle

from stages.core.errors import PipelineError
from stages.core.params import ModelSpec, merged_entry
from stages.sources import download, kaggle

REPO = Path(__file__).resolve().parents[1]
KERNEL = "medali1992/siamese-signature-verification-with-confidence"
CHECKPOINT = "convnet_best_loss.pt"
DATA = os.urandom(300_000)
OUTPUTS = {CHECKPOINT: DATA, "submission.csv": b"id,p\n1,0.5\n", "plots/loss.png": b"\x89PNG", "notes.txt": b"n"}
USER, KEY = "alice", "k-3b9f0c7e2a51"


def kaggle_spec(name: str = "siamese", **source) -> ModelSpec:
    raw = merged_entry(name, REPO / "params.yaml")
    raw["source"] = {**raw["source"], "kind": "kaggle", **source}
    return ModelSpec.model_validate(raw)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, home: Path) -> FakeKaggle:
    """The fake API, reset, with the kernel published and only test credentials in the environment."""
    server = isolated_kaggle(monkeypatch, home)
    server.publish(KERNEL, OUTPUTS)
    server.basic.add((USER, KEY))
    return server


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(download, "pause", recorded.append)
    return recorded


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", KEY)


def run(folder: Path, spec: ModelSpec | None = None) -> dict:
    return kaggle.fetch(folder, "siamese", spec or kaggle_spec(), {}, progress=False)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_lists_every_page_and_downloads_only_the_selected_file(fake, env_credentials, tmp_path, waits) -> None:
    fake.page_cap = 1
    pins = run(tmp_path / "raw")
    assert files_under(tmp_path / "raw") == [CHECKPOINT]
    assert (tmp_path / "raw" / CHECKPOINT).read_bytes() == DATA
    assert pins[CHECKPOINT].sha256 == hashlib.sha256(DATA).hexdigest()
    assert pins[CHECKPOINT].source == f"kaggle:{KERNEL}"
    listings = fake.requests_to(LIST_PATH)
    assert len(listings) == len(OUTPUTS)
    bodies = [json.loads(seen.body) for seen in listings]
    assert [b["pageToken"] for b in bodies] == ["", "1", "2", "3"]
    assert {(b["userName"], b["kernelSlug"]) for b in bodies} == {tuple(KERNEL.split("/"))}
    expected = "Basic " + base64.b64encode(f"{USER}:{KEY}".encode()).decode()
    assert all(seen.headers["authorization"] == expected for seen in listings)
    assert [s.path for s in fake.requests_to("/kf/")] == [fake.file_path(KERNEL, CHECKPOINT)]
    assert waits == []


def test_kaggle_json_in_the_home_folder(fake, home, tmp_path) -> None:
    config = home / ".kaggle" / "kaggle.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"username": USER, "key": KEY}))
    config.chmod(0o600)
    assert CHECKPOINT in run(tmp_path / "raw")
    assert kaggle.find_credentials().origin == str(config)


def test_kaggle_config_dir_and_env_override(fake, monkeypatch, tmp_path) -> None:
    config = tmp_path / "conf" / "kaggle.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"username": USER, "key": "stale-key"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config.parent))
    monkeypatch.setenv("KAGGLE_KEY", KEY)  # the environment wins over the file, as for the Kaggle CLI
    assert CHECKPOINT in run(tmp_path / "raw")
    assert kaggle.find_credentials().origin == f"KAGGLE_USERNAME/KAGGLE_KEY over {config}"


@pytest.mark.parametrize("where", ["env", "file"])
def test_api_token_is_sent_as_bearer(fake, monkeypatch, home, tmp_path, where) -> None:
    fake.tokens.add("KGAT_0123")
    if where == "env":
        monkeypatch.setenv("KAGGLE_API_TOKEN", "KGAT_0123")
    else:
        (home / ".kaggle").mkdir()
        (home / ".kaggle" / "access_token").write_text("KGAT_0123\n")
    assert CHECKPOINT in run(tmp_path / "raw")
    assert fake.requests_to(LIST_PATH)[0].headers["authorization"] == "Bearer KGAT_0123"


def test_no_credentials_says_where_to_put_them(fake, tmp_path) -> None:
    with pytest.raises(PipelineError) as caught:
        run(tmp_path / "raw")
    message = str(caught.value)
    assert "no Kaggle credentials" in message and "KAGGLE_API_TOKEN" in message and "~/.kaggle/kaggle.json" in message
    assert fake.seen == [], "nothing is sent without credentials"


@pytest.mark.parametrize(
    "content, complaint",
    [
        ("{not json", r"kaggle\.json: not valid JSON; download a new kaggle\.json"),
        ('{"username": "alice"}', r"kaggle\.json lack a username or key; download a new kaggle\.json"),
    ],
)
def test_a_damaged_kaggle_json_is_named(fake, home, tmp_path, content, complaint) -> None:
    (home / ".kaggle").mkdir()
    (home / ".kaggle" / "kaggle.json").write_text(content)
    with pytest.raises(PipelineError, match=complaint):
        run(tmp_path / "raw")
    assert fake.seen == []


def test_a_world_readable_kaggle_json_gets_a_warning(fake, home, tmp_path, caplog) -> None:
    config = home / ".kaggle" / "kaggle.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"username": USER, "key": KEY}))
    config.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        run(tmp_path / "raw")
    assert "chmod 600" in caplog.text


def test_rejected_credentials_401(fake, monkeypatch, tmp_path, waits) -> None:
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", "wrong-key")
    with pytest.raises(
        PipelineError, match=r"Kaggle rejected the credentials from KAGGLE_USERNAME/KAGGLE_KEY \(HTTP 401\)"
    ):
        run(tmp_path / "raw")
    assert len(fake.requests_to(LIST_PATH)) == 1 and waits == []
    assert not (tmp_path / "raw").exists()


def test_forbidden_403_mentions_private_notebooks(fake, env_credentials, tmp_path) -> None:
    fake.fail(LIST_PATH, Fault.http(403))
    with pytest.raises(PipelineError, match=r"denied access to kernel .*\(HTTP 403\).*private.*source\.kaggle\.kernel"):
        run(tmp_path / "raw")


def test_unknown_kernel_404_names_the_param(fake, env_credentials, tmp_path) -> None:
    spec = kaggle_spec(kaggle={"kernel": "medali1992/no-such-notebook"})
    with pytest.raises(
        PipelineError,
        match=r"no kernel medali1992/no-such-notebook \(HTTP 404\); check models\.siamese\.source\.kaggle\.kernel",
    ):
        run(tmp_path / "raw", spec)


def test_a_file_missing_from_the_output_lists_what_is_there(fake, env_credentials, tmp_path) -> None:
    fake.publish(KERNEL, {"submission.csv": b"x"})
    with pytest.raises(
        PipelineError,
        match=r"models\.siamese\.files: .* has no \['convnet_best_loss\.pt'\] \(it has \['submission\.csv'\]\)",
    ):
        run(tmp_path / "raw")
    assert fake.requests_to("/kf/") == []


def test_a_listed_file_that_is_gone_404(fake, env_credentials, tmp_path) -> None:
    fake.fail(fake.file_path(KERNEL, CHECKPOINT), Fault.http(404))
    with pytest.raises(PipelineError, match=r"listed by kernel .* but its download is gone \(HTTP 404\)"):
        run(tmp_path / "raw")


def test_429_then_success_on_listing_and_on_the_file(fake, env_credentials, tmp_path, waits) -> None:
    fake.fail(LIST_PATH, Fault.http(429, retry_after="5"))
    fake.fail(fake.file_path(KERNEL, CHECKPOINT), Fault.http(429, retry_after="3"))
    assert run(tmp_path / "raw")[CHECKPOINT].size == len(DATA)
    assert waits == [5.0, 3.0]


def test_rate_limited_until_the_attempts_run_out(fake, env_credentials, tmp_path, waits) -> None:
    fake.fail(LIST_PATH, *[Fault.http(429)] * 5)
    with pytest.raises(PipelineError, match=r"listing kernel .* failed 5 times, last: HTTP 429 .*wait a few minutes"):
        run(tmp_path / "raw")
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_server_errors_until_the_attempts_run_out(fake, env_credentials, tmp_path, waits) -> None:
    fake.fail(fake.file_path(KERNEL, CHECKPOINT), *[Fault.http(502)] * 5)
    with pytest.raises(PipelineError, match=r"failed 5 times, last: HTTP 502 .*the server is failing"):
        run(tmp_path / "raw")


def test_network_down(fake, env_credentials, monkeypatch, tmp_path, waits) -> None:
    from kagglesdk import kaggle_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.TEST, f"http://127.0.0.1:{closed}")
    with pytest.raises(PipelineError, match=r"cannot reach the Kaggle API: connection refused; check the network"):
        run(tmp_path / "raw")
    assert len(waits) == 4


def test_a_kaggle_api_that_never_answers_times_out(fake, env_credentials, tmp_path) -> None:
    fake.fail(LIST_PATH, Fault("hang"), Fault("hang"))
    policy = download.RetryPolicy(attempts=2, read_timeout=0.3, sleep=lambda seconds: None)
    try:
        with pytest.raises(PipelineError, match=r"failed 2 times, last: cannot reach the Kaggle API: timed out"):
            kaggle.fetch(tmp_path / "raw", "siamese", kaggle_spec(), {}, policy, progress=False)
    finally:
        fake.release.set()


@pytest.mark.parametrize("name", ["../../escape.pt", "/tmp/escape.pt", "model\\..\\..\\escape.pt", "C:/escape.pt"])
def test_a_traversal_name_in_the_listing_writes_nothing_anywhere(fake, env_credentials, tmp_path, name) -> None:
    fake.publish(KERNEL, OUTPUTS, extra_names=[name])
    before = files_under(tmp_path)
    with pytest.raises(PipelineError, match="lists an unsafe output name, nothing was written"):
        run(tmp_path / "data" / "raw" / "siamese")
    assert files_under(tmp_path) == before
    assert fake.requests_to("/kf/") == [], "no download starts once the listing is refused"


def test_credentials_are_not_forwarded_to_another_host(fake, env_credentials, tmp_path) -> None:
    with FileServer() as cdn:
        cdn.serve(fake.file_path(KERNEL, CHECKPOINT), DATA)
        fake.redirect_files_to = cdn.base
        assert run(tmp_path / "raw")[CHECKPOINT].size == len(DATA)
        assert "authorization" in fake.requests_to("/kf/")[0].headers, "same origin as the API: library auth"
        assert "authorization" not in cdn.requests_to("/kf/")[0].headers


def test_the_size_limit_from_params(fake, env_credentials, tmp_path) -> None:
    with pytest.raises(
        download.TooLarge, match=r"over the limit of 1000 bytes; .* raise models\.siamese\.source\.max_bytes"
    ):
        run(tmp_path / "raw", kaggle_spec(max_bytes=1000))
    assert files_under(tmp_path) == []


def test_secrets_stay_out_of_messages_and_logs(fake, monkeypatch, tmp_path, caplog, capsys, waits) -> None:
    marker = "MARKER-7f3e9a1c-not-for-logs"
    monkeypatch.setenv("KAGGLE_USERNAME", USER)
    monkeypatch.setenv("KAGGLE_KEY", marker)
    secret_forms = [marker, base64.b64encode(f"{USER}:{marker}".encode()).decode()]
    texts = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PipelineError) as caught:  # rejected
            run(tmp_path / "a")
        texts.append(str(caught.value))
        fake.basic.add((USER, marker))
        fake.fail(fake.file_path(KERNEL, CHECKPOINT), Fault.http(429), Fault("drop", after=10))
        pins = kaggle.fetch(tmp_path / "b", "siamese", kaggle_spec(), {}, progress=True)  # accepted, after retries
    captured = capsys.readouterr()
    texts += [caplog.text, captured.out, captured.err, repr(pins), repr(kaggle.find_credentials())]
    for text in texts:
        for secret in secret_forms:
            assert secret not in text
