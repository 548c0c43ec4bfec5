"""Lineage an auditor can verify: `python -m stages.verify`, `python -m stages.sign`, provenance, cards.

One scratch git + DVC project builds a single model (signet, the fastest) twice: commit A with
seed 4001, commit B with seed 4011 (a different weight file). The checkout stays at B. Every
kind of tampering is applied to a copy of B's published folder and must fail naming its link;
A's folder is "a file from another commit". Signing keys are throwaway keys made here. B goes
to a DVC remote only for the test that pulls it; the project goes when the module is done.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
import yaml
from conftest import REPO
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stages.core.errors import PipelineError
from stages.core.params import read_params_file
from stages.publish import provenance

MODEL = "signet"


def run(cwd: Path, *command: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def git(cwd: Path, *args: str) -> str:
    return run(cwd, "git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args).stdout


def set_seed(project: Path, seed: int) -> None:
    params = read_params_file(REPO / "params.yaml")
    params["models"] = {MODEL: params["models"][MODEL]}
    params["models"][MODEL]["source"]["seed"] = seed
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def verify(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(
        project,
        sys.executable,
        "-m",
        "stages.verify",
        *args,
        env={"PYTHONPATH": str(project), **(env or {})},
        check=False,
    )


def lines_of(result: subprocess.CompletedProcess) -> dict[str, str]:
    """{link: 'STATUS detail'} from verify's report of one file."""
    checks = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 2)
        if line.startswith("  ") and parts and parts[0] in ("PASS", "FAIL", "SKIP"):
            status, rest = parts[0], line.strip()[4:].strip()
            link = "model card" if rest.startswith("model card") else rest.split()[0]
            checks[link] = f"{status} {rest[len(link) :].strip()}"
    return checks


