"""Import tracer for the dependency-completeness test (tests/test_stage_dependencies.py).

Put this folder on PYTHONPATH and set STAGE_IMPORT_TRACE to a folder: every Python process
(a stage, and any process it starts) then writes, when it exits, one JSON file there with its
command line and the source file of every module it imported. Nothing else is changed.
"""

import atexit
import json
import os
import sys


def _write_trace() -> None:
    folder = os.environ.get("STAGE_IMPORT_TRACE")
    if not folder:
        return
    files = sorted({getattr(module, "__file__", None) or "" for module in list(sys.modules.values())} - {""})
    record = {"argv": sys.argv, "orig_argv": getattr(sys, "orig_argv", []), "cwd": os.getcwd(), "files": files}
    with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as handle:
        json.dump(record, handle)


if os.environ.get("STAGE_IMPORT_TRACE"):
    atexit.register(_write_trace)
