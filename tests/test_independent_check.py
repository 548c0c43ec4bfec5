"""The issue's acceptance check, written independently of the validate stage.

Load the stand-in SavedModel with TensorFlow and the stand-in checkpoint with PyTorch (plain
library calls, not the family modules), run the published ONNX files in ONNX Runtime on the real
scans of ../shared/fixtures/signatures/, and require agreement within 1e-4 absolute everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from conftest import shared_fixture
from PIL import Image

from signature_onnx.preprocessing.wiwd import load_signature, preprocess_signature

ATOL = 1e-4


def scans() -> list[Path]:
    return sorted(shared_fixture("signatures").glob("*.png"))


def test_cleaning_onnx_matches_tensorflow_on_real_scans(built_project: Path):
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    serving = tf.saved_model.load(str(built_project / "data" / "raw" / "cleaning" / "model")).signatures[
        "serving_default"
    ]
    session = ort.InferenceSession(
        str(built_project / "models" / "cleaning" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    worst = 0.0
    for path in scans():
        rgb = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR), dtype=np.float32) / 255.0
        batch = rgb[None]
        expected = serving(input_1=tf.constant(batch))["conv2d_6"].numpy()
        (actual,) = session.run(["output"], {"input": batch})
        worst = max(worst, float(np.abs(actual - expected).max()))
        np.testing.assert_allclose(actual, expected, rtol=0, atol=ATOL, err_msg=path.name)
    print(f"cleaning: max |ONNX - TensorFlow| over {len(scans())} scans = {worst:.3g}")
    assert len(scans()) >= 30


def test_siamese_onnx_matches_pytorch_on_real_scans(built_project: Path):
    import torch

    from stages.families.torch_sigver.siamese import SiameseModel

    # weights_only=True; the notebook's file also carries numpy arrays, so exactly those are allowed.
    allowed = [np._core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float32DType]
    with torch.serialization.safe_globals(allowed):
        checkpoint = torch.load(built_project / "data" / "raw" / "siamese" / "convnet_best_loss.pt", weights_only=True)
    model = SiameseModel()
    model.load_state_dict(checkpoint["model"])
    model.eval()
    session = ort.InferenceSession(
        str(built_project / "models" / "siamese" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    images = [preprocess_signature(load_signature(p), (952, 1360)).astype(np.uint8) for p in scans()]
    worst = 0.0
    pairs = list(zip(images, images[1:] + images[:1]))
    for index, (first, second) in enumerate(pairs):
        with torch.no_grad():
            expected = [t.numpy() for t in model(torch.from_numpy(first), torch.from_numpy(second))]
        actual = session.run(["output0", "output1", "output2"], {"input0": first, "input1": second})
        for name, e, a in zip(("output0", "output1", "output2"), expected, actual):
            worst = max(worst, float(np.abs(a - e).max()))
            np.testing.assert_allclose(a, e, rtol=0, atol=ATOL, err_msg=f"{name}, pair {index}")
            assert e.std() > 0 or name == "output2"
    print(f"siamese: max |ONNX - PyTorch| over {len(pairs)} pairs of real scans = {worst:.3g}")
    assert len(pairs) == len(scans()) >= 30