def failed_links(result: subprocess.CompletedProcess) -> list[str]:
    return sorted(link for link, text in lines_of(result).items() if text.startswith("FAIL"))


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[dict]:
    """The scratch project at commit B, A's published folder kept aside; its .dvc/config names a
    DVC remote (base/remote) that test_a_pulled_build_verifies pushes B to.

    Each build is on disk once: the project's outputs are hard links into its DVC cache
    (cache.type hardlink, a local setting that git does not see), A's folder is hard links to
    A's files, and once B is built `dvc gc` drops the rest of A (its raw and interim files, which
    no test reads). The whole folder goes when the module is done, unless one of its tests failed."""
    base = tmp_path_factory.mktemp("verify")
    project = base / "project"
    project.mkdir()
    for name in ("dvc.yaml", ".dvcignore", ".gitignore", "sources.lock.yaml"):
        shutil.copy2(REPO / name, project / name)
    for package in ("stages", "signature_onnx"):  # the stages use the package's preprocessing
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".dvc").mkdir()
    shutil.copy2(REPO / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copy2(REPO / ".dvc" / ".gitignore", project / ".dvc" / ".gitignore")
    git(project, "init", "-q")
    run(project, "dvc", "remote", "add", "-d", "local", str(base / "remote"))
    run(project, "dvc", "config", "--local", "cache.type", "hardlink")
    env = {"PYTHONPATH": str(project)}
    commits = {}
    for label, seed in (("A", 4001), ("B", 4011)):
        set_seed(project, seed)
        run(project, "dvc", "repro", f"validate@{MODEL}", env=env)
        git(project, "add", "-A")
        git(project, "commit", "-qm", f"build {label}")
        commits[label] = git(project, "rev-parse", "HEAD").strip()
        if label == "A":  # the stages replace their outputs (never write into them): A's stay intact
            shutil.copytree(project / "models" / MODEL, base / "from_A", copy_function=os.link)
    run(project, "dvc", "gc", "--workspace", "--force", env=env)
    failed = request.session.testsfailed
    yield {"project": project, "base": base, "commits": commits, "folder_A": base / "from_A", "remote": base / "remote"}
    if request.session.testsfailed == failed:
        shutil.rmtree(base)


@pytest.fixture
def copy_of_b(audited: dict, tmp_path: Path) -> Path:
    """A copy of the published folder of commit B, to tamper with (new files: the project's are
    read-only links into its DVC cache)."""
    folder = tmp_path / MODEL
    shutil.copytree(audited["project"] / "models" / MODEL, folder, copy_function=shutil.copyfile)
    return folder


def edited_copy(audited: dict, target: Path) -> Path:
    """A copy of the project at B without data/ and .dvc/ (new, writable files), to edit."""
    shutil.copytree(
        audited["project"], target, ignore=shutil.ignore_patterns("data", ".dvc"), copy_function=shutil.copyfile
    )
    return target


def make_key(folder: Path, name: str) -> tuple[Path, Path]:
    """A throwaway P-256 key pair as PEM files: (private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / f"{name}.pem", folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def test_fresh_build_verifies_and_names_its_commit(audited: dict):
    project = audited["project"]
    result = verify(project, f"models/{MODEL}/model.onnx")
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_of(result)
    assert failed_links(result) == []
    for link in (
        "onnx",
        "lineage",
        "provenance",
        "model card",
        "dvc.lock",
        "history",
        "pins",
        "upstream",
        "params",
        "code",
    ):
        assert checks[link].startswith("PASS"), (link, checks[link])
    assert checks["signature"].startswith("SKIP") and "absent" in checks["signature"]
    assert audited["commits"]["B"][:10] in checks["history"] and audited["commits"]["A"][:10] not in checks["history"]
    assert "SYNTHETIC stand-in weights" in checks["onnx"]
    assert "=> verified" in result.stdout


def test_the_onnx_file_alone_says_what_it_is(audited: dict):
    model = onnx.load(str(audited["project"] / "models" / MODEL / "model.onnx"), load_external_data=False)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["model"] == MODEL and meta["synthetic_weights"] == "true" and meta["source.kind"] == "builtin"
    atol = read_params_file(REPO / "params.yaml")["models"][MODEL]["validation"]["atol"]
    assert meta["validation.verdict"] == "passed" and meta["validation.atol"] == json.dumps(atol)
    assert int(meta["validation.samples"]) >= 9  # drawn scans, stroke images and their batch
    assert {
        "code_sha256",
        "params_sha256",
        "converter.name",
        "toolchain.onnxruntime",
        "upstream_sha256:signet.pkl",
    } <= set(meta)
    measured = ("error", "cosine_measured", "seconds", "timestamp", "date", "host", "cpu")
    assert not [key for key in meta if any(word in key for word in measured)]  # nothing measured, dated or local
    assert model.model_version == 1 and "SYNTHETIC WEIGHTS" in model.doc_string
    card = (audited["project"] / "models" / MODEL / "README.md").read_text()
    assert card.startswith("---\nlicense: bsd-2-clause\nlibrary_name: onnx\n") and "**Synthetic weights:" in card
    assert "## Out-of-scope use" in card and "952x1360 canvas" in card and "NOT divided by 255" in card


def test_a_pulled_build_verifies(audited: dict, tmp_path: Path):
    """`dvc push` to the remote the project names, then a git clone elsewhere pulls the build and
    it verifies, naming commit B, its upstream bytes included. What verify reads travels: the
    published folder and data/raw (the interim ONNX files stay home). The remote lives for this
    test only."""
    project, remote = audited["project"], audited["remote"]
    stages = (f"fetch@{MODEL}", f"validate@{MODEL}")
    try:
        run(project, "dvc", "push", "-q", *stages, env={"PYTHONPATH": str(project)})
        clone = tmp_path / "clone"
        run(tmp_path, "git", "clone", "-q", str(project), str(clone))
        run(clone, "dvc", "config", "--local", "cache.type", "hardlink")  # that machine's choice: the pull once on disk
        run(clone, "dvc", "pull", "-q", *stages, env={"PYTHONPATH": str(clone)})
        result = verify(clone, f"models/{MODEL}/model.onnx")
    finally:
        shutil.rmtree(remote, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert audited["commits"]["B"][:10] in lines_of(result)["history"]
    assert lines_of(result)["upstream"].startswith("PASS"), result.stdout


def flip_weight_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # the middle of a 63 MB file is inside a weight tensor
    path.write_bytes(bytes(data))


def claim_real_weights(path: Path) -> None:
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "synthetic_weights":
            prop.value = "false"
    path.write_bytes(model.SerializeToString(deterministic=True))


def edit_json(path: Path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def lineage_claims_kaggle(folder: Path) -> None:
    edit_json(folder / "lineage.json", lambda d: d.update(synthetic_weights=False))


def lineage_names_other_bytes(folder: Path) -> None:
    edit_json(folder / "lineage.json", lambda d: d["onnx"].update(sha256="0" * 64))


def provenance_other_dependency(folder: Path) -> None:
    def edit(document: dict) -> None:
        document["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = "1" * 64

    edit_json(folder / "provenance.intoto.json", edit)


def card_without_warning(folder: Path) -> None:
    card = folder / "README.md"
    card.write_text(card.read_text().replace("**Synthetic weights:", "Weights:"))


TAMPERING = {
    # The card names the sha256 of the bytes it describes, so it no longer matches a changed model.onnx.
    "weight byte of model.onnx": (
        lambda f: flip_weight_byte(f / "model.onnx"),
        ["dvc.lock", "lineage", "model card"],
        "names sha256",
    ),
    "model.onnx metadata claims real weights": (
        lambda f: claim_real_weights(f / "model.onnx"),
        ["dvc.lock", "lineage", "model card"],
        "names sha256",
    ),
    "lineage.json claims real weights": (lineage_claims_kaggle, ["dvc.lock", "lineage"], "synthetic_weights"),
    "lineage.json names other bytes": (lineage_names_other_bytes, ["dvc.lock", "lineage"], "0000000000"),
    "provenance dependency": (
        provenance_other_dependency,
        ["dvc.lock", "provenance"],
        "resolvedDependencies[0].digest.sha256",
    ),
    "card loses the synthetic warning": (
        card_without_warning,
        ["dvc.lock", "model card"],
        "lacks the synthetic-weights warning",
    ),
}


@pytest.mark.parametrize("kind", sorted(TAMPERING))
def test_tampering_fails_naming_the_broken_link(audited: dict, copy_of_b: Path, kind: str):
    tamper, broken, detail = TAMPERING[kind]
    tamper(copy_of_b)
    result = verify(audited["project"], str(copy_of_b / "model.onnx"))
    assert result.returncode == 1
    assert failed_links(result) == sorted(broken), result.stdout
    assert detail in result.stdout
    assert result.stderr.startswith("error: 1 of 1 files failed verification") and "Traceback" not in result.stderr


def test_a_file_from_another_commit_fails_and_names_that_commit(audited: dict):
    project, commits = audited["project"], audited["commits"]
    result = verify(project, str(audited["folder_A"] / "model.onnx"))
    assert result.returncode == 1
    assert failed_links(result) == ["dvc.lock", "params", "upstream"], result.stdout
    checks = lines_of(result)
    assert checks["lineage"].startswith("PASS") and checks["provenance"].startswith("PASS")
    assert (
        checks["history"].startswith("PASS")
        and commits["A"][:10] in checks["history"]
        and commits["B"][:10] not in checks["history"]
    )


def test_code_changed_after_the_build_fails_the_code_link(audited: dict, tmp_path: Path):
    project = edited_copy(audited, tmp_path / "edited")
    shared = project / "stages" / "core" / "paths.py"
    shared.write_text(shared.read_text() + "\n# edited\n")
    result = verify(project, f"models/{MODEL}/model.onnx")
    assert failed_links(result) == ["code"], result.stdout
    assert lines_of(result)["upstream"].startswith("SKIP")  # data/raw was not copied


def test_another_familys_code_is_not_part_of_the_code_link(audited: dict, tmp_path: Path):
    """The digest covers the shared code and the model's own family folder (build_code): an edit
    to another family neither reruns this model's stages nor breaks its lineage."""
    project = edited_copy(audited, tmp_path / "edited")
    family = json.loads((project / "models" / MODEL / "lineage.json").read_text())["family"]
    other = next(
        p
        for p in sorted((project / "stages" / "families").iterdir())
        if p.is_dir() and p.name not in (family, "__pycache__")
    )
    module = other / "__init__.py"
    module.write_text(module.read_text() + "\n# edited\n")
    result = verify(project, f"models/{MODEL}/model.onnx")
    assert lines_of(result)["code"].startswith("PASS"), result.stdout


def test_signing_and_signature_checks(audited: dict, copy_of_b: Path, tmp_path: Path):
    project = audited["project"]
    keys = tmp_path / "keys"
    keys.mkdir()
    private, public = make_key(keys, "release")
    _, other_public = make_key(keys, "other")
    env = {"PYTHONPATH": str(project)}

    no_key = run(project, sys.executable, "-m", "stages.sign", MODEL, env={**env, "MODEL_SIGNING_KEY": ""}, check=False)
    assert no_key.returncode == 1 and no_key.stderr.startswith("error: no signing key: set MODEL_SIGNING_KEY")
    inside = project / "key.pem"
    shutil.copy2(private, inside)
    refused = run(project, sys.executable, "-m", "stages.sign", MODEL, "--key", str(inside), env=env, check=False)
    inside.unlink()
    assert refused.returncode == 1 and "inside the project" in refused.stderr
    assert not (project / "models" / MODEL / "model.sig").exists()

    signed = run(project, sys.executable, "-m", "stages.sign", MODEL, env={**env, "MODEL_SIGNING_KEY": str(private)})
    assert "signed models/signet" in signed.stderr
    try:
        good = verify(project, f"models/{MODEL}/model.onnx", env={"MODEL_SIGNING_PUBLIC_KEY": str(public)})
        assert good.returncode == 0 and lines_of(good)["signature"].startswith("PASS"), good.stdout
        # every file of the folder but model.sig, commit.json (written when signing) included
        signed = "README.md, commit.json, lineage.json, model.onnx, pipeline.onnx, preprocess.onnx, preprocessing.json, provenance.intoto.json"
        assert signed in lines_of(good)["signature"] and "verdict.json" in lines_of(good)["signature"]
        assert lines_of(good)["commit"].startswith("PASS"), good.stdout

        wrong = verify(project, f"models/{MODEL}/model.onnx", "--public-key", str(other_public))
        assert failed_links(wrong) == ["signature"] and "Key mismatch" in lines_of(wrong)["signature"], wrong.stdout

        unchecked = verify(project, f"models/{MODEL}/model.onnx", "--require-signature")
        assert failed_links(unchecked) == ["signature"] and "no public key" in lines_of(unchecked)["signature"]

        for name in ("model.sig", "commit.json"):
            shutil.copy2(project / "models" / MODEL / name, copy_of_b / name)
        card_without_warning(copy_of_b)
        tampered = verify(project, str(copy_of_b / "model.onnx"), "--public-key", str(public))
        assert failed_links(tampered) == ["dvc.lock", "model card", "signature"], tampered.stdout
        assert "changed since signing: README.md" in lines_of(tampered)["signature"]
    finally:
        for name in ("model.sig", "commit.json"):
            (project / "models" / MODEL / name).unlink(missing_ok=True)


def test_sign_refuses_a_folder_that_fails_verification(audited: dict, tmp_path: Path):
    project = edited_copy(audited, tmp_path / "edited")
    card_without_warning(project / "models" / MODEL)
    private, _ = make_key(tmp_path, "release")
    result = run(
        project,
        sys.executable,
        "-m",
        "stages.sign",
        MODEL,
        "--key",
        str(private),
        env={"PYTHONPATH": str(project)},
        check=False,
    )
    assert result.returncode == 1 and "fails verification, not signing anything" in result.stderr
    assert not (project / "models" / MODEL / "model.sig").exists()


def test_bad_inputs_give_one_error_line(audited: dict, tmp_path: Path):
    project = audited["project"]
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00\xffnot an onnx file\n" * 10)
    result = verify(project, str(junk))
    assert result.returncode == 1 and failed_links(result) == ["onnx"]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    hostile = tmp_path / "hostile" / "model.onnx"
    hostile.parent.mkdir()
    model = onnx.load(str(project / "models" / MODEL / "model.onnx"))
    for prop in model.metadata_props:
        if prop.key == "model":
            prop.value = "../../../etc\x1b[31m"
    hostile.write_bytes(model.SerializeToString())
    escaped = verify(project, str(hostile))
    assert failed_links(escaped) == ["onnx"] and "is not a model name" in escaped.stdout
    assert "\x1b" not in escaped.stdout and "\\x1b" in escaped.stdout  # shown escaped, never sent to the terminal
    missing = verify(project, str(tmp_path / "absent.onnx"))
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "not a file" in missing.stderr
    helped = verify(project, "--help")
    assert helped.returncode == 0 and "dvc.lock" in helped.stdout and "--public-key" in helped.stdout


def test_provenance_format_is_checked_with_the_in_toto_library(audited: dict):
    document = json.loads((audited["project"] / "models" / MODEL / "provenance.intoto.json").read_text())
    provenance.check_format(document)
    assert document["predicateType"] == "https://slsa.dev/provenance/v1"
    for broken in (
        {**document, "predicateType": "https://example.com/other"},
        {**document, "subject": []},
        {**document, "predicate": {**document["predicate"], "buildDefinitionTypo": {}}},
    ):
        with pytest.raises(PipelineError, match="not an in-toto SLSA provenance statement"):
            provenance.check_format(broken)


def test_history_names_every_commit_whose_lock_holds_the_file(tmp_path: Path):
    """Commits that did not touch dvc.lock still hold it; a commit without dvc.lock holds nothing."""
    from stages.publish.lock_history import commits_holding

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")

    def commit(message: str, lock_md5: str | None, note: str) -> str:
        (repo / "note.txt").write_text(note)
        if lock_md5:
            outs = [{"path": "models/m/model.onnx", "hash": "md5", "md5": lock_md5}]
            (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"validate@m": {"outs": outs}}}))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", message)
        return git(repo, "rev-parse", "HEAD").strip()

    commit("no lock yet", None, "1")
    second = commit("lock X", "a" * 32, "2")
    third = commit("docs only", None, "3")
    commit("lock Y", "b" * 32, "4")
    held = commits_holding(repo, "validate@m", "models/m/model.onnx", "a" * 32)
    assert [(c.sha, c.subject) for c in held] == [(third, "docs only"), (second, "lock X")]
    assert commits_holding(repo, "validate@other", "models/m/model.onnx", "a" * 32) == []
    assert commits_holding(tmp_path, "validate@m", "models/m/model.onnx", "a" * 32) is None  # not a repository


