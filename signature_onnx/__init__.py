"""signature_onnx: the published signature models in ONNX Runtime, with each model's own preprocessing.

No PyTorch, TensorFlow, DVC or pydantic: ONNX Runtime, NumPy and the image libraries only.

    from signature_onnx import AutoORTModel
    model = AutoORTModel.from_pretrained("models/signet")      # a model folder or its model.onnx
    features = model.embed(["a.png", "b.png"])                  # float32 (2, 2048)

Classes: `ORTModelForSignatureCleaning` (`clean`), `ORTModelForSignatureVerification`
(`verify`), `ORTModelForSignatureFeatures` (`embed`); the command line is `signature-onnx`
(`python -m signature_onnx --help`).
"""

from signature_onnx.errors import ImageError, ModelFolderError, SignatureOnnxError
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
]
