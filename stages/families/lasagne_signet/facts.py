"""What the shared stages know of the Lasagne SigNet family: declarative, imports no framework.

Read by `stages.core.family_facts` (params checks, the task in preprocessing.json, the model
card); see that module for the contract. The architectures' layer facts are in `layout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stages.core.family_facts import MB, Architecture, Upstream

if TYPE_CHECKING:
    from stages.core.params import ModelSpec

# One downloaded file: the real signet*.pkl are 63 MB, signet_spp_*.pkl 41 MB (docs/MODEL_FACTS.md,
# "Upstream file sizes and download limits"), with room to spare.
MAX_BYTES = 128 * MB

# sigver_wiwd's three Lasagne architectures share one upstream project.
SIGVER_WIWD = Upstream(
    project="luizgh/sigver_wiwd, SigNet models of Hafemann, Sabourin and Oliveira (Lasagne/Theano pickles)",
    address="https://github.com/luizgh/sigver_wiwd",
    license_id="bsd-2-clause",
    license_text="BSD 2-Clause, the licence of the luizgh/sigver_wiwd repository that distributes the "
    "pickles; the datasets the networks were trained on carry their own (research-only) terms.",
    task="feature-extraction",
    tags=("signature-verification", "biometrics", "signet"),
)

ARCHITECTURES = {
    architecture: Architecture(task="embed", upstream=SIGVER_WIWD)
    for architecture in ("signet", "signet_spp_300dpi", "signet_spp_600dpi")
}


def card_preprocessing(spec: ModelSpec) -> list[str]:
    """The model card's lines on the exact input and output: SigNet at 150x220, or SPP at any size."""
    if spec.network.architecture != "signet":
        height, width = spec.preprocessing.input_size  # for SPP: the smallest accepted image
        return [
            "`255 - remove_background(scan)` (`signature_onnx.preprocessing`, style wiwd, spp) at the "
            f"scan's own size, float32 [batch, 1, height, width] in 0..255, at least {height}x{width}; "
            "smaller images are refused.",
            "`fc1` and `fc2` are 2048-d feature vectors (`python -m signature_onnx embed`).",
        ]
    return [
        "sigver_wiwd's preprocessing (`signature_onnx.preprocessing`, style wiwd, 952x1360 canvas) "
        "as float32, NOT divided by 255: [batch, 1, 150, 220] in 0..255, ink bright, background 0.",
        "`fc2` (after its ReLU) is the feature vector of the upstream notebook; `fc1` is also a valid "
        "feature layer (`python -m signature_onnx embed`).",
    ]
