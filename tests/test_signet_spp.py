"""SigNet-SPP: the ONNX pyramid's bins come from shape arithmetic and hold at every size.

Three independent computations of the pyramid meet here: the ONNX subgraph (int64 Shape/Div
arithmetic), the oracle (Lasagne's float floor/ceil) and a brute-force loop in this file
(integer arithmetic). The whole networks are then compared with the oracle from the minimum
size to 2000x3000, odd and prime sizes included.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import REPO, ort_session

from stages.core.drawings import signature_gray
from stages.core.errors import PipelineError
from stages.core.float64_layers import pyramid_pool
from stages.core.params import model_spec
from stages.families import lasagne_signet
from stages.families.lasagne_signet import standin
from stages.families.lasagne_signet.layout import architecture, check_params, spp_min_input_size
from stages.families.lasagne_signet.onnx_builder import build_model, spp_model
from stages.families.lasagne_signet.oracle import LasagneOracle

VARIANTS = ["signet_spp_300dpi", "signet_spp_600dpi"]
LEVELS = (4, 2, 1)


def session(model_bytes: bytes) -> ort.InferenceSession:
    return ort_session(model_bytes, quiet=True)  # the too-small cases make ORT log errors we expect


def brute_force_pyramid(x: np.ndarray) -> np.ndarray:
    """(N, C, h, w) -> (N, C * 21): max over rows r*h//n .. ceil((r+1)*h/n), integers only."""
    n_img, channels, h, w = x.shape
    out = np.empty((n_img, channels, sum(n * n for n in LEVELS)), dtype=x.dtype)
    k = 0
    for n in LEVELS:
        for r in range(n):
            for c in range(n):
                rows = range(r * h // n, -(-(r + 1) * h // n))
                cols = range(c * w // n, -(-(c + 1) * w // n))
                best = np.full((n_img, channels), -np.inf, dtype=x.dtype)
                for i in rows:
                    for j in cols:
                        best = np.maximum(best, x[:, :, i, j])
                out[:, :, k] = best
                k += 1
    return out.reshape(n_img, -1)


@pytest.fixture(scope="module")
def pyramid_session() -> ort.InferenceSession:
    return session(spp_model(channels=3).SerializeToString())


def test_pyramid_subgraph_matches_brute_force_at_every_small_size(pyramid_session):
    """Every (h, w) from 1x1 to 40x40: the sizes where floor/ceil bins overlap or are 1 wide."""
    rng = np.random.default_rng(0)
    for h in range(1, 41):
        for w in range(1, 41):
            x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
            got = pyramid_session.run(None, {"x": x})[0]
            np.testing.assert_array_equal(got, brute_force_pyramid(x), err_msg=f"{h}x{w}")


@pytest.mark.parametrize("shape", [(41, 43), (55, 83), (83, 55), (97, 1), (1, 997), (127, 211), (256, 255), (333, 499)])
def test_pyramid_subgraph_matches_brute_force_and_oracle_at_larger_sizes(pyramid_session, shape):
    """Feature-map sizes up to and beyond those of a 2000x3000 image (55x83 at conv5)."""
    x = np.random.default_rng(sum(shape)).standard_normal((1, 3, *shape)).astype(np.float32)
    got = pyramid_session.run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, brute_force_pyramid(x))
    np.testing.assert_array_equal(got[0], pyramid_pool(x[0].astype(np.float64), LEVELS).reshape(-1))


def test_pyramid_order_is_channel_major_then_bin():
    """A map whose value encodes its position: output index c * 21 + bin, bins row-major by level."""
    h, w = 8, 8
    x = np.zeros((1, 2, h, w), np.float32)
    x[0, 1, 7, 7] = 5.0  # bottom-right corner of channel 1 only
    got = session(spp_model(channels=2).SerializeToString()).run(None, {"x": x})[0].reshape(2, 21)
    expected = np.zeros((2, 21), np.float32)
    expected[1, 15] = 5.0  # level 4, bin (3, 3)
    expected[1, 16 + 3] = 5.0  # level 2, bin (1, 1)
    expected[1, 20] = 5.0  # level 1
    np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module", params=VARIANTS)
def spp(request):
    """(variant, ORT session, oracle) with the built-in weights of that params entry."""
    variant = request.param
    spec = model_spec(variant, REPO / "params.yaml")
    params = standin.synthetic_params(variant, spec.source.seed)
    model = build_model(architecture(variant), check_params(variant, params, variant), opset=spec.onnx.opset)
    return variant, session(model.SerializeToString()), LasagneOracle(variant, params)


def compare(spp_fixture, shape: tuple[int, int], seed: int, batch: int = 1) -> float:
    variant, sess, oracle = spp_fixture
    images = [lasagne_signet.spp_input(signature_gray(seed + i, *shape), variant) for i in range(batch)]
    x = np.concatenate(images)
    fc1, fc2 = sess.run(["fc1", "fc2"], {"input": x})
    expected = oracle(x)
    error = max(np.abs(fc1 - expected["fc1"]).max(), np.abs(fc2 - expected["fc2"]).max())
    assert error <= 1e-4, f"{variant} {shape}: max |ONNX - oracle| = {error:.3g}"
    assert np.abs(expected["fc2"]).max() > 0.1  # the features are not trivially zero
    return error


def sizes_for(variant: str) -> list[tuple[int, int]]:
    m = spp_min_input_size(variant)[0]
    return [
        (m, m),
        (m + 1, m),
        (m, m + 1),
        (m + 2, m + 3),
        (m, 997),
        (1009, m),
        (151, 223),
        (211, 307),
        (401, 613),
        (997, 1499),
        (1999, 2999),
        (2000, 3000),
    ]


def test_whole_network_matches_the_oracle_from_the_minimum_to_2000x3000(spp):
    variant = spp[0]
    for index, shape in enumerate(sizes_for(variant)):
        compare(spp, shape, seed=100 + index)


def test_batches_of_same_size_images(spp):
    compare(spp, (157, 241), seed=7, batch=3)


def test_our_code_refuses_a_too_small_image_with_a_clear_error(spp):
    variant, sess, _oracle = spp
    m = spp_min_input_size(variant)[0]
    for shape in ((m - 1, m), (m, m - 1), (10, 3000)):
        gray = np.full(shape, 255.0, np.float32)
        gray[shape[0] // 2, :] = 0.0  # a stroke, so the image itself is valid
        with pytest.raises(
            PipelineError,
            match=rf"is {shape[0]}x{shape[1]} \(rows x cols\), smaller than the smallest input {variant} accepts, {m}x{m}",
        ):
            lasagne_signet.spp_input(gray, variant, source="tiny.png")


def test_onnx_runtime_alone_fails_on_a_too_small_image_instead_of_computing_garbage(spp):
    """ORT's MaxPool would round a too-short window up to one output; the graph's guard stops it."""
    variant, sess, _oracle = spp
    m = spp_min_input_size(variant)[0]
    sess.run(None, {"input": np.zeros((1, 1, m, m), np.float32)})  # the minimum itself runs
    for shape in ((m - 1, m), (m, m - 1), (5, 5)):
        with pytest.raises(Exception, match=f"input_smaller_than_{m}x{m}"):
            sess.run(None, {"input": np.zeros((1, 1, *shape), np.float32)})
