"""What the shared stages know of the Keras cleaning family: declarative, imports no framework.

Read by `stages.core.family_facts` (params checks, the task in preprocessing.json, the model
card); see that module for the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.core.family_facts import MB, Architecture, kaggle_notebook

if TYPE_CHECKING:
    from stages.core.params import ModelSpec

# One downloaded file: the real SavedModel's largest, variables.data, is 8.4 MB (saved_model.pb
# 0.3 MB; docs/MODEL_FACTS.md, "Upstream file sizes and download limits"), with room to spare.
MAX_BYTES = 64 * MB

ARCHITECTURES = {
    "autoencoder": Architecture(
        task="clean",
        upstream=kaggle_notebook(
            "victordibia/signature-image-cleaning-with-tensorflow-2-0",
            "tf.keras 2.6 SavedModel",
            task="image-to-image",
            tags=("signature-cleaning", "document-images", "autoencoder"),
        ),
    ),
}


def card_preprocessing(spec: ModelSpec) -> list[str]:
    """The model card's lines on the exact input and output (the same for every entry)."""
    return [
        "Read the page as RGB uint8, resize to 224x224 with `cv2.INTER_AREA` and divide by 255: "
        "float32 [1, 224, 224, 3] in [0, 1] (`python -m signature_onnx clean` does it).",
        "The output is the cleaned image, float32 [1, 224, 224, 3] in [0, 1] (multiply by 255 for uint8).",
    ]
