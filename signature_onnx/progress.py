"""Progress bars on stderr for batches (tqdm), silent when asked or when stderr is not a terminal."""

from __future__ import annotations

from tqdm import tqdm


def progress(*, total: int, desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A tqdm bar over `total` items; disabled when `enabled` is False or stderr is not a TTY."""
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, leave=False)
