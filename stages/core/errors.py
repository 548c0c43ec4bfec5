"""The one exception type every stage raises for a problem the user can fix.

`stages.core.cli.run_stage` turns it into a single line on stderr and a non-zero exit code, so a user
never sees a traceback for bad params, a bad download or a model that fails validation.
"""

from __future__ import annotations


class PipelineError(Exception):
    """A failure with a message that names the file or key at fault and says what to do."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
