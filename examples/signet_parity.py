"""The sigver_wiwd notebook (interactive_example.ipynb), with ONNX Runtime as the only network runtime.

What the notebook does, step for step:
1. load a1.png, a2.png (one writer) and b1.png, b2.png (another writer);
2. SigNet: `preprocess_signature(img, (952, 1360))` on each, extract the fc2 features of the four
   images in one batch, print the Euclidean distances between signatures of the same writer
   (a1~a2, b1~b2) and of different writers (a1~b1, a1~b2, a2~b1, a2~b2);
3. SigNet-SPP (300 dpi): `255 - remove_background(img)` at each image's own size (no padding,
   so the four inputs differ in size), fc2 features one image at a time, the same distances.

Usage (after `dvc repro`, which publishes models/<name>/model.onnx):

    python examples/signet_parity.py --images path/to/sigver_wiwd/signatures

Theano, Lasagne and PyTorch are not used: it is a thin user of the `signature_onnx` package
(`pip install ./`), which runs the published ONNX files in ONNX Runtime and applies each
model's own preprocessing (its `preprocessing.json`: sigver_wiwd's for the Lasagne models,
sigver's scikit-image style for the .pth ones).

With the built-in stand-in weights (the default `source.kind: builtin`) the distances mean
nothing, and the script says so: it reads models/<name>/lineage.json. With the real pickles
(`source.kind: url`, or the files placed in data/raw/<name>/ and `dvc repro`) they are the
notebook's distances. A .pth model (e.g. --signet-model signet_pth) gets sigver's preprocessing / 255.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script from a checkout: make `signature_onnx` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signature_onnx import ORTModelForSignatureFeatures, SignatureOnnxError  # noqa: E402
from signature_onnx.preprocessing import IMAGE_SUFFIXES  # noqa: E402

WRITERS = {"a": ("a1", "a2"), "b": ("b1", "b2")}


def open_model(models_dir: Path, name: str) -> ORTModelForSignatureFeatures:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report prints its own note on synthetic weights
        return ORTModelForSignatureFeatures.from_pretrained(models_dir / name)


def upstream_file(model: ORTModelForSignatureFeatures) -> str:
    """What was converted: patch records "upstream_sha256:<file>" in the ONNX metadata."""
    keys = model.session.get_modelmeta().custom_metadata_map
    return ", ".join(key.split(":", 1)[1] for key in keys if key.startswith("upstream_sha256:")) or "unknown file"


def weights_note(model: ORTModelForSignatureFeatures) -> str:
    if model.synthetic:
        return f"BUILT-IN STAND-IN weights (synthetic; {model.folder.source}): these distances mean nothing"
    return f"weights from {model.folder.source}"


def find_images(images_dir: Path) -> dict[str, Path]:
    """a1, a2, b1, b2 in `images_dir`, whatever the image suffix."""
    if not images_dir.is_dir():
        raise SignatureOnnxError(
            f"{images_dir}: no such folder; pass --images DIR holding a1, a2, b1, b2 "
            "(e.g. the signatures/ folder of the sigver_wiwd repository)"
        )
    found = {}
    for stem in itertools.chain(*WRITERS.values()):
        matches = [
            images_dir / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (images_dir / f"{stem}{suffix}").exists()
        ]
        if not matches:
            raise SignatureOnnxError(f"{images_dir}: no image named {stem} ({'/'.join(IMAGE_SUFFIXES)})")
        found[stem] = matches[0]
    return found


def distances(features: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Same-writer and different-writer Euclidean distances, in the notebook's order."""
    same = {f"{a}~{b}": float(np.linalg.norm(features[a] - features[b])) for a, b in WRITERS.values()}
    different = {
        f"{a}~{b}": float(np.linalg.norm(features[a] - features[b]))
        for a, b in itertools.product(WRITERS["a"], WRITERS["b"])
    }
    return {"same_writer": same, "different_writers": different}


def features(model: ORTModelForSignatureFeatures, paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """fc2 features of each image; the package batches fixed-size models and runs SPP per image."""
    return dict(zip(paths, model.embed(list(paths.values()), layer="fc2")))


def report(
    title: str,
    model: ORTModelForSignatureFeatures,
    sizes: dict[str, tuple[int, ...]],
    result: dict[str, dict[str, float]],
) -> str:
    lines = [f"== {title}: {model.folder.name} (from {upstream_file(model)}) ==", f"   {weights_note(model)}"]
    lines.append("   inputs: " + ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in sizes.items()))
    lines.append("Euclidean distance between signatures from the same user")
    lines += [f"   {pair}: {value:.4f}" for pair, value in result["same_writer"].items()]
    lines.append("Euclidean distance between signatures from different users")
    lines += [f"   {pair}: {value:.4f}" for pair, value in result["different_writers"].items()]
    return "\n".join(lines)


def run(models_dir: Path, images_dir: Path, signet_model: str, spp_model: str) -> dict[str, dict]:
    """Both notebook parts; returns {"signet": distances, "spp": distances} and prints them."""
    paths = find_images(images_dir)
    results = {}
    model = open_model(models_dir, signet_model)
    if model.folder.preprocessing.spp:
        raise SignatureOnnxError(f"{signet_model}: an SPP model; --signet-model takes a fixed-size SigNet")
    results["signet"] = distances(features(model, paths))
    size = model.folder.preprocessing.input_size
    print(
        report(
            f"SigNet, preprocess_signature on a 952x1360 canvas, {size[0]}x{size[1]} inputs",
            model,
            {k: size for k in paths},
            results["signet"],
        )
    )
    model = open_model(models_dir, spp_model)
    if not model.folder.preprocessing.spp:
        raise SignatureOnnxError(f"{spp_model}: not an SPP model (it takes one fixed size only)")
    results["spp"] = distances(features(model, paths))
    sizes = {k: model.folder.preprocessing.load(p).shape for k, p in paths.items()}
    print(report("SigNet-SPP, 255 - remove_background at each image's own size", model, sizes, results["spp"]))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models-dir", type=Path, default=Path("models"), help="published models (default: %(default)s)"
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=Path("signatures"),
        help="folder with a1, a2, b1, b2 (default: %(default)s, as in sigver_wiwd)",
    )
    parser.add_argument("--signet-model", default="signet", help="fixed-size model (default: %(default)s)")
    parser.add_argument("--spp-model", default="signet_spp_300dpi", help="any-size model (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        run(args.models_dir, args.images, args.signet_model, args.spp_model)
    except (SignatureOnnxError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
