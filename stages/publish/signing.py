"""Signing a published model folder with OpenSSF model-signing (elliptic-curve key, offline).

The signature covers every file of models/<name>/ but itself: exactly the DVC-tracked,
machine-independent files of the published folder (model.onnx, lineage.json, the provenance, the
card, preprocessing.json, verdict.json, the test vectors and every variant folder; measured
errors live in reports/, outside it). It is a Sigstore bundle (a DSSE envelope around an in-toto
statement listing each file's sha256) written to models/<name>/model.sig, which git tracks (the
one committed file of the folder), so a clone, a `dvc pull` and `dvc artifacts get` carry it and
the upstream CLI verifies the folder as it arrives:
`model_signing verify key --signature models/NAME/model.sig --public_key KEY.pub models/NAME`.

ECDSA signatures are randomised, so a signature is never a DVC output: `dvc repro` builds
without a key, and signing is a separate release step (stages.sign) with the private key named
by the user's environment. Verification needs only the public key.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from signature_onnx.errors import SignatureOnnxError
from signature_onnx.folder import SIGNATURE_FILE, UNSIGNED, signed_files_config, verify_signature
from stages.core.errors import PipelineError, first_line

__all__ = ["SIGNATURE_FILE", "UNSIGNED", "sign_folder", "verify_folder"]
KEY_ENV = "MODEL_SIGNING_KEY"
KEY_PASSWORD_ENV = "MODEL_SIGNING_KEY_PASSWORD"
PUBLIC_KEY_ENV = "MODEL_SIGNING_PUBLIC_KEY"
NEW_KEY_HINT = (
    "create one outside the repository: openssl ecparam -name prime256v1 -genkey -noout -out ~/model-signing.pem "
    "&& openssl ec -in ~/model-signing.pem -pubout -out model-signing.pub"
)


def _hashing_config():  # model_signing.hashing.Config
    from model_signing import hashing

    return signed_files_config(hashing)


def _reason(exc: BaseException) -> str:
    return first_line(exc)


def sign_folder(folder: Path, private_key: Path, password: str | None = None) -> Path:
    """Sign `folder` with the EC private key PEM `private_key`; return the signature's path.

    The signature is written beside the folder first and renamed into it, so a failed run
    leaves the previous signature in place and never signs a half-written one.
    """
    from model_signing import signing

    if not private_key.is_file():
        raise PipelineError(f"signing key {private_key}: not a file; {NEW_KEY_HINT}")
    target = folder / SIGNATURE_FILE
    fd, temporary = tempfile.mkstemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".sig.tmp")
    os.close(fd)
    try:
        config = signing.Config().use_elliptic_key_signer(private_key=private_key, password=password)
        config.set_hashing_config(_hashing_config()).sign(folder, temporary)
        os.replace(temporary, target)
    except PipelineError:
        raise
    except (ValueError, TypeError) as exc:  # cryptography's messages for a wrong key or password
        raise PipelineError(
            f"signing key {private_key}: cannot sign with it ({_reason(exc)}); "
            f"it must be an EC P-256/384/521 private key PEM ({KEY_PASSWORD_ENV} if encrypted)"
        ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def verify_folder(folder: Path, public_key: Path) -> None:
    """Check `folder`/model.sig against the folder's files and `public_key` (the package's check); PipelineError if not."""
    try:
        verify_signature(folder, public_key)
    except SignatureOnnxError as exc:
        raise PipelineError(str(exc)) from None
