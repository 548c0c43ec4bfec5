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

Theano, Lasagne and PyTorch are not used: the networks run in ONNX Runtime from the published
ONNX files; preprocessing is stages/preprocess.py (numpy, SciPy, OpenCV, Pillow).

With the built-in stand-in weights (the default `source.kind: builtin`) the distances mean
nothing, and the script says so: it reads models/<name>/lineage.json. With the real pickles
(`source.kind: url`, or the files placed in data/raw/<name>/ and `dvc repro`) they are the
notebook's distances. A .pth model (e.g. --signet-model signet_pth) gets its input / 255.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

if __package__ in (None, ""):  # run as a script: make the project's `stages` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.cli import report_errors  # noqa: E402
from stages.errors import PipelineError  # noqa: E402
from stages.families.lasagne_signet import signet_input, spp_input  # noqa: E402
from stages.lasagne_pickle import architecture, variant_of_file  # noqa: E402
from stages.preprocess import IMAGE_SUFFIXES, load_signature  # noqa: E402

WRITERS = {"a": ("a1", "a2"), "b": ("b1", "b2")}


@dataclass(frozen=True)
class Model:
    """A published ONNX model, what it was converted from, and whether its weights are real."""

    name: str
    session: ort.InferenceSession
    upstream_file: str
    weights_note: str

    @property
    def input_name(self) -> str:
        return self.session.get_inputs()[0].name

    def fc2(self, batch: np.ndarray) -> np.ndarray:
        """fc2 features, float32 (N, 2048); ORT is the only runtime."""
        names = [o.name for o in self.session.get_outputs()]
        if "fc2" not in names:
            raise PipelineError(f"{self.name}: the ONNX model has no output 'fc2' (outputs: {names})")
        return self.session.run(["fc2"], {self.input_name: batch})[0]


def open_model(models_dir: Path, name: str) -> Model:
    path = models_dir / name / "model.onnx"
    if not path.exists():
        raise PipelineError(f"{path}: not found; build it first (dvc repro, or python -m stages.<step> {name})")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # patch records "upstream_sha256:<file>" for every upstream file: it names what was converted.
    upstream = [key.split(":", 1)[1] for key in session.get_modelmeta().custom_metadata_map if key.startswith("upstream_sha256:")]
    if len(upstream) != 1:
        raise PipelineError(f"{path}: expected one upstream file in the ONNX metadata, found {upstream}")
    return Model(name, session, upstream[0], weights_note(models_dir / name / "lineage.json"))


def weights_note(lineage_path: Path) -> str:
    try:
        source = json.loads(lineage_path.read_text(encoding="utf-8"))["source"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return f"weights of unknown origin ({lineage_path} is missing or unreadable)"
    if source.get("kind") == "builtin":
        return "BUILT-IN STAND-IN weights (synthetic, seed %s): these distances mean nothing" % source.get("seed")
    return f"weights from source kind {source.get('kind')!r}"


def find_images(images_dir: Path) -> dict[str, Path]:
    """a1, a2, b1, b2 in `images_dir`, whatever the image suffix."""
    if not images_dir.is_dir():
        raise PipelineError(
            f"{images_dir}: no such folder; pass --images DIR holding a1, a2, b1, b2 "
            "(e.g. the signatures/ folder of the sigver_wiwd repository)"
        )
    found = {}
    for stem in itertools.chain(*WRITERS.values()):
        matches = [images_dir / f"{stem}{suffix}" for suffix in IMAGE_SUFFIXES if (images_dir / f"{stem}{suffix}").exists()]
        if not matches:
            raise PipelineError(f"{images_dir}: no image named {stem} ({'/'.join(IMAGE_SUFFIXES)})")
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


def signet_features(model: Model, grays: dict[str, np.ndarray], paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The notebook's SigNet step: all four preprocessed images in one batch."""
    batch = np.concatenate([signet_input(grays[k], str(paths[k])) for k in grays])
    if model.upstream_file.endswith(".pth"):  # sigver's PyTorch models take the image / 255
        batch = batch / np.float32(255)
    return dict(zip(grays, model.fc2(batch)))


def spp_features(model: Model, grays: dict[str, np.ndarray], paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The notebook's SPP step: each image at its own size, one at a time (sizes differ)."""
    variant = variant_of_file(model.upstream_file)
    if architecture(variant).fixed_input is not None:
        raise PipelineError(f"{model.name}: {model.upstream_file} is not an SPP model (it takes 150x220 only)")
    return {k: model.fc2(spp_input(grays[k], variant, str(paths[k])))[0] for k in grays}


def report(title: str, model: Model, sizes: dict[str, tuple[int, ...]], result: dict[str, dict[str, float]]) -> str:
    lines = [f"== {title}: {model.name} (from {model.upstream_file}) ==", f"   {model.weights_note}"]
    lines.append("   inputs: " + ", ".join(f"{k} {'x'.join(map(str, s))}" for k, s in sizes.items()))
    lines.append("Euclidean distance between signatures from the same user")
    lines += [f"   {pair}: {value:.4f}" for pair, value in result["same_writer"].items()]
    lines.append("Euclidean distance between signatures from different users")
    lines += [f"   {pair}: {value:.4f}" for pair, value in result["different_writers"].items()]
    return "\n".join(lines)


def run(models_dir: Path, images_dir: Path, signet_model: str, spp_model: str) -> dict[str, dict]:
    """Both notebook parts; returns {"signet": distances, "spp": distances} and prints them."""
    paths = find_images(images_dir)
    grays = {k: load_signature(p) for k, p in paths.items()}
    results = {}
    model = open_model(models_dir, signet_model)
    results["signet"] = distances(signet_features(model, grays, paths))
    print(report("SigNet, preprocess_signature on a 952x1360 canvas, 150x220 inputs", model, {k: (150, 220) for k in grays}, results["signet"]))
    model = open_model(models_dir, spp_model)
    results["spp"] = distances(spp_features(model, grays, paths))
    print(report("SigNet-SPP, 255 - remove_background at each image's own size", model, {k: g.shape for k, g in grays.items()}, results["spp"]))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="published models (default: %(default)s)")
    parser.add_argument("--images", type=Path, default=Path("signatures"),
                        help="folder with a1, a2, b1, b2 (default: %(default)s, as in sigver_wiwd)")
    parser.add_argument("--signet-model", default="signet", help="fixed-size model (default: %(default)s)")
    parser.add_argument("--spp-model", default="signet_spp_300dpi", help="any-size model (default: %(default)s)")
    args = parser.parse_args(argv)
    return report_errors(lambda: run(args.models_dir, args.images, args.signet_model, args.spp_model))


if __name__ == "__main__":
    sys.exit(main())
