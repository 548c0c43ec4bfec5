"""Signing a published model folder with OpenSSF model-signing (elliptic-curve key, offline).

The signature covers every file of models/<name>/ except the per-machine metrics and the
signature itself: model.onnx, lineage.json, provenance.intoto.json and README.md. It is a
Sigstore bundle (a DSSE envelope around an in-toto statement listing each file's sha256)
written to models/<name>/model.sig.

ECDSA signatures are randomised, so a signature is never a DVC output: `dvc repro` builds
without a key, and signing is a separate release step (stages.sign) with the private key named
by the user's environment. Verification needs only the public key.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

from stages.core.errors import PipelineError, first_line

SIGNATURE_FILE = "model.sig"
# validation.json and samples.csv hold measured errors that differ between CPUs in their last
# digits: a rebuild elsewhere must not invalidate the signature of the tracked artifacts.
UNSIGNED = ("validation.json", "samples.csv", SIGNATURE_FILE)
KEY_ENV = "MODEL_SIGNING_KEY"
KEY_PASSWORD_ENV = "MODEL_SIGNING_KEY_PASSWORD"
PUBLIC_KEY_ENV = "MODEL_SIGNING_PUBLIC_KEY"
NEW_KEY_HINT = (
    "create one outside the repository: openssl ecparam -name prime256v1 -genkey -noout -out ~/model-signing.pem "
    "&& openssl ec -in ~/model-signing.pem -pubout -out model-signing.pub"
)


def _hashing_config():  # model_signing.hashing.Config
    from model_signing import hashing

    return hashing.Config().set_ignored_paths(paths=UNSIGNED)


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
        raise PipelineError(f"signing key {private_key}: cannot sign with it ({_reason(exc)}); "
                            f"it must be an EC P-256/384/521 private key PEM ({KEY_PASSWORD_ENV} if encrypted)") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    return target


def verify_folder(folder: Path, public_key: Path) -> None:
    """Check `folder`/model.sig against the folder's files and `public_key`; PipelineError if not."""
    from model_signing import verifying

    signature = folder / SIGNATURE_FILE
    if not public_key.is_file():
        raise PipelineError(f"public key {public_key}: not a file")
    try:
        config = verifying.Config().use_elliptic_key_verifier(public_key=public_key)
    except Exception as exc:  # cryptography raises several types for a malformed PEM
        raise PipelineError(f"public key {public_key}: not an EC public key PEM ({_reason(exc)})") from None
    try:
        config.set_hashing_config(_hashing_config()).verify(folder, signature)
    except Exception as exc:  # bad signature, changed file, damaged bundle: all mean "not verified"
        raise PipelineError(f"{signature} does not verify with {public_key.name}: {_mismatch(exc)}") from None


def _mismatch(exc: BaseException) -> str:
    """model-signing lists changed files with raw digest bytes; name the files instead."""
    text = str(exc)
    # The names sit inside the repr of a list of strings: quoted 'x' or, when a digest's bytes hold
    # a double quote, \'x\'.
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]{1,200})\\?'", text)
    if changed:
        return f"changed since signing: {', '.join(changed)}"
    return _reason(exc)
