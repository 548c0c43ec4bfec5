"""A published model folder: `model.onnx` and the small files the pipeline writes beside it.

- `preprocessing.json`: what the model does (`task`: clean | verify | embed) and how its input
  is made (`signature_onnx.preprocessing.Preprocessing`), written by the pipeline's validate
  stage from the model's params entry;
- `lineage.json`: where the weights come from; `source.kind == "builtin"` means synthetic
  stand-in weights, whose results mean nothing (every result then carries a loud warning). A
  variant folder, `<model>/variants/<variant>/`, has its own (its sha256, its parent's, the
  recipe, and the parent's source).

`ModelFolder.open(path)` accepts the folder or its `model.onnx`.

Everything read from a folder is bounded and confined (the folder may come from a registry, a
mirror or a colleague):
- every file read resolves inside the folder (a symlink out of it is refused; DVC's `symlink`
  cache type is therefore not supported, its default copies and hardlinks are), is a regular
  file (not a FIFO or a device) and has at most a fixed number of bytes;
- JSON files: at most 1 MiB, nesting at most 32 levels, integers of at most 18 digits and no
  NaN / Infinity;
- integrity: when the folder has its own `lineage.json`, `model.onnx` must have the sha256 it
  records (`onnx.sha256`), else loading is refused naming both values (`integrity_check=False`,
  `--no-integrity-check`, turns it off);
- signature (optional, `public_key=` / `--public-key`): the `model.sig` the release step
  (`stages.sign`) writes with OpenSSF model-signing and an EC key must verify with the given
  public key PEM over every file of the folder but itself (git's own names, `.gitignore` and the
  like, included); needs the `signing` extra (`pip install './[signing]'`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signature_onnx.errors import IntegrityError, ModelFolderError, SignatureOnnxError, first_line, shown
from signature_onnx.preprocessing import Preprocessing

PREPROCESSING_FILE = "preprocessing.json"
LINEAGE_FILE = "lineage.json"
MODEL_FILE = "model.onnx"
# Graphs built from model.onnx and the preprocessing (stages/preprocess_graph/): decoded pixels in.
PREPROCESS_FILE = "preprocess.onnx"
PIPELINE_FILE = "pipeline.onnx"
GRAPH_FILES = (PREPROCESS_FILE, PIPELINE_FILE)
# Their names for network input X: "X_pixels" (uint8 [height, width, 3] RGB in), "X_valid"
# (bool out: false where the Python preprocessing refuses the image).
PIXELS_SUFFIX = "_pixels"
VALID_SUFFIX = "_valid"
SIGNATURE_FILE = "model.sig"
# What the release step's signature leaves out (stages/publish/signing.py signs with the same
# list): only the signature. Every other file of a published folder is machine-independent and
# covered (measured errors are kept outside the folder, in the pipeline's reports/).
UNSIGNED = (SIGNATURE_FILE,)
# A faster variant is published as models/<name>/variants/<variant>/ (model.onnx, preprocessing.json,
# lineage.json naming its parent, test vectors): a model folder of its own, signed by its model's model.sig.
VARIANTS_DIR = "variants"
TASKS = ("clean", "verify", "embed")
FORMAT = 1
# Files larger than this are not a description: refuse instead of reading them into memory.
MAX_JSON_BYTES = 1 << 20
# The pipeline's JSON files nest 4 levels deep; 32 leaves room and stays far below the depth at
# which Python's parser raises RecursionError.
MAX_JSON_DEPTH = 32
# 18 digits hold every size, count and seed the pipeline writes; a 400-digit "size" is refused
# while parsing (it would overflow later, far from the file's name).
MAX_JSON_INT_DIGITS = 18
# Protocol buffers cannot exceed 2 GiB; the published models are below 100 MB.
MAX_MODEL_BYTES = 2 << 30
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def preprocessing_json(model: str, task: str, preprocessing: Preprocessing) -> bytes:
    """The bytes of `preprocessing.json` (sorted keys, fixed layout, so the same on every machine)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    body = {"format": FORMAT, "model": model, "task": task, "preprocessing": preprocessing.to_dict()}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def confined(path: Path, root: Path) -> Path:
    """`path` resolved, refused unless it lies inside `root` (a symlink out of the folder, `..`)."""
    try:
        resolved = path.resolve(strict=True)
        inside = resolved.is_relative_to(root.resolve(strict=True))
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop on older Pythons
        raise ModelFolderError(
            f"{shown(path)}: cannot be resolved ({first_line(exc)}); expected a file of the model folder"
        ) from None
    if not inside:
        raise ModelFolderError(
            f"{shown(path)}: resolves to {shown(resolved)}, outside the model folder {shown(root)}; "
            "expected a file inside the folder (symlinks out of it are refused)"
        )
    return resolved


