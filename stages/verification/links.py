"""The links `python -m stages.verify` checks, one function each, for any caller (the CLI,
`stages.sign`, tests): `verify_file(path, root, ...)` returns one `Check` per link, in order.

Not a DVC stage's code: no stage imports it, so editing a check reruns nothing.
The links and what each proves are listed in the CLI's help (stages/verify.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.core.digests import md5_file, sha256_file
from stages.core.errors import PipelineError, first_line
from stages.core.family_facts import known_families
from stages.core.params import MODEL_NAME, PARAMS_FILE, load_params
from stages.core.paths import PUBLISHING_STAGES
from stages.publish import commit_record, lineage, lock_history, model_card, provenance, signing
from stages.sources.pins import LOCK_FILE as PINS_FILE
from stages.sources.pins import LockFile

SHOWN_COMMITS = 5


@dataclass(frozen=True)
class Check:
    link: str
    status: str  # "PASS", "FAIL", "SKIP" or "N/A" (needs a project checkout)
    detail: str


def shown(value: object, limit: int = 80) -> str:
    """Untrusted text (metadata, JSON values) escaped and shortened for one output line."""
    text = repr(value) if not isinstance(value, str) else repr(value)[1:-1]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def first_difference(actual: Any, expected: Any, where: str = "") -> str | None:
    """The path of the first value that differs between two JSON-like trees, or None."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key in sorted(set(actual) | set(expected), key=str):
            if key not in actual or key not in expected:
                return f"{where}.{key}".lstrip(".") + (" is missing" if key not in actual else " is unexpected")
            found = first_difference(actual[key], expected[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(actual, list) and isinstance(expected, list) and len(actual) == len(expected):
        for index, (a, e) in enumerate(zip(actual, expected)):
            found = first_difference(a, e, f"{where}[{index}]")
            if found:
                return found
        return None
    if actual != expected or type(actual) is not type(expected):
        return f"{where.lstrip('.')} is {shown(actual, 60)}, expected {shown(expected, 60)}"
    return None


@dataclass
class Subject:
    """One ONNX file under audit and what was read from it and beside it."""

    path: Path
    root: Path
    sha256: str = ""
    metadata: dict[str, str] | None = None
    header: dict[str, Any] | None = None  # doc_string, model_version, producer of the ONNX file
    record: dict[str, Any] | None = None

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def model(self) -> str:
        return (self.metadata or {}).get("model", "")


def check_onnx(subject: Subject) -> Check:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(subject.path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        return Check("onnx", "FAIL", f"not a readable ONNX file ({shown(str(exc), 100)})")
    subject.sha256 = sha256_file(subject.path)
    subject.metadata = {prop.key: prop.value for prop in model.metadata_props}
    subject.header = {
        "doc_string": model.doc_string,
        "model_version": model.model_version,
        "producer": [model.producer_name, model.producer_version],
    }
    missing = [
        key
        for key in ("model", "code_sha256", "params_sha256", "synthetic_weights", "validation.verdict")
        if key not in subject.metadata
    ]
    if missing:
        return Check("onnx", "FAIL", f"no lineage metadata {missing}: not a file this pipeline published")
    meta = subject.metadata
    if not MODEL_NAME.match(meta["model"]):  # it names folders and dvc.lock stages below
        return Check(
            "onnx", "FAIL", f"metadata model {shown(meta['model'])} is not a model name ({MODEL_NAME.pattern})"
        )
    weights = (
        "SYNTHETIC stand-in weights, not the upstream model"
        if meta["synthetic_weights"] == "true"
        else f"upstream weights from {shown(meta.get('source.kind'))}"
    )
    if "variant" in meta:  # the metadata's validation.* entries are its parent's
        return Check(
            "onnx",
            "PASS",
            (
                f"{shown(meta['variant'])} VARIANT of {shown(meta['model'])} v{model.model_version}, {weights}; checked against its "
                f"parent within the tolerances of its lineage.json; sha256 {subject.sha256}"
            ),
        )
    return Check(
        "onnx",
        "PASS",
        (
            f"{shown(meta['model'])} v{model.model_version}, {weights}; validation {shown(meta['validation.verdict'])} "
            f"against {shown(meta.get('validation.reference'))} on {shown(meta.get('validation.samples'))} samples; "
            f"sha256 {subject.sha256}"
        ),
    )


def check_lineage(subject: Subject) -> Check:
    path = subject.folder / "lineage.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        onnx_sha256 = document["onnx"]["sha256"]
        record = lineage.record_of(document)
        expected = lineage.metadata_entries(record)
        doc = lineage.doc_string(record)
    except FileNotFoundError:
        return Check("lineage", "FAIL", f"{path} is missing")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Check("lineage", "FAIL", f"{path} is damaged ({shown(str(exc), 80)})")
    if onnx_sha256 != subject.sha256:
        return Check("lineage", "FAIL", f"{path} names sha256 {shown(onnx_sha256)}, the file has {subject.sha256}")
    difference = first_difference(subject.metadata, expected)
    if difference:
        return Check("lineage", "FAIL", f"the ONNX metadata and {path} disagree: metadata {difference} by lineage.json")
    header = subject.header or {}
    if header.get("doc_string") != doc or header.get("model_version") != record.get("model_version"):
        return Check("lineage", "FAIL", f"the ONNX doc_string or model_version differs from {path}")
    if header.get("producer") != [record["converter"]["name"], record["converter"]["version"]]:
        return Check("lineage", "FAIL", f"the ONNX producer differs from converter in {path}")
    subject.record = record
    return Check(
        "lineage", "PASS", f"{path} names these bytes and holds the same {len(expected)} facts as the metadata"
    )


def check_provenance(subject: Subject) -> Check:
    path = subject.folder / provenance.FILE
    if subject.record is None:
        return Check("provenance", "SKIP", "lineage.json is not usable (see above)")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Check("provenance", "FAIL", f"{path} is missing")
    except ValueError as exc:
        return Check("provenance", "FAIL", f"{path} is not JSON ({shown(str(exc), 80)})")
    try:
        provenance.check_format(document)
    except PipelineError as exc:
        return Check("provenance", "FAIL", f"{path}: {exc}")
    difference = first_difference(document, provenance.statement(subject.record, subject.sha256))
    if difference:
        return Check("provenance", "FAIL", f"{path} differs from the statement rebuilt from lineage: {difference}")
    return Check("provenance", "PASS", f"{path}: SLSA v1 statement, subject sha256 {subject.sha256}")


def check_card(subject: Subject) -> Check:
    path = subject.folder / model_card.FILE
    try:
        card = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Check("model card", "FAIL", f"{path} is missing")
    except (OSError, UnicodeDecodeError) as exc:
        return Check("model card", "FAIL", f"{path} is unreadable ({shown(str(exc), 60)})")
    if f"`model.onnx` sha256 `{subject.sha256}`" not in card:
        return Check("model card", "FAIL", f"{path} does not name this file's sha256")
    synthetic = (subject.metadata or {}).get("synthetic_weights") == "true"
    if synthetic != ("**Synthetic weights:" in card):
        return Check("model card", "FAIL", f"{path} {'lacks' if synthetic else 'has'} the synthetic-weights warning")
    return Check(
        "model card", "PASS", f"{path} names these bytes" + (" and warns of synthetic weights" if synthetic else "")
    )


RELEASE_FILES = (signing.SIGNATURE_FILE, commit_record.FILE)  # the folder's files the release step adds


def dvc_md5(path: Path) -> str | None:
    """DVC's md5 of a file, or of a folder (`<md5>.dir`, DVC's own manifest hash), None when absent."""
    if path.is_file():
        return md5_file(path)
    if not path.is_dir():
        return None
    import tempfile

    from dvc.fs import LocalFileSystem
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:  # dry_run: nothing is written to it
        _, _, obj = build(HashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return obj.hash_info.value


def folder_against_lock(root: Path, model: str, folder: Path) -> tuple[list[str], list[str]]:
    """(differences, names checked) between `folder` and the outputs dvc.lock records for the stages
    that publish models/<model>/: every output file and folder, and no file beside them but the
    release step's. Raises FileNotFoundError without dvc.lock."""
    lock_text = (root / lock_history.LOCK).read_bytes()
    recorded = {
        out: md5
        for stage in PUBLISHING_STAGES
        for out, md5 in lock_history.lock_md5s(lock_text, f"{stage}@{model}").items()
    }
    differing = []
    for out, md5 in sorted(recorded.items()):
        name = Path(out).name
        actual = dvc_md5(folder / name)
        if actual is None:
            differing.append(f"{name} is missing")
        elif actual != md5:
            differing.append(f"{name} has md5 {actual}, dvc.lock says {md5}")
    expected = {Path(out).name for out in recorded} | set(RELEASE_FILES)
    differing += [
        f"{shown(p.name)} is not an output of {'/'.join(PUBLISHING_STAGES)}@{model}"
        for p in sorted(folder.iterdir())
        if p.name not in expected
    ]
    return differing, sorted(Path(out).name for out in recorded)


def check_dvc_lock(subject: Subject) -> Check:
    lock = subject.root / lock_history.LOCK
    try:
        differing, names = folder_against_lock(subject.root, subject.model, subject.folder)
    except FileNotFoundError:
        return Check("dvc.lock", "FAIL", f"{lock} is missing; run from the project root (--root)")
    if not names:
        return Check("dvc.lock", "FAIL", f"{lock} has no stage validate@{shown(subject.model)}")
    if differing:
        return Check(
            "dvc.lock", "FAIL", f"{lock} ({'/'.join(PUBLISHING_STAGES)}@{subject.model}): " + "; ".join(differing)
        )
    return Check(
        "dvc.lock",
        "PASS",
        f"{lock} records the md5 of all {len(names)} outputs in the folder, and nothing else is in it: "
        + ", ".join(names),
    )


def check_history(subject: Subject) -> Check:
    out = f"models/{subject.model}/model.onnx"
    md5 = md5_file(subject.path)
    commits = lock_history.commits_holding(subject.root, f"validate@{subject.model}", out, md5)
    if commits is None:
        return Check("history", "SKIP", f"{subject.root} is not a git checkout")
    if not commits:
        return Check("history", "SKIP", f"no commit's dvc.lock holds md5 {md5} for {out} (not committed yet?)")
    named = ", ".join(f"{c.sha[:10]} ({shown(c.subject, 50)})" for c in commits[:SHOWN_COMMITS])
    more = f" and {len(commits) - SHOWN_COMMITS} older" if len(commits) > SHOWN_COMMITS else ""
    return Check("history", "PASS", f"dvc.lock holds this file in {len(commits)} commit(s): {named}{more}")


def upstream_digests(metadata: dict[str, str]) -> dict[str, str]:
    return {key.split(":", 1)[1]: value for key, value in metadata.items() if key.startswith("upstream_sha256:")}


def check_pins(subject: Subject) -> Check:
    meta = subject.metadata or {}
    if meta.get("source.kind") == "builtin":
        return Check("pins", "PASS", "built-in stand-in: synthetic bytes, not pinned by design")
    path = subject.root / PINS_FILE
    try:
        pinned = LockFile.load(path).pins_for(subject.model)
    except PipelineError as exc:
        return Check("pins", "FAIL", str(exc))
    wrong = [
        f"{shown(file)} is {sha}, pinned {pinned[file].sha256 if file in pinned else 'nothing'}"
        for file, sha in sorted(upstream_digests(meta).items())
        if file not in pinned or pinned[file].sha256 != sha
    ]
    if wrong:
        return Check("pins", "FAIL", f"{path}: " + "; ".join(wrong))
    return Check("pins", "PASS", f"{path} pins every upstream file the metadata names")


def check_upstream(subject: Subject) -> Check:
    raw = subject.root / "data" / "raw" / subject.model
    if not raw.is_dir():
        return Check(
            "upstream", "SKIP", f"{raw} is not present (dvc pull or dvc repro fetch@{subject.model} to check it)"
        )
    wrong = []
    for file, sha in sorted(upstream_digests(subject.metadata or {}).items()):
        local = raw / file
        actual = sha256_file(local) if local.resolve().is_relative_to(raw.resolve()) and local.is_file() else None
        if actual is None:
            wrong.append(f"{shown(file)} is missing")
        elif actual != sha:
            wrong.append(f"{shown(file)} has sha256 {actual}, the metadata names {shown(sha)}")
    if wrong:
        return Check("upstream", "FAIL", f"{raw}: " + "; ".join(wrong))
    return Check("upstream", "PASS", f"{raw} holds the upstream bytes the metadata names")


def check_params(subject: Subject) -> Check:
    path = subject.root / PARAMS_FILE
    try:
        models = load_params(path).models
    except PipelineError as exc:
        return Check("params", "FAIL", first_line(exc))
    if subject.model not in models:
        return Check("params", "FAIL", f"{path} has no model {shown(subject.model)}")
    digest = lineage.params_digest(models[subject.model])
    wanted = (subject.metadata or {}).get("params_sha256")
    if digest != wanted:
        return Check(
            "params",
            "FAIL",
            f"{path} models.{subject.model} has sha256 {digest}, the file was built from {shown(wanted)}",
        )
    return Check("params", "PASS", f"{path} models.{subject.model} has the digest the file was built from")


def check_code(subject: Subject) -> Check:
    family = str((subject.metadata or {}).get("family", ""))
    known = known_families()
    if family not in known:
        return Check("code", "FAIL", f"the metadata names the family {shown(family)}, not one of {list(known)}")
    digest = lineage.code_digest(subject.root, family)
    wanted = (subject.metadata or {}).get("code_sha256")
    where = f"{subject.root}: {', '.join(lineage.build_code(family))}"
    if digest != wanted:
        return Check("code", "FAIL", f"{where} have sha256 {digest}, the file was built by code {shown(wanted)}")
    return Check("code", "PASS", f"{where} are the code the file was built by")


def check_signature(subject: Subject, public_key: Path | None, required: bool) -> Check:
    signature = subject.folder / signing.SIGNATURE_FILE
    missing = "FAIL" if required else "SKIP"
    if not signature.is_file():
        return Check("signature", missing, f"{signature} is absent (unsigned build; sign with python -m stages.sign)")
    if public_key is None:
        return Check(
            "signature", missing, f"{signature} present but no public key (--public-key or ${signing.PUBLIC_KEY_ENV})"
        )
    try:
        signing.verify_folder(subject.folder, public_key)
    except PipelineError as exc:
        return Check("signature", "FAIL", str(exc))
    files = signed_files(subject.folder)
    tops = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in files})
    return Check(
        "signature", "PASS", f"{signature} verifies with {public_key.name} over {len(files)} files: {', '.join(tops)}"
    )


def signed_files(folder: Path) -> list[str]:
    """Every file the signature covers (relative paths): the folder's files, variants included, but model.sig."""
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in signing.UNSIGNED
    )


def is_variant(subject: Subject) -> bool:
    return "variant" in (subject.metadata or {})


def check_variant(subject: Subject) -> Check:
    """A variant's own lineage.json names these bytes, and the same parent and recipe as the metadata."""
    path = subject.folder / "lineage.json"
    meta = subject.metadata or {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        named = (document["onnx"]["sha256"], document["variant"], document["parent"]["sha256"], document["recipe"])
    except FileNotFoundError:
        return Check("variant", "FAIL", f"{path} is missing")
    except (ValueError, KeyError, TypeError) as exc:
        return Check("variant", "FAIL", f"{path} is damaged ({shown(str(exc), 80)})")
    try:
        recipe = json.loads(meta.get("variant_recipe", ""))
    except ValueError:
        recipe = None
    expected = (subject.sha256, meta["variant"], meta.get("variant_of_sha256"), recipe)
    labels = ("onnx.sha256", "variant", "parent.sha256", "recipe")
    wrong = [
        f"{label} is {shown(a, 70)}, the file says {shown(b, 70)}"
        for label, a, b in zip(labels, named, expected)
        if a != b
    ]
    if wrong:
        return Check("variant", "FAIL", f"{path}: " + "; ".join(wrong))
    subject.record = document
    return Check(
        "variant",
        "PASS",
        f"{path}: {shown(meta['variant'])} of parent sha256 {shown(named[2])}, recipe {shown(json.dumps(recipe, sort_keys=True), 80)}",
    )


def check_parent(subject: Subject) -> Check:
    parent = subject.folder.parent.parent / "model.onnx"
    wanted = (subject.metadata or {}).get("variant_of_sha256")
    if not parent.is_file():
        return Check("parent", "FAIL", f"{parent} is missing (a variant is published inside its model's folder)")
    actual = sha256_file(parent)
    if actual != wanted:
        return Check("parent", "FAIL", f"{parent} has sha256 {actual}, the variant was made from {shown(wanted)}")
    return Check("parent", "PASS", f"{parent} is the file it was made from; verify it for the links of the build")


def check_graphs(subject: Subject) -> Check:
    """preprocess.onnx and pipeline.onnx beside the model: the sha256 lineage.json records (as the package's audit reads it)."""
    from signature_onnx.audit import graphs
    from signature_onnx.errors import SignatureOnnxError
    from signature_onnx.folder import own_lineage

    try:
        _path, record = own_lineage(subject.folder)
    except SignatureOnnxError as exc:
        return Check("graphs", "FAIL", shown(str(exc), 200))
    link = graphs(subject.folder, record)
    return Check("graphs", link.status, link.detail)


def check_commit(subject: Subject) -> Check:
    """The signed folder's commit.json (as the package's audit reads it): it names this model.onnx,
    and its commit's dvc.lock records it."""
    from signature_onnx.audit import commit as commit_claim

    claim = commit_claim(subject.folder, subject.sha256, signed=True)
    if claim.status != "PASS":
        return Check("commit", claim.status, claim.detail)
    if not has_checkout(subject.root):
        return Check(
            "commit",
            "N/A",
            f"{claim.detail}: which commit's dvc.lock records the file needs the project checkout (--root)",
        )
    named = json.loads((subject.folder / commit_record.FILE).read_text(encoding="utf-8"))["commit"]
    holding = (
        lock_history.commits_holding(
            subject.root, f"validate@{subject.model}", f"models/{subject.model}/model.onnx", md5_file(subject.path)
        )
        or []
    )
    if named not in {c.sha for c in holding}:
        return Check("commit", "FAIL", f"{claim.detail}, but that commit's dvc.lock does not record this model.onnx")
    return Check("commit", "PASS", f"{claim.detail}, whose dvc.lock records this file")


def has_checkout(root: Path) -> bool:
    return (root / "dvc.yaml").is_file() and (root / PARAMS_FILE).is_file()


REPOSITORY_CHECKS: list[Callable[[Subject], Check]] = [
    check_dvc_lock,
    check_history,
    check_pins,
    check_upstream,
    check_params,
    check_code,
]
REPOSITORY_LINKS = ("dvc.lock", "history", "pins", "upstream", "params", "code")


def verify_file(
    path: Path, root: Path, public_key: Path | None = None, require_signature: bool = False, signature: bool = True
) -> list[Check]:
    """Every check of one ONNX file, in order; stops after `onnx` when the file is unusable."""
    subject = Subject(path=path, root=root)
    first = check_onnx(subject)
    if first.status == "FAIL":
        return [first]
    if is_variant(subject):
        results = [first, check_variant(subject), check_parent(subject)]
        signed = subject.folder.parent.parent  # the model folder's model.sig covers its variants
        if has_checkout(root):  # the variant is part of its model folder's derive@ output
            results.append(check_dvc_lock(Subject(path=signed / "model.onnx", root=root, metadata=subject.metadata)))
    else:
        results = [
            first,
            *(check(subject) for check in (check_lineage, check_graphs, check_provenance, check_card, check_commit)),
        ]
        if has_checkout(root):
            results += [check(subject) for check in REPOSITORY_CHECKS]
        else:
            results += [
                Check(link, "N/A", f"not checkable here: {root} is not the project checkout (give it with --root)")
                for link in REPOSITORY_LINKS
            ]
        signed = subject.folder
    if signature:
        results.append(check_signature(Subject(path=signed / "model.onnx", root=root), public_key, require_signature))
    return results
