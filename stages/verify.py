"""Check published ONNX files against their lineage, the project's locks, code, params and signature.

For each file it recomputes the digests and prints one PASS / FAIL / SKIP line per link:
  onnx         the file loads and carries lineage metadata (what it is, whether weights are real)
  lineage      lineage.json beside it names these bytes and holds the same facts as the metadata
  provenance   provenance.intoto.json is the SLSA statement rebuilt from them, subject = these bytes
  model card   README.md beside it names these bytes and warns of synthetic weights when it must
  dvc.lock     the checkout's dvc.lock records the md5 of model.onnx and of every file beside it
  history      the git commits whose dvc.lock holds this model.onnx
  pins         sources.lock.yaml pins the upstream sha256 of a kaggle / url source
  upstream     data/raw/<model>/ (when present) holds the upstream bytes the metadata names
  params       the checkout's params entry has the digest the metadata names
  code         the checkout's stages/ package has the digest the metadata names
  commit       commit.json (written when signing) names a commit whose dvc.lock holds this file
  signature    model.sig (when present) verifies with the public key
A variant (models/<model>/variants/<variant>/model.onnx) gets its own links instead of the
parent's: `variant` (its lineage.json names these bytes, its parent's sha256 and recipe, as the
metadata does) and `parent` (../../model.onnx has that sha256; verify it for the rest).
Without a project checkout at --root (a folder from `dvc artifacts get`, say), the links that
need the repository (dvc.lock, history, pins, upstream, params, code) are N/A, not failed.
Exit status 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from stages.core.cli import report_errors
from stages.core.errors import PipelineError
from stages.publish import signing
from stages.verification.links import verify_file


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m stages.verify",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument(
        "paths", nargs="+", type=Path, metavar="PATH", help="published model.onnx files, e.g. models/*/model.onnx"
    )
    result.add_argument(
        "--root", type=Path, default=Path("."), help="the project checkout to check against (default: .)"
    )
    result.add_argument(
        "--public-key",
        type=Path,
        default=None,
        help=f"EC public key PEM for model.sig (default: ${signing.PUBLIC_KEY_ENV})",
    )
    result.add_argument(
        "--require-signature", action="store_true", help="fail when a file is unsigned or no public key is given"
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    key = args.public_key or (
        Path(os.environ[signing.PUBLIC_KEY_ENV]) if os.environ.get(signing.PUBLIC_KEY_ENV) else None
    )
    failed: list[str] = []

    def run() -> None:
        for path in args.paths:
            if not path.is_file():
                raise PipelineError(f"{path}: not a file; give published model.onnx files (models/<name>/model.onnx)")
        for path in args.paths:
            print(path)
            checks = verify_file(path, args.root, key, args.require_signature)
            for check in checks:
                print(f"  {check.status:<4}  {check.link:<10}  {check.detail}")
            broken = [check.link for check in checks if check.status == "FAIL"]
            if broken:
                failed.append(path.as_posix())
                print(f"  => FAILED: {', '.join(broken)}")
            else:
                print("  => verified")
        if failed:
            raise PipelineError(f"{len(failed)} of {len(args.paths)} files failed verification: {', '.join(failed)}")

    return report_errors(run)


if __name__ == "__main__":
    sys.exit(main())