def read_confined(path: Path, root: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file inside `root`, at most `limit` of them; `what` says what it should be.

    Opened without following a final symlink and without blocking (a FIFO is refused, not
    waited on), then checked on the open descriptor, so the file read is the file checked.
    """
    resolved = confined(path, root)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(resolved, flags)
    except OSError as exc:
        raise ModelFolderError(
            f"{shown(path)}: cannot be opened ({shown(exc.strerror or exc)}); expected {what}"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelFolderError(f"{shown(path)}: not a regular file; expected {what}")
        if info.st_size > limit:
            raise ModelFolderError(
                f"{shown(path)}: {info.st_size} bytes, more than the {limit} allowed; expected {what}"
            )
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 24, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ModelFolderError(
            f"{shown(path)}: cannot be read ({shown(exc.strerror or exc)}); expected {what}"
        ) from None
    finally:
        os.close(fd)
    if total > limit:  # grew while being read
        raise ModelFolderError(f"{shown(path)}: more than the {limit} bytes allowed; expected {what}")
    return b"".join(chunks)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows here")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (at most {MAX_JSON_INT_DIGITS} allowed)")
    return int(text)


def parse_json(data: bytes, where: str) -> Any:
    """Parse the bytes of a folder's JSON file with the bounds above; `where` names the file."""
    try:
        text = data.decode("utf-8")
        depth = deepest = 0
        # Brackets outside strings give the nesting depth without recursion (linear, no parse yet).
        for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
            depth += 1 if bracket in "[{" else -1
            deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            raise ValueError(f"nested {deepest} levels deep, more than {MAX_JSON_DEPTH}")
        return json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFolderError(
            f"{where}: not readable JSON ({first_line(exc)}); pull or rebuild the model folder"
        ) from None


def read_json(path: Path, root: Path) -> Any:
    """A JSON file of the folder `root`: confined, bounded in bytes, depth and numbers."""
    data = read_confined(path, root, MAX_JSON_BYTES, "a small JSON description file")
    return parse_json(data, shown(path))


@dataclass(frozen=True)
class ModelFolder:
    """What the package needs to run one published model.

    name: the model's name (its params key); task: clean | verify | embed;
    preprocessing: how images become its input; synthetic: True when its weights are the
    pipeline's built-in stand-ins (results mean nothing); source: a one-line provenance;
    root: the folder itself; expected_sha256: the sha256 its own lineage.json records for
    model.onnx (None for a folder without a lineage of its own, such as a variant's).
    """

    onnx_path: Path
    name: str
    task: str
    preprocessing: Preprocessing
    synthetic: bool
    source: str
    root: Path | None = None
    expected_sha256: str | None = None
    lineage_path: Path | None = None
    graph_sha256: tuple[tuple[str, str], ...] = ()  # (file, sha256) of GRAPH_FILES its lineage records

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> "ModelFolder":
        """Read a model folder (or the path of its model.onnx); fail naming the missing or bad file."""
        given = Path(path)
        folder = given.parent if given.suffix == ".onnx" else given
        onnx_path = given if given.suffix == ".onnx" else folder / MODEL_FILE
        if not onnx_path.is_file():
            raise ModelFolderError(
                f"{shown(onnx_path)}: no such model file; expected a published model folder "
                "(models/<name>/ with model.onnx, preprocessing.json, lineage.json): run `dvc pull` or `dvc repro`"
            )
        confined(onnx_path, folder)
        preprocessing_path = folder / PREPROCESSING_FILE
        if not preprocessing_path.is_file():
            raise ModelFolderError(
                f"{shown(preprocessing_path)}: missing; the folder must hold the preprocessing.json the pipeline publishes "
                "beside model.onnx (rebuild with `dvc repro` or pull the whole folder)"
            )
        settings = read_json(preprocessing_path, folder)
        where = shown(preprocessing_path)
        if not isinstance(settings, dict) or settings.get("format") != FORMAT:
            raise ModelFolderError(f'{where}: expected a JSON object with "format": {FORMAT}')
        task = settings.get("task")
        if task not in TASKS:
            raise ModelFolderError(f"{where}: task {shown(repr(task))} is not one of {list(TASKS)}")
        name = settings.get("model")
        if not isinstance(name, str) or not name:
            raise ModelFolderError(f'{where}: "model" must be the model\'s name')
        preprocessing = Preprocessing.from_dict(settings.get("preprocessing"), f"{where}: preprocessing")
        own_path, record = own_lineage(folder)
        lineage = own_path or folder / LINEAGE_FILE
        if own_path is None and folder.parent.name == VARIANTS_DIR and (folder.parent.parent / LINEAGE_FILE).is_file():
            # A variant borrows its model's provenance (for the warning), never its sha256 (another file's).
            lineage = folder.parent.parent / LINEAGE_FILE
            synthetic, source = _provenance(lineage, read_json(lineage, folder.parent.parent))
        else:
            synthetic, source = _provenance(lineage, record)
        expected = recorded_sha256(record) if own_path is not None else None
        graphs = recorded_graph_sha256(record) if own_path is not None else ()
        return cls(onnx_path, name, task, preprocessing, synthetic, source, folder, expected, own_path, graphs)

    @property
    def signed_root(self) -> Path:
        """The folder whose model.sig covers this model: its own, or a variant's model folder."""
        folder = self.onnx_path.parent
        if not (folder / SIGNATURE_FILE).exists() and folder.parent.name == VARIANTS_DIR:
            return folder.parent.parent
        return folder

    def model_bytes(self, *, integrity_check: bool = True) -> bytes:
        """The bytes of model.onnx, checked against the folder's own lineage (see `checked_model_bytes`)."""
        return checked_model_bytes(self.onnx_path, self.lineage_path, self.expected_sha256, integrity_check)

    def graph_bytes(self, file: str, *, integrity_check: bool = True) -> bytes:
        """The bytes of preprocess.onnx or pipeline.onnx beside model.onnx, checked like model.onnx
        against the sha256 the folder's lineage records for it (`onnx.graphs.<file>.sha256`)."""
        path = self.onnx_path.parent / file
        if not path.is_file():
            raise ModelFolderError(
                f"{shown(path)}: missing; expected the {file} the pipeline publishes beside model.onnx "
                "(pull the whole folder again, or use the Python preprocessing: --preprocess python)"
            )
        return checked_model_bytes(path, self.lineage_path, dict(self.graph_sha256).get(file), integrity_check)

    def verify_signature(self, public_key: str | os.PathLike[str]) -> None:
        """Check the release signature (model.sig, OpenSSF model-signing, EC key) with `public_key`, a PEM file."""
        verify_signature(self.signed_root, Path(public_key))


def own_lineage(folder: Path) -> tuple[Path | None, Any]:
    """(path, record) of the folder's own lineage.json, or (None, None) when it has none."""
    path = folder / LINEAGE_FILE
    # exists(), not is_file(): a FIFO or device named lineage.json is refused, never taken as "no lineage".
    return (path, read_json(path, folder)) if path.exists() else (None, None)


def checked_model_bytes(
    onnx_path: Path, lineage_path: Path | None, expected: str | None, integrity_check: bool
) -> bytes:
    """The bytes of a folder's model file, read once (what is checked is what runs), confined and bounded.

    With `integrity_check` and a lineage (`lineage_path`), the bytes' sha256 must be `expected`,
    the digest that lineage records; IntegrityError names both values otherwise, or says the
    lineage records none.
    """
    data = read_confined(onnx_path, onnx_path.parent, MAX_MODEL_BYTES, "an ONNX model file")
    if integrity_check and lineage_path is not None:
        actual = hashlib.sha256(data).hexdigest()
        if expected is None:
            raise IntegrityError(
                f"{shown(lineage_path)}: records no valid sha256 (64 hex digits) for {shown(onnx_path.name)}, so {shown(onnx_path)} "
                "cannot be checked; expected the lineage the pipeline writes (pull the folder again), or turn the check off "
                "(--no-integrity-check / integrity_check=False)"
            )
        if actual != expected:
            raise IntegrityError(
                f"{shown(onnx_path)}: sha256 {actual}, but {shown(lineage_path)} records {expected}; "
                "expected the model the lineage describes (pull the folder again; the check can be turned off "
                "with --no-integrity-check / integrity_check=False)"
            )
    return data


def recorded_sha256(record: Any) -> str | None:
    """The sha256 a lineage record gives for model.onnx (`onnx.sha256`), or None when it has none."""
    onnx_entry = record.get("onnx") if isinstance(record, dict) else None
    digest = onnx_entry.get("sha256") if isinstance(onnx_entry, dict) else None
    return digest if isinstance(digest, str) and _SHA256.match(digest) else None


def recorded_graph_sha256(record: Any) -> tuple[tuple[str, str], ...]:
    """(file, sha256) for each of GRAPH_FILES the lineage record lists under `onnx.graphs` with a valid digest."""
    onnx_entry = record.get("onnx") if isinstance(record, dict) else None
    graphs = onnx_entry.get("graphs") if isinstance(onnx_entry, dict) else None
    found = []
    for file in GRAPH_FILES:
        entry = graphs.get(file) if isinstance(graphs, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(digest, str) and _SHA256.match(digest):
            found.append((file, digest))
    return tuple(found)


def verify_signature(folder: Path, public_key: Path) -> None:
    """`folder`/model.sig must verify with the EC public key PEM `public_key` over the folder's files.

    The same format `stages.sign` writes (a Sigstore bundle listing each file's sha256, the
    files in UNSIGNED left out). Needs the optional `signing` extra.
    """
    try:
        from model_signing import hashing, verifying
    except ImportError:
        raise SignatureOnnxError(
            f"{shown(public_key)}: checking a signature needs the model-signing package, which is not installed; "
            "expected `pip install 'signature-onnx[signing]'` (or `pip install './[signing]'` from a checkout)"
        ) from None
    signature = folder / SIGNATURE_FILE
    if not public_key.is_file():
        raise SignatureOnnxError(f"{shown(public_key)}: not a file; expected an EC public key PEM")
    if not signature.is_file():
        raise IntegrityError(
            f"{shown(signature)}: missing; a signature was required (the release step writes it with `python -m stages.sign`)"
        )
    confined(signature, folder)
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except Exception as exc:  # cryptography raises several types for a malformed PEM
        raise SignatureOnnxError(f"{shown(public_key)}: not an EC public key PEM ({first_line(exc)})") from None
    try:
        config.set_hashing_config(signed_files_config(hashing)).verify(folder, signature)
    except Exception as exc:  # bad signature, changed file, damaged bundle: all mean "not verified"
        raise IntegrityError(
            f"{shown(signature)}: does not verify with {shown(public_key)} ({signature_mismatch(exc)}); "
            "expected a folder signed by that key and unchanged since"
        ) from None


def signed_files_config(hashing: Any) -> Any:
    """The model-signing hashing config of a published folder (the release step signs with it):
    every file but the signature, git's names included (a `.gitattributes` added to a folder
    must fail it, not pass unseen)."""
    return hashing.Config().set_ignored_paths(paths=UNSIGNED, ignore_git_paths=False)


def signature_mismatch(exc: BaseException) -> str:
    """model-signing lists changed files with raw digest bytes; name the files instead."""
    text = str(exc)
    # The names sit inside the repr of a list of strings: quoted 'x' or, when a digest's bytes hold
    # a double quote, \'x\'.
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]{1,200})\\?'", text)
    if changed:
        return f"changed since signing: {shown(', '.join(changed))}"
    return first_line(exc, 200)


def _provenance(lineage_path: Path, lineage: Any) -> tuple[bool, str]:
    """(synthetic weights?, one-line source) from lineage.json; unknown provenance counts as synthetic.

    Only "kaggle" and "url" with `synthetic_weights` absent or false count as real weights.
    """
    if lineage is None:
        return True, f"unknown: {shown(lineage_path)} is missing, so the weights may be synthetic"
    source = lineage.get("source") if isinstance(lineage, dict) else None
    kind = source.get("kind") if isinstance(source, dict) else None
    if kind not in ("builtin", "kaggle", "url"):
        return True, f"unknown: {shown(lineage_path)} names no source kind"
    if kind == "builtin":
        return True, f"built-in stand-in (seed {shown(source.get('seed'), 40)})"
    if lineage.get("synthetic_weights", False) is not False or source.get("synthetic_weights", False) is not False:
        return True, f"{shown(lineage_path)} says synthetic_weights"
    return False, shown(source.get("kernel") or kind, 120)
