"""What every stage's command line shares: `python -m stages.<step> MODEL [--params FILE]`.

`run_stage` turns a PipelineError (or a bad argument) into one line on stderr and exit code 1,
so users meet actionable messages, never tracebacks; progress goes to stderr through logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from stages.config import PARAMS_FILE, ModelSpec, load_model
from signature_onnx.errors import SignatureOnnxError
from stages.errors import PipelineError


def model_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("model", help="a model name, a key under 'models' in params.yaml")
    parser.add_argument("--params", type=Path, default=PARAMS_FILE, help="params file (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print warnings and errors")
    return parser


def run_stage(parser: argparse.ArgumentParser, step: Callable[[str, ModelSpec, argparse.Namespace], None]) -> NoReturn:
    """Parse arguments, load the model's checked params, run `step`, exit 0 or 1 with one line."""
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format=f"[{parser.prog.split()[-1]} {args.model}] %(message)s",
        stream=sys.stderr,
    )

    def run() -> None:
        step(args.model, load_model(args.model, args.params), args)

    sys.exit(report_errors(run))


def report_errors(action: Callable[[], None]) -> int:
    """Run `action`; return the exit code, printing any failure the user can act on as one line."""
    try:
        action()
    except (PipelineError, SignatureOnnxError) as exc:  # the package's bad images and model folders too
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk or a permission problem while writing an artifact
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot read or write{where}: {exc.strerror or exc}; previous artifacts are left as they were", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: previous artifacts are left as they were", file=sys.stderr)
        return 130
    return 0
