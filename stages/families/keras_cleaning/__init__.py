"""Signature-cleaning autoencoder: a legacy Keras 2 SavedModel converted with tf2onnx.

Upstream (docs/MODEL_FACTS.md, "Cleaning autoencoder"): the `model/` SavedModel written by tf.keras 2.6 in the Kaggle
notebook victordibia/signature-image-cleaning-with-tensorflow-2-0, serving signature
`input_1` float32 [None, 224, 224, 3] -> `conv2d_6` float32 [None, 224, 224, 3], values in [0, 1].

The SavedModel is untrusted: TensorFlow runs its graph ops while loading it, so every op is
checked against an allow-list (stages.families.keras_cleaning.savedmodel_ops) before TensorFlow or tf2onnx
touches the folder, in check_loadable, convert and reference alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from signature_onnx.preprocessing import Preprocessing
from stages.core import random_draws as draws
from stages.core.drawings import signature_rgb
from stages.core.errors import PipelineError, first_line
from stages.core.params import ModelSpec
from stages.core.weight_trace import WeightTracer
from stages.families.keras_cleaning.savedmodel_ops import check_savedmodel

# What `reference` runs: named in validation metrics and errors.
REFERENCE = "TensorFlow"

# Keras 3 cannot write the legacy format; tf-keras (Keras 2) must be the `tf.keras` of this process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGE_SIZE = 224
SAVED_MODEL = "model"
# tf.keras 2.6 wrote exactly these; newer writers add fingerprint.pb (with a random UUID) and an
# empty assets/ folder, which the stand-in drops so its bytes are stable and its layout upstream's.
# (kind, name, filters, activation) in upstream order; kernels are 3x3 "same" throughout.
ARCHITECTURE = (
    ("conv", "conv2d", 64, "relu"),
    ("dropout", "dropout", 0, ""),
    ("conv", "conv2d_1", 64, "relu"),
    ("pool", "max_pooling2d", 0, ""),
    ("conv", "conv2d_2", 128, "relu"),
    ("dropout", "dropout_1", 0, ""),
    ("conv", "conv2d_3", 128, "relu"),
    ("pool", "max_pooling2d_1", 0, ""),
    ("conv", "conv2d_4", 256, "relu"),
    ("dropout", "dropout_2", 0, ""),
    ("conv", "conv2d_5", 256, "relu"),
    ("pool", "max_pooling2d_2", 0, ""),
    ("dropout", "dropout_3", 0, ""),
    ("deconv", "conv2d_transpose", 256, "relu"),
    ("deconv", "conv2d_transpose_1", 128, "relu"),
    ("deconv", "conv2d_transpose_2", 64, "relu"),
    ("conv", "conv2d_6", 3, "sigmoid"),
)


def _keras():
    import tf_keras

    return tf_keras


def build_autoencoder():
    """The upstream "autoencoder" functional model, layer names and order as in keras_metadata.pb."""
    keras = _keras()
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3), name="input_1")
    x = inputs
    for kind, name, filters, activation in ARCHITECTURE:
        if kind == "conv":
            x = keras.layers.Conv2D(filters, 3, padding="same", activation=activation, name=name)(x)
        elif kind == "deconv":
            x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation=activation, name=name)(x)
        elif kind == "pool":
            x = keras.layers.MaxPooling2D(2, padding="same", name=name)(x)
        else:
            x = keras.layers.Dropout(0.2, name=name)(x)
    return keras.Model(inputs, x, name="autoencoder")


def synthetic_weights(model, seed: int) -> list[np.ndarray]:
    """He-uniform kernels (Glorot for the sigmoid output) and small biases, seeded PCG64, float32.

    He scaling keeps the signal alive through nine ReLU layers, so the output really depends on
    the input and on every weight. Identical bytes on every machine: numpy sampling, float32 cast.
    """
    rng = draws.generator(seed)
    weights = []
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) == 4:
            kh, kw, a, b = shape
            # Conv2D kernels are (kh, kw, in, out); Conv2DTranspose kernels are (kh, kw, out, in).
            fan_in, fan_out = (kh * kw * b, kh * kw * a) if "transpose" in variable.name else (kh * kw * a, kh * kw * b)
            if "conv2d_6/" in variable.name:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
            else:
                limit = np.sqrt(6.0 / fan_in)
            weights.append(rng.uniform(-limit, limit, size=shape).astype(np.float32))
        else:
            weights.append(rng.normal(0.0, 0.05, size=shape).astype(np.float32))
    return weights


def write_builtin(dest: Path, spec: ModelSpec) -> None:
    """Save the stand-in as tf-keras `save_format="tf"` under dest/model/, upstream files only."""
    model = build_autoencoder()
    model.set_weights(synthetic_weights(model, spec.source.seed))
    target = dest / SAVED_MODEL
    model.save(str(target), save_format="tf", include_optimizer=False)
    (target / "fingerprint.pb").unlink(missing_ok=True)
    assets = target / "assets"
    if assets.is_dir() and not any(assets.iterdir()):
        assets.rmdir()


def _serving_signature(raw: Path):
    folder = raw / SAVED_MODEL
    check_savedmodel(folder)  # before TensorFlow runs any op of the untrusted graph
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(folder))
        signature = loaded.signatures["serving_default"]
    except KeyError:
        raise PipelineError(f"{folder}: SavedModel has no 'serving_default' signature") from None
    except Exception as exc:  # TF raises many types for a damaged SavedModel
        raise PipelineError(
            f"{folder}: TensorFlow cannot load this SavedModel ({first_line(exc)}); "
            "the download is incomplete or damaged, fetch it again"
        ) from None
    return loaded, signature


def check_loadable(raw: Path, spec: ModelSpec) -> None:
    """Load the SavedModel and check its serving signature names against params."""
    _loaded, signature = _serving_signature(raw)
    want_in = {t.source_name for t in spec.onnx.inputs}
    want_out = {t.source_name for t in spec.onnx.outputs}
    have_in = set(signature.structured_input_signature[1])
    have_out = set(signature.structured_outputs)
    if have_in != want_in or have_out != want_out:
        raise PipelineError(
            f"{raw / SAVED_MODEL}: serving signature is {sorted(have_in)} -> {sorted(have_out)}, "
            f"params expect {sorted(want_in)} -> {sorted(want_out)}"
        )


def convert(raw: Path, spec: ModelSpec, out: Path) -> None:
    """Run the tf2onnx command line on the SavedModel, exactly as the original code did, plus the opset."""
    check_savedmodel(raw / SAVED_MODEL)  # tf2onnx loads (and so runs) the graph: check its ops first
    command = [
        sys.executable,
        "-m",
        "tf2onnx.convert",
        "--saved-model",
        str(raw / SAVED_MODEL),
        "--output",
        str(out),
        "--opset",
        str(spec.onnx.opset),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    if result.returncode != 0 or not out.exists():
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise PipelineError(f"tf2onnx failed on {raw / SAVED_MODEL} (exit {result.returncode}):\n{tail}")


def reference(raw: Path, spec: ModelSpec) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """TensorFlow's serving signature, fed and read by the ONNX names of params."""
    check_savedmodel(raw / SAVED_MODEL)  # before TensorFlow is even imported
    import tensorflow as tf

    _loaded, signature = _serving_signature(raw)
    to_source = {t.name: t.source_name for t in spec.onnx.inputs}

    def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {to_source[name]: tf.constant(value) for name, value in inputs.items()}
        result = signature(**feeds)
        return {t.name: result[t.source_name].numpy() for t in spec.onnx.outputs}

    run.keep_alive = _loaded  # type: ignore[attr-defined]  # the signature dies with its object
    return run


