"""Audit a model folder without the repository: every link a folder can prove on its own.

`signature-onnx audit FOLDER [--public-key PEM] [--require-signature]` on a published folder
(`models/<name>/`, a `dvc artifacts get` result, or one of its variant folders) prints one line
per link, PASS / FAIL / SKIP / N/A, then `=> verified` or `=> FAILED: <links>`:

  integrity   model.onnx has the sha256 its lineage.json records
  graphs      preprocess.onnx and pipeline.onnx have the sha256 lineage.json records for them
              (N/A for a folder whose lineage records none: a variant)
  signature   model.sig verifies over the whole folder with the public key (SKIP without a key,
              FAIL then with --require-signature); a variant is covered by its model folder's
  commit      commit.json (written and signed by the release step) names this model.onnx, a
              40-hex commit and the build files that differed from it; its claims are vouched
              for only when the signature link passed (otherwise SKIP: "unverified")
  vectors     the folder's test vectors, re-run in ONNX Runtime, are within their tolerance
  parent      (a variant: its lineage names a `variant`) ../../model.onnx has the sha256 its
              lineage names as its parent
  variants/X  (a model) each variant folder: its integrity, its parent is this model.onnx, its
              test vectors (at most MAX_VARIANTS; symlinked variant folders are refused)
  build       N/A: code, params, dvc.lock and the upstream bytes need the project checkout
              (`python -m stages.verify models/<name>/model.onnx` there)

Everything is read as `check-vectors` reads it: confined to the folder (resolved first, so
`audit .` is the same folder as its absolute path), bounded, and every name or text from the
folder printed escaped and shortened.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signature_onnx.errors import ModelFolderError, SignatureOnnxError, shown
from signature_onnx.folder import (
    LINEAGE_FILE,
    MAX_MODEL_BYTES,
    MODEL_FILE,
    SIGNATURE_FILE,
    VARIANTS_DIR,
    confined,
    own_lineage,
    read_confined,
    read_json,
    recorded_graph_sha256,
    recorded_sha256,
    verify_signature,
)

REPOSITORY_LINKS = "code, params, dvc.lock and the upstream bytes"
COMMIT_FILE = "commit.json"
# The pipeline builds at most four kinds of variant; a folder with hundreds would mean hundreds of
# ONNX Runtime sessions.
MAX_VARIANTS = 16
MAX_DIRTY = 200
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Link:
    name: str
    status: str  # PASS, FAIL, SKIP or N/A
    detail: str


def _sha256(path: Path, root: Path) -> str:
    return hashlib.sha256(read_confined(path, root, MAX_MODEL_BYTES, "an ONNX model file")).hexdigest()


def integrity(folder: Path) -> tuple[Link, Any, str | None]:
    """model.onnx against the folder's own lineage.json; (link, lineage record or None, model sha256 or None)."""
    try:
        path, record = own_lineage(folder)
        if path is None:
            return Link("integrity", "FAIL", f"{shown(folder / LINEAGE_FILE)} is missing"), None, None
        expected = recorded_sha256(record)
        actual = _sha256(folder / MODEL_FILE, folder)
    except SignatureOnnxError as exc:
        return Link("integrity", "FAIL", shown(exc, 300)), None, None
    if actual != expected:
        return (
            Link("integrity", "FAIL", f"model.onnx has sha256 {actual}, lineage.json records {shown(expected)}"),
            record,
            actual,
        )
    return Link("integrity", "PASS", f"model.onnx sha256 {actual}, as lineage.json records"), record, actual


def graphs(folder: Path, record: Any) -> Link:
    """preprocess.onnx and pipeline.onnx against the sha256 the lineage records for each."""
    recorded = dict(recorded_graph_sha256(record))
    if not recorded:
        return Link("graphs", "N/A", "lineage.json records no preprocess.onnx or pipeline.onnx")
    for file, expected in recorded.items():
        try:
            actual = _sha256(folder / file, folder)
        except SignatureOnnxError as exc:
            return Link("graphs", "FAIL", shown(exc, 300))
        if actual != expected:
            return Link("graphs", "FAIL", f"{file} has sha256 {actual}, lineage.json records {expected}")
    return Link("graphs", "PASS", f"{', '.join(recorded)}: sha256 as lineage.json records")


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
    return Link(
        "signature",
        "PASS",
        f"model.sig verifies with {shown(public_key.name)} over every file of {shown(folder.name)}/ but itself",
    )


def commit(folder: Path, model_sha256: str | None, signed: bool) -> Link:
    """commit.json's claims, checked for form and for naming this model.onnx; vouched for only when signed."""
    path = folder / COMMIT_FILE
    if not path.exists():
        return Link("commit", "SKIP", f"{shown(path)} is absent (the release step writes it when signing)")
    try:
        document = read_json(path, folder)
        repository, sha, dirty, named = (
            document["repository"],
            document["commit"],
            document["dirty"],
            document["model_sha256"],
        )
    except (SignatureOnnxError, KeyError, TypeError) as exc:
        return Link(
            "commit", "FAIL", f"{shown(path)}: expected repository, commit, dirty and model_sha256 ({shown(exc, 120)})"
        )
    if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
        return Link("commit", "FAIL", f"{shown(path)}: commit {shown(sha, 60)} is not a 40-hex git commit")
    if not isinstance(dirty, list) or len(dirty) > MAX_DIRTY or not all(isinstance(d, str) for d in dirty):
        return Link("commit", "FAIL", f"{shown(path)}: dirty must be a list of at most {MAX_DIRTY} file names")
    if not (repository is None or isinstance(repository, str)):
        return Link("commit", "FAIL", f"{shown(path)}: repository must be an address or null")
    if named != model_sha256:
        return Link(
            "commit", "FAIL", f"{shown(path)} names model.onnx sha256 {shown(named, 70)}, the file has {model_sha256}"
        )
    state = f"dirty: {shown(', '.join(dirty), 100)}" if dirty else "a clean tree"
    claim = f"built at {shown(repository or 'no origin')} commit {sha} from {state}"
    if not signed:
        return Link("commit", "SKIP", f"{claim} (unverified: the signature did not pass)")
    return Link("commit", "PASS", claim)


