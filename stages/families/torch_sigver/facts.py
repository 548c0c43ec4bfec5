"""What the shared stages know of the PyTorch sigver family: declarative, imports no framework.

Read by `stages.core.family_facts` (params checks, the task in preprocessing.json, the model
card); see that module for the contract.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.core.family_facts import MB, Architecture, Upstream, kaggle_notebook

if TYPE_CHECKING:
    from stages.core.params import ModelSpec

# One downloaded file: the real signet*.pth are 68 MB, convnet_best_loss.pt 63 MB
# (docs/MODEL_FACTS.md, "Upstream file sizes and download limits"), with room to spare.
MAX_BYTES = 128 * MB

ARCHITECTURES = {
    "siamese": Architecture(
        task="verify",
        upstream=kaggle_notebook(
            "medali1992/siamese-signature-verification-with-confidence",
            "PyTorch checkpoint",
            task="image-classification",
            tags=("signature-verification", "biometrics", "siamese"),
        ),
        # projection2d: the notebook copy whose outputs are the 2-d projections (projection2d
        # Linear(2048, 2), probs Linear(4, 1)), not the 2048-d embeddings (probs Linear(4096, 1)).
        options=("projection2d",),
    ),
    "signet": Architecture(
        task="embed",
        upstream=Upstream(
            project="luizgh/sigver, SigNet models of Hafemann, Sabourin and Oliveira (PyTorch .pth)",
            address="https://github.com/luizgh/sigver",
            license_id="bsd-3-clause",
            license_text="BSD 3-Clause, the licence of the luizgh/sigver repository that links the weights; "
            "the datasets the networks were trained on carry their own (research-only) terms.",
            task="feature-extraction",
            tags=("signature-verification", "biometrics", "signet"),
        ),
        # forgery_head: the checkpoint's forg_layer_state is nn.Linear(2048, 1) (SigNet-F), not the
        # empty state of SigNet's stub.
        options=("forgery_head",),
    ),
}


def card_preprocessing(spec: ModelSpec) -> list[str]:
    """The model card's lines on the exact input and output: the Siamese pair, or SigNet's features."""
    if spec.network.architecture == "siamese":
        embedding = "2-d projections" if spec.network.projection2d else "2048-d embeddings"
        return [
            "Each signature: sigver's scikit-image preprocessing (`signature_onnx.preprocessing`, style "
            "sigver: centred on a 952x1360 canvas, inverted so ink is bright, resized to 256x256, "
            "cropped to 150x220), uint8 [150, 220]; the graph divides by 255 itself.",
            f"`output0`, `output1` are the two {embedding}; `sigmoid(output2)` is the notebook's "
            "same-writer probability (`python -m signature_onnx verify`).",
        ]
    return [
        "sigver's scikit-image preprocessing (`signature_onnx.preprocessing`, style sigver, "
        "952x1360 canvas), divided by 255: float32 [batch, 1, 150, 220] in [0, 1].",
        "`fc2` is the 2048-d feature vector; compare two signatures by the Euclidean distance of "
        "their features (`python -m signature_onnx embed`).",
    ]
