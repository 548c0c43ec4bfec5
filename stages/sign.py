"""Sign published models (release step): verify each folder, then write models/<name>/model.sig.

The private key is an EC PEM named by $MODEL_SIGNING_KEY (or --key), kept outside the
repository; $MODEL_SIGNING_KEY_PASSWORD unlocks an encrypted one. A model is signed only when
every check of `python -m stages.verify` passes for it (and for each of its variants), so a
signature never vouches for a file that does not match its lineage, dvc.lock, params and code.
Before signing, models/<name>/commit.json names the repository and the commit (HEAD) the build
was made at (stages/publish/commit_record.py); commit it with model.sig:
`git add models/*/model.sig models/*/commit.json`. Works offline.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from stages.core import paths
from stages.core.atomic import write_bytes
from stages.core.cli import report_errors
from stages.core.digests import md5_file
from stages.core.errors import PipelineError
from stages.core.params import PARAMS_FILE, load_params
from stages.publish import commit_record, lock_history, signing
from stages.verification.links import verify_file

log = logging.getLogger("stages.sign")


def private_key(given: Path | None, root: Path) -> Path:
    """The key path from --key or the environment; refused when it lies inside the project."""
    if given is None:
        named = os.environ.get(signing.KEY_ENV)
        if not named:
            raise PipelineError(
                f"no signing key: set {signing.KEY_ENV} to an EC private key PEM; {signing.NEW_KEY_HINT}"
            )
        given = Path(named)
    if given.resolve().is_relative_to(root.resolve()):
        raise PipelineError(
            f"signing key {given} is inside the project {root}: keep private keys out of the repository"
        )
    return given


def check_committed_build(root: Path, name: str, onnx_file: Path) -> None:
    """HEAD's dvc.lock must record this model.onnx: commit.json names HEAD as the build's commit."""
    head = lock_history.head(root)
    holding = (
        lock_history.commits_holding(root, f"validate@{name}", f"models/{name}/model.onnx", md5_file(onnx_file)) or []
    )
    if head is None or head not in {c.sha for c in holding}:
        raise PipelineError(
            f"{onnx_file}: HEAD's dvc.lock does not record this build; commit it first "
            "(git add dvc.lock models/*/verdict.json && git commit), then sign"
        )


def sign_models(names: list[str], root: Path, key: Path, password: str | None) -> list[Path]:
    """Verify then sign each model's published folder; nothing is signed if any model fails."""
    folders = []
    for name in names:
        onnx_file = root / paths.published_dir(name) / "model.onnx"
        if not onnx_file.is_file():
            raise PipelineError(f"{onnx_file}: not found; build it first (dvc repro validate@{name})")
        # The model and each of its variants: the signature covers the whole folder, whose file set
        # the dvc.lock link checks (exactly the stages' outputs). The old commit.json is rewritten below.
        checked = [onnx_file, *sorted((onnx_file.parent / "variants").glob("*/model.onnx"))]
        failed = [
            f"{c.link} ({c.detail})"
            for file in checked
            for c in verify_file(file, root, signature=False)
            if c.status in ("FAIL", "N/A") and c.link != "commit"
        ]
        if failed:
            raise PipelineError(
                f"{onnx_file} fails verification, not signing anything (remove files that are not "
                f"stage outputs; rebuild or `dvc checkout` changed ones): {'; '.join(failed)}"[:1500]
            )
        check_committed_build(root, name, onnx_file)
        folders.append(onnx_file.parent)
    signatures = []
    for folder in folders:
        built = json.loads((folder / "lineage.json").read_text())
        # Named inside the folder before signing, so the signature covers the commit it names; put
        # back as it was if signing fails (the previous signature then still verifies).
        record = folder / commit_record.FILE
        previous = record.read_bytes() if record.is_file() else None
        write_bytes(record, commit_record.record(root, built["model"], built["family"], built["onnx"]["sha256"]))
        try:
            signatures.append(signing.sign_folder(folder, key, password))
        except BaseException:
            if previous is None:
                record.unlink()
            else:
                write_bytes(record, previous)
            raise
        log.info("signed %s -> %s", folder, signatures[-1])
    return signatures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stages.sign",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("models", nargs="*", help="model names (default: every model of params.yaml)")
    parser.add_argument("--key", type=Path, default=None, help=f"EC private key PEM (default: ${signing.KEY_ENV})")
    parser.add_argument("--root", type=Path, default=Path("."), help="the project checkout (default: .)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[stages.sign] %(message)s", stream=sys.stderr)

    def run() -> None:
        known = load_params(args.root / PARAMS_FILE).models
        unknown = [name for name in args.models if name not in known]
        if unknown:
            raise PipelineError(f"{args.root / PARAMS_FILE}: no model {unknown} (known: {', '.join(sorted(known))})")
        key = private_key(args.key, args.root)
        sign_models(args.models or sorted(known), args.root, key, os.environ.get(signing.KEY_PASSWORD_ENV))

    return report_errors(run)


if __name__ == "__main__":
    sys.exit(main())