def vectors(folder: Path, name: str = "vectors") -> Link:
    from signature_onnx.vectors import check_vectors

    try:
        results = check_vectors(folder)
    except SignatureOnnxError as exc:
        return Link(name, "FAIL", shown(exc, 300))
    failed = [r for r in results if not r.passed]
    if failed:
        return Link(
            name,
            "FAIL",
            f"{len(failed)} of {len(results)} test sets outside tolerance; "
            f"first: {shown(failed[0].name, 40)}: {shown(failed[0].failure, 200)}",
        )
    return Link(name, "PASS", f"{len(results)} test sets within tolerance in ONNX Runtime")


def parent_of(variant: Path, record: Any, name: str = "parent") -> Link:
    """The variant's lineage names its parent's sha256; the parent is ../../model.onnx."""
    parent = record.get("parent") if isinstance(record, dict) else None
    wanted = parent.get("sha256") if isinstance(parent, dict) else None
    root = variant.parent.parent
    model = root / MODEL_FILE
    if variant.parent.name != VARIANTS_DIR or not model.exists():
        return Link(
            name,
            "FAIL",
            f"{shown(variant)}: a variant lies in <model>/variants/<variant>/ beside its parent model.onnx; none found",
        )
    try:
        actual = _sha256(model, root)
    except SignatureOnnxError as exc:
        return Link(name, "FAIL", shown(exc, 300))
    if actual != wanted:
        return Link(
            name, "FAIL", f"{shown(model)} has sha256 {actual}, the variant's lineage names {shown(wanted, 70)}"
        )
    recipe = record.get("recipe") if isinstance(record, dict) else None
    return Link(
        name,
        "PASS",
        f"{shown(record.get('variant'), 40)} of {shown(model)} (sha256 {actual}), recipe {shown(recipe, 100)}",
    )


def variant_folders(folder: Path) -> list[Path]:
    """The variant folders of a model folder, each confined to it (a symlinked one is refused)."""
    root = folder / VARIANTS_DIR
    if not root.exists():
        return []
    confined(root, folder)
    found = sorted(p for p in root.iterdir() if p.is_dir() or p.is_symlink())
    if len(found) > MAX_VARIANTS:
        raise ModelFolderError(f"{shown(root)}: {len(found)} entries; expected at most {MAX_VARIANTS} variant folders")
    for variant in found:
        if variant.is_symlink():
            raise ModelFolderError(f"{shown(variant)}: a symlink; expected a variant folder inside {shown(folder)}")
        confined(variant, folder)
    return found


def variant_links(folder: Path) -> Iterator[Link]:
    try:
        found = variant_folders(folder)
    except SignatureOnnxError as exc:
        yield Link("variants", "FAIL", shown(exc, 300))
        return
    for variant in found:
        label = f"variants/{shown(variant.name, 40)}"
        link, record, _ = integrity(variant)
        if link.status != "PASS":
            yield Link(label, "FAIL", link.detail)
            continue
        parent = parent_of(variant, record, label)
        if parent.status != "PASS":
            yield parent
            continue
        checked = vectors(variant, label)
        yield checked if checked.status == "FAIL" else Link(label, "PASS", f"{parent.detail}; {checked.detail}")


def audit(path: Path, public_key: Path | None = None, require_signature: bool = False) -> list[Link]:
    """Every link the folder at `path` (or its model.onnx) can prove without the repository, in order."""
    given = path.parent if path.suffix == ".onnx" else path
    try:
        folder = given.resolve(strict=True)  # `audit .` inside a variant is that variant
    except OSError as exc:
        raise ModelFolderError(
            f"{shown(given)}: cannot be resolved ({shown(exc.strerror or exc)}); expected a model folder"
        ) from None
    if not (folder / MODEL_FILE).is_file():
        raise ModelFolderError(
            f"{shown(given)}: no model.onnx; expected a published model folder (models/<name>/ or a variant folder)"
        )
    links = []
    link, record, model_sha256 = integrity(folder)
    links.append(link)
    links.append(graphs(folder, record))
    # What the folder's own lineage says it is decides, never how the path is spelled.
    is_variant = isinstance(record, dict) and "variant" in record
    signed_root = folder.parent.parent if is_variant and not (folder / SIGNATURE_FILE).exists() else folder
    links.append(signature(signed_root, public_key, require_signature))
    if not is_variant:
        links.append(commit(folder, model_sha256, links[-1].status == "PASS"))
    links.append(vectors(folder))
    if is_variant:
        links.append(parent_of(folder, record))
    else:
        links.extend(variant_links(folder))
    links.append(
        Link(
            "build",
            "N/A",
            f"{REPOSITORY_LINKS}: not checkable from a folder; in the project checkout run "
            "`python -m stages.verify models/<name>/model.onnx`",
        )
    )
    return links
