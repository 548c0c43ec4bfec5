"""Audit a model folder without the repository: every link a folder can prove on its own.

`signature-onnx audit FOLDER [--public-key PEM] [--require-signature]` on a published folder
(`models/<name>/`, a `dvc artifacts get` result, or one of its variant folders) prints one line
per link, PASS / FAIL / SKIP / N/A, then `=> verified` or `=> FAILED: <links>`:

  integrity   model.onnx has the sha256 its lineage.json records
  signature   model.sig verifies over the whole folder with the public key (SKIP without a key,
              FAIL then with --require-signature); variants are covered by their model's
  commit      (informational) commit.json, written and signed by the release step: the
              repository and commit the build was made at, and whether the tree was dirty
  vectors     the folder's test vectors, re-run in ONNX Runtime, are within their tolerance
  variant     (a variant) its parent ../../model.onnx has the sha256 its lineage names
  variants/X  (a model) each variant folder: its integrity, its parent is this model.onnx, its
              test vectors
  build       N/A: code, params, dvc.lock and the upstream bytes need the project checkout
              (`python -m stages.verify models/<name>/model.onnx` there)

Everything is read as `check-vectors` reads it: confined to the folder, bounded, escaped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signature_onnx.errors import SignatureOnnxError, shown
from signature_onnx.folder import (
    LINEAGE_FILE,
    MAX_MODEL_BYTES,
    MODEL_FILE,
    SIGNATURE_FILE,
    VARIANTS_DIR,
    own_lineage,
    read_confined,
    read_json,
    recorded_sha256,
    verify_signature,
)

REPOSITORY_LINKS = "code, params, dvc.lock and the upstream bytes"


@dataclass(frozen=True)
class Link:
    name: str
    status: str  # PASS, FAIL, SKIP or N/A
    detail: str


def _sha256(path: Path, root: Path) -> str:
    return hashlib.sha256(read_confined(path, root, MAX_MODEL_BYTES, "an ONNX model file")).hexdigest()


def integrity(folder: Path) -> tuple[Link, Any]:
    """model.onnx against the folder's own lineage.json; (link, lineage record or None)."""
    try:
        path, record = own_lineage(folder)
        if path is None:
            return Link("integrity", "FAIL", f"{shown(folder / LINEAGE_FILE)} is missing"), None
        expected = recorded_sha256(record)
        actual = _sha256(folder / MODEL_FILE, folder)
    except SignatureOnnxError as exc:
        return Link("integrity", "FAIL", shown(exc, 300)), None
    if actual != expected:
        return Link("integrity", "FAIL", f"model.onnx has sha256 {actual}, lineage.json records {shown(expected)}"), record
    return Link("integrity", "PASS", f"model.onnx sha256 {actual}, as lineage.json records"), record


def signature(folder: Path, public_key: Path | None, required: bool) -> Link:
    missing = "FAIL" if required else "SKIP"
    if not (folder / SIGNATURE_FILE).is_file():
        return Link("signature", missing, f"{shown(folder / SIGNATURE_FILE)} is absent (an unsigned build)")
    if public_key is None:
        return Link("signature", missing, "model.sig present, no --public-key given")
    try:
        verify_signature(folder, public_key)
    except SignatureOnnxError as exc:
        return Link("signature", "FAIL", shown(exc, 300))
    covered = sum(1 for p in folder.rglob("*") if p.is_file() and p.name != SIGNATURE_FILE)
    return Link("signature", "PASS", f"model.sig verifies with {shown(public_key.name)} over all {covered} files of {shown(folder.name)}/")


def commit(folder: Path) -> Link:
    path = folder / "commit.json"
    if not path.exists():
        return Link("commit", "SKIP", f"{shown(path)} is absent (the release step writes it when signing)")
    try:
        document = read_json(path, folder)
        named = (document["repository"], document["commit"], document["dirty"])
    except (SignatureOnnxError, KeyError, TypeError) as exc:
        return Link("commit", "FAIL", f"{shown(path)}: expected repository, commit and dirty ({shown(exc, 120)})")
    repository, sha, dirty = named
    state = f"dirty: {shown(dirty, 100)}" if dirty else "a clean tree"
    return Link("commit", "PASS", f"built at {shown(repository or 'no origin')} commit {shown(sha, 40)} from {state}")


def vectors(folder: Path, name: str = "vectors") -> Link:
    from signature_onnx.vectors import check_vectors

    try:
        results = check_vectors(folder)
    except SignatureOnnxError as exc:
        return Link(name, "FAIL", shown(exc, 300))
    failed = [r for r in results if not r.passed]
    if failed:
        return Link(name, "FAIL", f"{len(failed)} of {len(results)} test sets outside tolerance; first: {failed[0].name}: {failed[0].failure}")
    return Link(name, "PASS", f"{len(results)} test sets within tolerance in ONNX Runtime")


def parent_of(variant: Path, record: Any, name: str = "variant") -> Link:
    """The variant's lineage names its parent's sha256; the parent is ../../model.onnx."""
    parent = record.get("parent") if isinstance(record, dict) else None
    wanted = parent.get("sha256") if isinstance(parent, dict) else None
    model = variant.parent.parent / MODEL_FILE
    try:
        actual = _sha256(model, variant.parent.parent)
    except SignatureOnnxError as exc:
        return Link(name, "FAIL", shown(exc, 300))
    if actual != wanted:
        return Link(name, "FAIL", f"{shown(model)} has sha256 {actual}, the variant's lineage names {shown(wanted)}")
    recipe = record.get("recipe") if isinstance(record, dict) else None
    return Link(name, "PASS", f"{shown(record.get('variant'))} of {shown(model)} (sha256 {actual}), recipe {shown(recipe, 100)}")


def variant_links(folder: Path) -> Iterator[Link]:
    for variant in sorted(p for p in (folder / VARIANTS_DIR).glob("*") if p.is_dir()):
        label = f"variants/{variant.name}"
        link, record = integrity(variant)
        if link.status != "PASS":
            yield Link(label, "FAIL", link.detail)
            continue
        parent = parent_of(variant, record, label)
        if parent.status != "PASS":
            yield parent
            continue
        checked = vectors(variant, label)
        yield checked if checked.status == "FAIL" else Link(label, "PASS", f"{parent.detail}; {checked.detail}")


def audit(folder: Path, public_key: Path | None = None, require_signature: bool = False) -> list[Link]:
    """Every link `folder` can prove without the repository, in order."""
    if folder.suffix == ".onnx":
        folder = folder.parent
    if not (folder / MODEL_FILE).is_file():
        raise SignatureOnnxError(f"{shown(folder)}: no model.onnx; expected a published model folder (models/<name>/ or a variant folder)")
    is_variant = folder.parent.name == VARIANTS_DIR
    links = []
    link, record = integrity(folder)
    links.append(link)
    signed = folder.parent.parent if is_variant and not (folder / SIGNATURE_FILE).exists() else folder
    links.append(signature(signed, public_key, require_signature))
    if not is_variant:
        links.append(commit(folder))
    links.append(vectors(folder))
    if is_variant:
        links.append(parent_of(folder, record))
    else:
        links.extend(variant_links(folder))
    links.append(Link("build", "N/A", f"{REPOSITORY_LINKS}: not checkable from a folder; in the project checkout run "
                                      "`python -m stages.verify models/<name>/model.onnx`"))
    return links
