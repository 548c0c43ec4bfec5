"""`signature-onnx` (or `python -m signature_onnx`): preprocess, clean, verify, embed, check-vectors, audit.

Every command that runs a model takes `--model PATH`: a published model folder (as the pipeline
writes `models/<name>/`) or its `model.onnx`; the default is `models/<its model>` under the
current folder. The folder says how images are prepared. Errors are one `error:` line (exit 1);
results of a model with synthetic weights carry a loud warning. Every name or text that came from
a file is printed escaped and shortened (`signature_onnx.errors.shown`). SIGTERM is handled like
Ctrl-C (exit 143 instead of 130): the file being written is removed, files already written stay.
Model commands check model.onnx against the folder's lineage.json (`--no-integrity-check` turns
it off) and, with `--public-key PEM`, require the folder's release signature.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from signature_onnx.atomic import write_bytes
from signature_onnx.errors import ModelOutputError, SignatureOnnxError, first_line, shown
from signature_onnx.preprocessing import SIGNATURE_STYLES, Preprocessing

DEFAULT_MODELS = {"clean": "models/cleaning", "verify": "models/siamese", "embed": "models/signet"}


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit PNG (gray or RGB) of a uint8 array."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _outputs_by_stem(images: Sequence[Path], out: Path, suffix: str) -> list[Path]:
    """`<out>/<stem><suffix>` for each image; two inputs with the same stem are refused up front."""
    targets = [out / f"{image.stem}{suffix}" for image in images]
    seen: dict[Path, Path] = {}
    for image, target in zip(images, targets):
        if target in seen:
            raise SignatureOnnxError(
                f"{shown(image)} and {shown(seen[target])} would both be written to {shown(target)}; rename one"
            )
        seen[target] = image
    return targets


def _warn(message: str | None) -> None:
    if message:
        print(f"!!! {message} !!!", file=sys.stderr)


# ---- commands ---------------------------------------------------------------------------------


def cmd_preprocess(args: argparse.Namespace) -> None:
    from signature_onnx.folder import ModelFolder
    from signature_onnx.progress import progress

    if args.model is not None:
        style = ModelFolder.open(args.model).preprocessing
    else:
        if args.style is None or (args.canvas is None and not args.spp):
            raise SignatureOnnxError(
                "preprocess needs --style and --canvas H W (or --spp), or --model PATH to use a model's own preprocessing"
            )
        img_size = tuple(args.img_size or (170, 242))
        input_size = tuple(args.input_size or (150, 220))
        style = Preprocessing(
            style=args.style,
            input_size=input_size if not args.spp else (1, 1),
            canvas=None if args.spp else tuple(args.canvas),
            img_size=None if args.spp else img_size,
            spp=args.spp,
        )
    if style.style == "rgb":
        raise SignatureOnnxError(
            "this model's input is an RGB page (the cleaning model), not a preprocessed signature; use `clean`"
        )
    images = [Path(p) for p in args.images]
    targets = _outputs_by_stem(images, Path(args.out), ".png")
    with progress(total=len(images), desc="preprocess", unit="img", enabled=not args.quiet) as bar:
        for image, target in zip(images, targets):
            processed = style.image(style.load(image), source=str(image))
            write_bytes(target, png_bytes(processed))
            bar.update(1)
    if not args.quiet:
        print(f"wrote {len(targets)} image(s) to {shown(args.out)}", file=sys.stderr)


def cmd_clean(args: argparse.Namespace) -> None:
    from signature_onnx.models import ORTModelForSignatureCleaning
    from signature_onnx.progress import progress

    model = ORTModelForSignatureCleaning.from_pretrained(
        args.model or DEFAULT_MODELS["clean"], **_load_options(args), preprocess=args.preprocess
    )
    images = [Path(p) for p in args.images]
    targets = _outputs_by_stem(images, Path(args.out), ".png")
    with progress(total=len(images), desc="clean", unit="img", enabled=not args.quiet) as bar:
        for image, target in zip(images, targets):
            cleaned = model.clean(image, original_size=args.original_size)
            write_bytes(target, png_bytes(cleaned))
            _warn(model.synthetic_warning())
            bar.update(1)
    if not args.quiet:
        print(f"wrote {len(targets)} cleaned image(s) to {shown(args.out)}", file=sys.stderr)


def cmd_verify(args: argparse.Namespace) -> None:
    from signature_onnx.models import ORTModelForSignatureVerification

    model = ORTModelForSignatureVerification.from_pretrained(
        args.model or DEFAULT_MODELS["verify"], **_load_options(args), preprocess=args.preprocess
    )
    result = model.verify(args.image_a, args.image_b, threshold=args.threshold)
    warning = model.synthetic_warning()
    for key in ("logit", "probability", "cosine"):  # the API checks its outputs; this is the printed result's own check
        if not math.isfinite(getattr(result, key)):
            raise ModelOutputError(
                f"{shown(model.folder.onnx_path)}: model {shown(repr(model.folder.name), 80)} gave a non-finite {key}; expected a number"
            )
    if args.json:
        body = {
            "a": str(args.image_a),
            "b": str(args.image_b),
            "model": model.folder.name,
            "logit": result.logit,
            "probability": result.probability,
            "cosine": result.cosine,
            "threshold": result.threshold,
            "same_writer": result.same_writer,
            "synthetic_weights": result.synthetic_weights,
            "warning": warning,
        }
        print(json.dumps(body, indent=2, allow_nan=False))  # always valid JSON (NaN is not)
    else:
        print(f"probability same writer: {result.probability:.6f} (logit {result.logit:.6f})")
        print(f"cosine similarity:       {result.cosine:.6f}")
        if result.same_writer is not None:
            verdict = "SAME writer" if result.same_writer else "DIFFERENT writers"
            print(f"decision (threshold {result.threshold:g}): {verdict}")
    _warn(warning)


def cmd_embed(args: argparse.Namespace) -> None:
    import io

    from signature_onnx.models import ORTModelForSignatureFeatures

    model = ORTModelForSignatureFeatures.from_pretrained(
        args.model or DEFAULT_MODELS["embed"], **_load_options(args), preprocess=args.preprocess
    )
    images = [Path(p) for p in args.images]
    features = model.embed(images, layer=args.layer, batch_size=args.batch_size, show_progress=not args.quiet)
    buffer = io.BytesIO()
    np.save(buffer, features)
    write_bytes(Path(args.out), buffer.getvalue())
    if not args.quiet:
        print(
            f"wrote {features.shape[0]}x{features.shape[1]} {args.layer} features of {shown(model.folder.name, 80)} to {shown(args.out)}",
            file=sys.stderr,
        )
    _warn(model.synthetic_warning())


def cmd_check_vectors(args: argparse.Namespace) -> None:
    from signature_onnx.vectors import check_vectors

    results = check_vectors(args.model_dir, show_progress=not args.quiet, **_load_options(args))
    failed = [r for r in results if not r.passed]
    for result in results:
        errors = ", ".join(f"{shown(k, 60)} {v:.3g}" for k, v in result.max_abs_error.items())
        print(f"{result.name}: {'ok' if result.passed else 'FAILED'} (max |error|: {errors})")
    if failed:
        raise SignatureOnnxError(
            f"{shown(args.model_dir)}: {len(failed)} of {len(results)} test sets failed; first: {failed[0].name}: {failed[0].failure}"
        )


def cmd_audit(args: argparse.Namespace) -> None:
    from signature_onnx.audit import audit

    links = audit(Path(args.model_dir), Path(args.public_key) if args.public_key else None, args.require_signature)
    for link in links:
        print(f"  {link.status:<4}  {link.name:<12}  {link.detail}")
    failed = [link.name for link in links if link.status == "FAIL"]
    if failed:
        raise SignatureOnnxError(f"{shown(args.model_dir)}: FAILED: {', '.join(failed)}")
    print("  => verified (the links marked N/A need the project checkout)")


def _load_options(args: argparse.Namespace) -> dict:
    """The model-loading options every model command shares (threads, integrity, signature)."""
    return {"threads": args.threads, "integrity_check": not args.no_integrity_check, "public_key": args.public_key}


# ---- parser -----------------------------------------------------------------------------------


def _model_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--threads", type=int, metavar="N", help="ONNX Runtime intra-op threads, 1..256 (default: all cores)"
    )
    command.add_argument(
        "--no-integrity-check",
        action="store_true",
        help="run model.onnx even when its sha256 differs from the one its folder's lineage.json records",
    )
    command.add_argument(
        "--public-key",
        metavar="PEM",
        help="require the folder's release signature (model.sig) to verify with this EC public key "
        "(needs pip install 'signature-onnx[signing]')",
    )


def _size(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    parser.add_argument(flag, nargs=2, type=int, metavar=("H", "W"), help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signature-onnx",
        description="Clean, verify and embed handwritten signatures with the published ONNX models (ONNX Runtime only).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help_text: str, handler: Callable[[argparse.Namespace], None], model_help: str | None
    ) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        command.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary lines")
        if model_help is not None:
            command.add_argument("--model", metavar="PATH", help=model_help)
            if handler is not cmd_preprocess:  # preprocess reads the folder's preprocessing.json only, never its model
                _model_options(command)
                command.add_argument(
                    "--preprocess",
                    choices=["python", "onnx"],
                    default="python",
                    help="python (default): the package's own preprocessing code; onnx: the folder's preprocess.onnx "
                    "(the same network inputs, proven by the build; docs/preprocess-graph.md)",
                )
        return command

    pre = add(
        "preprocess",
        "Preprocess signature images into 8-bit PNGs named <stem>.png.",
        cmd_preprocess,
        "take the style and sizes from this model folder instead of the flags below",
    )
    pre.add_argument(
        "--style",
        choices=sorted(SIGNATURE_STYLES),
        help="wiwd (sigver_wiwd, Lasagne SigNets) or sigver (scikit-image: .pth SigNets, Siamese)",
    )
    _size(pre, "--canvas", "canvas the signature is centered on, e.g. 952 1360")
    _size(pre, "--img-size", "size the canvas is resized to (default 170 242; the Siamese model: 256 256)")
    _size(pre, "--input-size", "final center crop (default 150 220)")
    pre.add_argument(
        "--spp",
        action="store_true",
        help="write 255 - remove_background(img) at the image's own size (SigNet-SPP input)",
    )
    pre.add_argument("images", nargs="+", metavar="IMAGE")
    pre.add_argument("--out", required=True, metavar="DIR", help="output folder")

    clean = add(
        "clean",
        "Clean signature pages with the cleaning autoencoder (224x224 PNG output).",
        cmd_clean,
        f"cleaning model folder or model.onnx (default {DEFAULT_MODELS['clean']})",
    )
    clean.add_argument("images", nargs="+", metavar="IMAGE")
    clean.add_argument("--out", required=True, metavar="DIR", help="output folder")
    clean.add_argument(
        "--original-size", action="store_true", help="resize each cleaned image back to its input's size"
    )

    verify = add(
        "verify",
        "Verify a pair of signatures with the Siamese model: probability, cosine, decision.",
        cmd_verify,
        f"Siamese model folder or model.onnx (default {DEFAULT_MODELS['verify']})",
    )
    verify.add_argument("image_a", metavar="A")
    verify.add_argument("image_b", metavar="B")
    verify.add_argument(
        "--threshold", type=float, metavar="P", help="decide 'same writer' when the probability is at least P (0..1)"
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")

    embed = add(
        "embed",
        "Extract SigNet features of signature images into a .npy file (N, 2048).",
        cmd_embed,
        f"SigNet-family model folder or model.onnx (default {DEFAULT_MODELS['embed']})",
    )
    embed.add_argument("images", nargs="+", metavar="IMAGE")
    embed.add_argument("--out", required=True, metavar="FILE", help="output .npy file")
    embed.add_argument(
        "--layer",
        default="fc2",
        choices=["fc1", "fc2"],
        help="feature layer (default fc2; sigver .pth models have fc2 only)",
    )
    embed.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="images per ONNX Runtime call (fixed-size SigNets)"
    )

    check = add(
        "check-vectors", "Run a model folder's test vectors (test_data_set_N) in ONNX Runtime.", cmd_check_vectors, None
    )
    check.add_argument("model_dir", metavar="MODEL_DIR", help="a published model folder")
    _model_options(check)

    audit = add(
        "audit", "Check a model folder on its own: lineage sha256, signature, test vectors, variants.", cmd_audit, None
    )
    audit.add_argument(
        "model_dir",
        metavar="MODEL_DIR",
        help="a published model folder (or a variant folder), e.g. from dvc artifacts get",
    )
    audit.add_argument("--public-key", metavar="PEM", help="EC public key PEM the folder's model.sig must verify with")
    audit.add_argument(
        "--require-signature", action="store_true", help="fail when the folder is unsigned or no key is given"
    )
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally` (temporary files) runs before exiting."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure the user can fix is one `error:` line and exit status 1."""
    args = build_parser().parse_args(argv)
    # Only the main thread may set handlers (main() can also be called from a caller's thread).
    handles_term = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if handles_term else None
    try:
        with warnings.catch_warnings():
            # The commands print their own loud line per result; the API's warning would repeat it.
            from signature_onnx.models import SyntheticWeightsWarning

            warnings.simplefilter("ignore", SyntheticWeightsWarning)
            args.handler(args)
    except (SignatureOnnxError, ValueError) as exc:  # ImageError is both; ValueError: bad threshold, layer
        print(f"error: {shown(exc, 600)}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {shown(exc.filename)}" if exc.filename else ""
        print(f"error: cannot read or write{where}: {shown(exc.strerror or exc)}", file=sys.stderr)
        return 1
    except MemoryError:
        print(
            "error: out of memory; expected smaller inputs (fewer or smaller images, a smaller --batch-size)",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt as exc:
        print("interrupted: files already written are complete, the rest were not written", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:  # a case no check foresaw: still one line, never a traceback
        print(f"error: unexpected {type(exc).__name__}: {first_line(exc)}; please report it", file=sys.stderr)
        return 1
    finally:
        if handles_term:
            signal.signal(signal.SIGTERM, previous)
    return 0