def test_source_address_keeps_the_archive_member_and_drops_secrets():
    from stages.core.params import model_spec
    from stages.publish import lineage

    spec = model_spec(MODEL, REPO / "params.yaml")
    address = "https://user:pw@mirror.example.com/models/signet_models.zip?X-Amz-Signature=s3cr3t#signet.pkl"
    url_spec = spec.model_copy(
        update={"source": spec.source.model_copy(update={"kind": "url", "urls": {"signet.pkl": address}})}
    )
    source = lineage.source_record(url_spec)
    assert source == {
        "kind": "url",
        "urls": {
            "signet.pkl": "https://mirror.example.com/models/signet_models.zip?X-Amz-Signature=REDACTED#signet.pkl"
        },
    }
    assert lineage.source_record(spec) == {"kind": "builtin", "seed": 4001, "note": lineage.SYNTHETIC_NOTE}


@pytest.mark.parametrize("digest", [b"\x01plain", b'\x01"quoted'])
def test_signature_mismatch_names_the_changed_files_whatever_the_digest_bytes(digest: bytes):
    """model-signing reports `Signature mismatch: [<str>, ...]`; a `"` in a digest's repr changes the quoting."""
    from signature_onnx.folder import signature_mismatch as _mismatch

    diffs = [
        f"Hash mismatch for '{name}': Expected 'Digest(digest_value={digest!r})', Actual '...'"
        for name in ("README.md", "model.onnx")
    ]
    assert _mismatch(ValueError(f"Signature mismatch: {diffs}")) == "changed since signing: README.md, model.onnx"
