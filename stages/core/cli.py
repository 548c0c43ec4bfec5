"""What every stage's command line shares: `python -m stages.<step> MODEL [--params FILE]`.

`run_stage` turns a PipelineError (or a bad argument) into one line on stderr and exit code 1,
so users meet actionable messages, never tracebacks; progress goes to stderr through logging.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from signature_onnx.errors import SignatureOnnxError
from stages.core.errors import PipelineError
from stages.core.params import PARAMS_FILE, ModelSpec, model_spec
from stages.core.untrusted import escape, redact, shorten

MAX_LINE = 2000  # characters of one printed message line
MAX_LINES = 40  # lines of one message (a params file with many mistakes)


def model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("model", help="a model name, a key under 'models' in params.yaml")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    return parser


def run_stage(parser: argparse.ArgumentParser, step: Callable[[str, ModelSpec], None]) -> NoReturn:
    """Parse arguments, load the model's checked params, run `step`, exit 0 or 1 with one line."""
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"[{parser.prog.split()[-1]} {args.model}] %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_SafeRecord())

    def run() -> None:
        step(args.model, model_spec(args.model, args.params))

    exit_without_teardown(report_errors(run))


def exit_without_teardown(code: int) -> NoReturn:
    """Exit with `code` once the exit handlers ran and the standard streams are flushed, skipping
    the interpreter's teardown.

    Why: by now every output is written and closed (atomically, stages.core.atomic); what the
    teardown would still do is unload the libraries the stage imported, which costs 0.55-0.9 s
    in a process that imported PyTorch or TensorFlow and about 0.15 s otherwise (measured per
    stage, docs/performance.md), for every one of the build's stages. The exit handlers still
    run (a few milliseconds: logging's flush, the tests' import tracer). The exit is the usual
    one where the teardown has work left: a thread that is not a daemon still running (the
    interpreter waits for it), or a profiler, tracer or coverage attached (`python -m cProfile`
    writes its report after the module returns).
    """
    if _observed() or any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()  # what the interpreter's own exit runs first (logging.shutdown among them)
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with the descriptor closed
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing left to save
            pass
    os._exit(code)


def _observed() -> bool:
    """A profiler, tracer or coverage watches this process: the older hooks, or (Python 3.12+)
    a tool registered with sys.monitoring, which cProfile and coverage use there."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and any(
        monitoring.get_tool(tool) is not None
        for tool in (monitoring.DEBUGGER_ID, monitoring.COVERAGE_ID, monitoring.PROFILER_ID)
    )


class _SafeRecord(logging.Filter):
    """Every log line is redacted and escaped: a message can never print a secret or forge a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a message whose arguments do not format: show it raw, still safe
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = shorten(escape(redact(message)), MAX_LINE), None
        return True


def one_message(text: str) -> str:
    """A failure message as printed: redacted, control characters escaped, bounded; a message
    of several lines (params' list of mistakes) keeps them, each indented, so that exactly one
    printed line starts with `error:`."""
    lines = redact(text).split("\n")
    shown = [shorten(escape(line), MAX_LINE) for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"... ({len(lines) - MAX_LINES} more lines)")
    first, rest = shown[0], shown[1:]
    return "\n".join([first, *(line if line.startswith(" ") else f"  {line}" for line in rest)])


def report_errors(action: Callable[[], None]) -> int:
    """Run `action`; return the exit code, printing any failure the user can act on as one line.

    Anything else (a bug, or an input that gets past the checks) is still one `error:` line
    and exit code 1, never a traceback; STAGES_TRACEBACK=1 re-raises it for debugging.
    """
    try:
        action()
    except (PipelineError, SignatureOnnxError) as exc:  # the package's bad images and model folders too
        print(f"error: {one_message(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or a permission problem while writing an artifact
        where = f" {exc.filename}" if exc.filename else ""
        reason = exc.strerror or type(exc).__name__
        message = f"cannot read or write{where}: {reason}; previous artifacts are left as they were"
        print(f"error: {one_message(message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: previous artifacts are left as they were", file=sys.stderr)
        return 130
    except (Exception, RecursionError, MemoryError) as exc:
        if os.environ.get("STAGES_TRACEBACK"):
            raise
        detail = "out of memory" if isinstance(exc, MemoryError) else (str(exc).strip().split("\n", 1)[0] or "-")
        message = (
            f"unexpected failure ({type(exc).__name__}: {shorten(detail, 300)}); previous artifacts are left as they "
            "were. If the input is not hostile this is a bug: rerun with STAGES_TRACEBACK=1 and report the traceback"
        )
        print(f"error: {one_message(message)}", file=sys.stderr)
        return 1
    return 0
