"""signature_onnx: the published signature models in ONNX Runtime, with each model's own preprocessing.

No PyTorch, TensorFlow, DVC or pydantic: ONNX Runtime, NumPy and the image libraries only.

    from signature_onnx import AutoORTModel
    model = AutoORTModel.from_pretrained("models/signet")      # a model folder or its model.onnx
    features = model.embed(["a.png", "b.png"])                  # float32 (2, 2048)

Classes: `ORTModelForSignatureCleaning` (`clean`), `ORTModelForSignatureVerification`
(`verify`), `ORTModelForSignatureFeatures` (`embed`); the command line is `signature-onnx`
(`python -m signature_onnx --help`).

Importing the package turns ONNX Runtime's telemetry off for the process (`ORT_DISABLE_TELEMETRY=1`):
on Linux, ONNX Runtime otherwise creates `~/.cache/Microsoft/DeveloperTools/.onnxruntime/` (a
device id and an events database queued for upload) as soon as it is imported. Only the variable
works, and only before `onnxruntime` is first imported (`onnxruntime.disable_telemetry_events()`
still writes the folder; measured with onnxruntime 1.31.1): import `signature_onnx` first.
"""

import os

# Before any import below: one of them may import onnxruntime, which reads the variable once.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from signature_onnx.errors import ImageError, IntegrityError, ModelFolderError, ModelOutputError, SignatureOnnxError
from signature_onnx.folder import ModelFolder
from signature_onnx.models import (
    AutoORTModel,
    ORTModelForSignatureCleaning,
    ORTModelForSignatureFeatures,
    ORTModelForSignatureVerification,
    SyntheticWeightsWarning,
    Verification,
)
from signature_onnx.preprocessing import Preprocessing
from signature_onnx.vectors import check_vectors

__all__ = [
    "AutoORTModel",
    "ORTModelForSignatureCleaning",
    "ORTModelForSignatureFeatures",
    "ORTModelForSignatureVerification",
    "Verification",
    "SyntheticWeightsWarning",
    "ModelFolder",
    "Preprocessing",
    "check_vectors",
    "SignatureOnnxError",
    "ImageError",
    "ModelFolderError",
    "IntegrityError",
    "ModelOutputError",
]
