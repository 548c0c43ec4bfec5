"""The one exception type every stage raises for a problem the user can fix.

`stages.core.cli.run_stage` turns it into a single line on stderr and a non-zero exit code, so a user
never sees a traceback for bad params, a bad download or a model that fails validation.
"""

from __future__ import annotations

from signature_onnx.errors import first_line  # the one copy, shared with the package

__all__ = ["PipelineError", "first_line"]


class PipelineError(Exception):
    """A failure with a message that names the file or key at fault and says what to do."""
