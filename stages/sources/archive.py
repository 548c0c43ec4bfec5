"""One file out of a downloaded zip archive, safely: `https://host/models.zip#inner/name.pkl`.

The sigver_wiwd pickles are published inside zip archives, so a `url` address may end in
`#<member>` (a fragment is never sent to the server). The member must be named exactly; its
bytes are streamed out with the same size limit as a download (the header's size is not
trusted: a zip bomb stops at the limit), written to a temporary file, fsynced and renamed into
place. The pin is that of the extracted file: the upstream file, whatever carried it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from stages.core.atomic import fsync_dir
from stages.core.errors import PipelineError
from stages.core.untrusted import shown
from stages.sources.pins import Pin


def split_member(address: str) -> tuple[str, str | None]:
    """('https://host/a.zip', 'dir/file.pkl') for an address with '#member', else (address, None)."""
    base, hash_sign, member = address.partition("#")
    return base, (member if hash_sign and member else None)


def extract_member(archive: Path, member: str, dest: Path, max_bytes: int, what: str, source: str) -> Pin:
    """Copy `member` of the zip `archive` to `dest` atomically; return its Pin.

    Raises PipelineError naming the archive and member when the archive is not a zip, the member
    is missing (listing what is there) or listed more than once (zip readers disagree on which
    copy counts: `unzip` shows the first, Python's zipfile the last), it cannot be extracted, or
    it inflates beyond `max_bytes`. Names from the archive are shown escaped and shortened.
    """
    try:
        bundle = zipfile.ZipFile(archive)
    except Exception as exc:  # BadZipFile, and ValueError/struct.error/... for a crafted directory
        raise PipelineError(
            f"{what}: {source} is not a readable zip archive ({_reason(exc)}); check the address"
        ) from None
    with bundle:
        names = bundle.namelist()
        if member not in names:
            raise PipelineError(
                f"{what}: the archive {source} has no member '{shown(member, 120)}' (it has: {_listing(names)}); "
                "fix the '#...' part of the address"
            )
        repeated = sorted(name for name, count in Counter(names).items() if count > 1)  # linear: names are many
        if repeated:
            raise PipelineError(
                f"{what}: the archive {source} lists {_listing(repeated)} more than once; zip readers disagree on which "
                "copy is the file, so it is refused"
            )
        digest, size = hashlib.sha256(), 0
        fd, temporary = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, bundle.open(member) as inner:
                for block in iter(lambda: inner.read(1 << 20), b""):
                    size += len(block)
                    if size > max_bytes:
                        raise PipelineError(
                            f"{what}: {member} in {source} inflates beyond the size limit of {max_bytes} bytes "
                            "(source.max_bytes); refused"
                        )
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, dest)
        except PipelineError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            raise PipelineError(f"{what}: {member} in {source} is damaged ({_reason(exc)}); fetch again") from None
        except OSError as exc:
            raise PipelineError(
                f"{what}: cannot write {dest.name} into {dest.parent} ({exc.strerror or _reason(exc)})"
            ) from None
        except Exception as exc:  # encrypted, an unsupported version or compression, a crafted header
            raise PipelineError(
                f"{what}: {member} in {source} cannot be extracted ({_reason(exc)}); use a plain zip"
            ) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
    fsync_dir(dest.parent)
    return Pin(sha256=digest.hexdigest(), size=size, source=f"{source}#{member}")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {shown(str(exc), 120)}" if str(exc) else type(exc).__name__


def _listing(names: list[str]) -> str:
    """Up to ten member names, escaped and shortened (they are the archive's to choose)."""
    shown_names = ", ".join(shown(name, 80) for name in names[:10])
    return shown_names + (f" ... ({len(names)} in all)" if len(names) > 10 else "")