def float64_reference(raw: Path, spec: ModelSpec) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The float64 NumPy forward pass (oracle.py) on the SavedModel's variables, read without TensorFlow."""
    from stages.families.keras_cleaning.oracle import CleaningOracle, read_weights

    cleaning = CleaningOracle(read_weights(raw / SAVED_MODEL / "variables" / "variables"))
    input_name = spec.onnx.inputs[0].name
    return lambda feeds: {t.name: cleaning(feeds[input_name]).astype(np.float32) for t in spec.onnx.outputs}


def weight_tracer(raw: Path, spec: ModelSpec) -> WeightTracer:
    """Every float variable of the SavedModel's checkpoint (variables/), read as stored.

    The checkpoint reader parses the tensor bundle only; no graph of the SavedModel runs.
    """
    import tensorflow as tf

    prefix = raw / SAVED_MODEL / "variables" / "variables"
    try:
        reader = tf.train.load_checkpoint(str(prefix))
        dtypes = reader.get_variable_to_dtype_map()
        upstream = {name: reader.get_tensor(name) for name, dtype in sorted(dtypes.items()) if dtype.is_floating}
    except Exception as exc:  # TF raises several types for a damaged bundle
        raise PipelineError(f"{prefix}: the variables cannot be read ({first_line(exc)})") from None
    return WeightTracer(upstream)


def prepare_image(rgb: np.ndarray, style: Preprocessing) -> np.ndarray:
    """What the notebook feeds the model (params' `preprocessing`, style rgb): RGB resized to
    224x224 (OpenCV INTER_AREA), scaled to [0, 1]. rgb: uint8 (H, W, 3); returns float32 (1, 224, 224, 3)."""
    return style.network_input(style.image(rgb), "float32")


def validation_inputs(
    spec: ModelSpec, count: int, image_paths: Sequence[Path]
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Drawn cluttered pages (varied sizes and aspect ratios), then the user's images."""
    name = spec.onnx.inputs[0].name
    style = spec.preprocessing.package_form()
    samples = []
    for index in range(count):
        height, width = 300 + 37 * index, 420 + 53 * index
        page = signature_rgb(spec.source.seed * 1000 + index, height, width, clutter=True)
        samples.append((f"synthetic_{index:03d}", {name: prepare_image(page, style)}))
    for path in image_paths:
        samples.append((path.name, {name: prepare_image(style.load(path), style)}))
    return samples
