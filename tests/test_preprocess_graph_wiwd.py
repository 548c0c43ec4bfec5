"""The "wiwd" preprocessing graph (stages/preprocess_graph/wiwd.py) against the package's Python.

For the wiwd params of the real models (signet: canvas (952, 1360), img_size (170, 242),
input_size (150, 220); signet_spp_300dpi: SPP), the graph runs in onnxruntime on real scans
(../shared/fixtures) and on drawn and adversarial images, and must equal
`pre.image(pre.load(file))` exactly, with `valid` false exactly where the package refuses.
The building blocks are checked on their own against the library they copy (Pillow's gray
conversion and BILINEAR resize, OpenCV's Otsu), a perturbed graph (blur sigma 2.1) must
fail the comparison, and one small image runs in ONNX's reference runtime.

Run: pytest tests/test_preprocess_graph_wiwd.py -s  (-s prints the figures: exact fraction,
largest gray-level difference, ms per image graph vs Python).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ort_session
from onnx import TensorProto, helper
from PIL import Image

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing import Preprocessing
from stages.core.drawings import drawn_page
from stages.core.graph_builder import GraphBuilder
from stages.core.params import model_spec
from stages.preprocess_graph import wiwd
from stages.preprocess_graph.gray_pillow import pillow_gray_uint8
from stages.preprocess_graph.otsu_opencv import otsu_threshold
from stages.preprocess_graph.resize_pillow import resize_bilinear, vertical_first

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
OPSET = 17
IR_VERSION = 8  # the IR of opset 17; onnxruntime 1.31 reads up to 13
MODELS = ("signet", "signet_spp_300dpi")


# ---- helpers ---------------------------------------------------------------------------------


def preprocessing(model: str) -> Preprocessing:
    """The package form of a model's params preprocessing."""
    return model_spec(model, REPO / "params.yaml").preprocessing.package_form()


def to_model(g: GraphBuilder, inputs: list, outputs: list) -> onnx.ModelProto:
    """A checked model from a builder; inputs/outputs are (name, onnx type, shape) triples."""
    graph = helper.make_graph(
        g.nodes,
        "test",
        [helper.make_tensor_value_info(*spec) for spec in inputs],
        [helper.make_tensor_value_info(*spec) for spec in outputs],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def session(model: onnx.ModelProto, threads: int = 2) -> ort.InferenceSession:
    return ort_session(model.SerializeToString(), threads)


def wiwd_model(pre: Preprocessing, **kwargs) -> onnx.ModelProto:
    """rgb (uint8 [H, W, 3]) -> image, valid, as `stages.preprocess_graph` wires a style."""
    g = GraphBuilder(OPSET)
    image, valid = wiwd.image_graph(g, "rgb", pre, **kwargs)
    shape = ["H", "W"] if pre.spp else list(pre.input_size)
    return to_model(
        g,
        [("rgb", TensorProto.UINT8, ["H", "W", 3])],
        [(image, TensorProto.UINT8, shape), (valid, TensorProto.BOOL, [])],
    )


def python_image(pre: Preprocessing, gray: np.ndarray) -> np.ndarray | None:
    """The package's preprocessed image of a loaded gray image, or None where it refuses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "signature larger than the canvas"
        try:
            return pre.image(gray)
        except ImageError:
            return None


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """What `load_signature` returns for an RGB file of these pixels (Pillow's "F" conversion)."""
    return np.array(Image.fromarray(rgb, "RGB").convert("F"), dtype=np.float32)


@dataclass
class Tally:
    """Exact-equality figures over a set of images."""

    images: int = 0
    exact: int = 0
    max_levels: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, label: str, graph: np.ndarray, valid: bool, python: np.ndarray | None) -> None:
        self.images += 1
        if valid != (python is not None):
            self.failures.append(f"{label}: valid {valid}, python {'ok' if python is not None else 'refused'}")
            return
        if python is None:
            ok = not graph.any()  # a refused image gives blank zeros
        else:
            ok = graph.shape == python.shape and np.array_equal(graph, python)
            if graph.shape == python.shape:
                self.max_levels = max(self.max_levels, int(np.abs(graph.astype(int) - python).max()))
        self.exact += ok
        if not ok:
            self.failures.append(f"{label}: differs")

    def line(self, what: str) -> str:
        return f"{what}: {self.exact}/{self.images} exactly equal, max gray-level difference {self.max_levels}"


def real_scans() -> list[Path]:
    paths = sorted((FIXTURES / "signatures").glob("*.png")) + sorted((FIXTURES / "sigver_wiwd").glob("*.png"))
    if not paths:
        pytest.skip(f"no real scans under {FIXTURES}")
    return paths


def white(rows: int, cols: int, level: int = 255) -> np.ndarray:
    return np.full((rows, cols, 3), level, np.uint8)


def adversarial_images(minimum: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
    """Drawn and hostile shapes, uint8 RGB; `minimum` is an SPP model's smallest input."""
    dot = white(200, 300)
    dot[100, 150] = 0
    tiny_dot = white(3, 3)
    tiny_dot[1, 1] = 0
    borders = drawn_page(901, 300, 500, False)
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = 20
    corner = white(120, 160)
    corner[:6, :9] = 0
    huge_ink = drawn_page(902, 1100, 1600, False)
    huge_ink[40:-40:37, 30:-30] = 30  # ruled strokes across: the ink box exceeds the canvas
    tall_ink = white(1200, 300)
    tall_ink[20:-20, 140:150] = 10  # taller than the canvas, narrower
    large = drawn_page(903, 3000, 4000, False)
    gradient = np.repeat(np.linspace(180, 255, 500).astype(np.uint8)[None, :, None], 3, axis=2).repeat(300, axis=0)
    gradient[140:160, 100:400] = 40
    faint = np.where(drawn_page(904, 260, 420, False) < 128, 200, 230).astype(np.uint8)
    blue = drawn_page(905, 240, 380, False)
    blue[100:110, 50:300] = (30, 40, 200)  # colored ink: the RGB weights matter
    noise = np.random.default_rng(906).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    row = white(1, 80)
    row[0, 10:30] = 0
    column = white(80, 1)
    column[10:30, 0] = 0
    two_levels = (
        np.where(np.random.default_rng(907).random((160, 240, 1)) < 0.5, 90, 160).repeat(3, axis=2).astype(np.uint8)
    )
    return [
        ("drawn_small", drawn_page(910, 260, 400, False)),
        ("drawn_clutter", drawn_page(911, 400, 620, True)),
        ("one_pixel_ink", dot),
        ("tiny_3x3_dot", tiny_dot),
        ("tiny_3x3_white", white(3, 3)),
        ("one_by_one", white(1, 1, 7)),
        ("ink_on_borders", borders),
        ("ink_in_corner", corner),
        ("ink_larger_than_canvas", huge_ink),
        ("ink_taller_than_canvas", tall_ink),
        ("large_3000x4000", large),
        ("all_white_page", white(300, 400)),
        ("uniform_gray_128", white(200, 260, 128)),
        ("gradient_with_bar", gradient),
        ("faint_two_levels", faint),
        ("colored_ink", blue),
        ("rgb_noise", noise),
        ("single_row_image", row),
        ("single_column_image", column),
        ("two_gray_levels", two_levels),
        ("exactly_spp_minimum", drawn_page(912, minimum[0], minimum[1], False)),
        ("one_row_below_spp_minimum", drawn_page(913, minimum[0] - 1, minimum[1] + 5, False)),
        ("one_column_below_spp_minimum", drawn_page(914, minimum[0] + 5, minimum[1] - 1, False)),
    ]


@pytest.fixture(scope="module")
def adversarial() -> list[tuple[str, np.ndarray]]:
    """The adversarial images, drawn once (the 3000 x 4000 page takes a while)."""
    return adversarial_images(preprocessing("signet_spp_300dpi").input_size)


@pytest.fixture(scope="module", params=MODELS)
def model_case(request):
    pre = preprocessing(request.param)
    return request.param, pre, session(wiwd_model(pre))


# ---- the whole graph -------------------------------------------------------------------------


def test_real_scans_exactly_equal(model_case):
    name, pre, sess = model_case
    tally = Tally()
    graph_seconds = load_seconds = image_seconds = 0.0
    paths = real_scans()
    sess.run(None, {"rgb": np.array(Image.open(paths[0]).convert("RGB"))})  # warm-up, not timed
    for path in paths:
        rgb = np.array(Image.open(path).convert("RGB"))  # the pixels a runtime's decoder gives
        start = time.perf_counter()
        image, valid = sess.run(None, {"rgb": rgb})
        graph_seconds += time.perf_counter() - start
        start = time.perf_counter()
        gray = pre.load(path)
        load_seconds += time.perf_counter() - start
        start = time.perf_counter()
        python = python_image(pre, gray)
        image_seconds += time.perf_counter() - start
        tally.add(path.name, image, bool(valid), python)

    def ms(seconds: float) -> str:
        return f"{1000 * seconds / tally.images:.1f}"

    print(
        f"\n{tally.line(name + ' real scans')}; graph {ms(graph_seconds)} ms/image (onnxruntime, 2 threads, "
        f"decoded pixels in), Python {ms(image_seconds)} ms/image (pre.image of the loaded gray; "
        f"+ {ms(load_seconds)} ms pre.load, decode included)"
    )
    assert not tally.failures, tally.failures


def test_adversarial_images(model_case, adversarial):
    name, pre, sess = model_case
    tally = Tally()
    for label, rgb in adversarial:
        image, valid = sess.run(None, {"rgb": rgb})
        tally.add(label, image, bool(valid), python_image(pre, gray_of(rgb)))
    print(f"\n{tally.line(name + ' drawn/adversarial')}")
    assert not tally.failures, tally.failures


def test_refusals_are_the_expected_ones(adversarial):
    """The adversarial set really exercises refusals (else the valid check proves nothing)."""
    centered, spp = preprocessing("signet"), preprocessing("signet_spp_300dpi")
    images = [(label, rgb) for label, rgb in adversarial if rgb.size < 10_000_000]  # the large page refuses nothing
    refused = {label for label, rgb in images if python_image(centered, gray_of(rgb)) is None}
    assert {
        "all_white_page",
        "uniform_gray_128",
        "tiny_3x3_white",
        "one_by_one",
        "single_row_image",
        "single_column_image",
    } <= refused
    assert "one_pixel_ink" not in refused and "ink_larger_than_canvas" not in refused
    spp_refused = {label for label, rgb in images if python_image(spp, gray_of(rgb)) is None}
    assert {"one_row_below_spp_minimum", "one_column_below_spp_minimum", "tiny_3x3_dot"} <= spp_refused
    assert "exactly_spp_minimum" not in spp_refused and "all_white_page" not in spp_refused  # SPP keeps a blank page


def test_perturbed_blur_fails():
    """sigma 2.1 instead of 2 in the graph: the comparison must catch it."""
    pre = preprocessing("signet")
    sess = session(wiwd_model(pre, blur_sigma=2.1))
    tally = Tally()
    for path in real_scans()[:8]:
        image, valid = sess.run(None, {"rgb": np.array(Image.open(path).convert("RGB"))})
        tally.add(path.name, image, bool(valid), python_image(pre, pre.load(path)))
    print(f"\n{tally.line('perturbed graph (blur sigma 2.1)')}")
    assert tally.failures


@pytest.mark.parametrize("model", MODELS)
def test_reference_runtime_small_image(model):
    """Standard operators only: ONNX's reference runtime gives the same bytes on a small page."""
    from onnx.reference import ReferenceEvaluator

    pre = preprocessing(model)
    rgb = drawn_page(920, 40, 64, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's divide-by-zero in Otsu branches that Where drops
        image, valid = ReferenceEvaluator(wiwd_model(pre)).run(None, {"rgb": rgb})
    python = python_image(pre, gray_of(rgb))
    assert python is not None and bool(valid)
    assert np.array_equal(image, python)


# ---- building blocks against the libraries they copy -----------------------------------------


def test_gray_conversion_all_colors():
    """(299 R + 587 G + 114 B) // 1000 == Pillow's "F" truncated to uint8, for all 2**24 colors."""
    g = GraphBuilder(OPSET)
    gray = pillow_gray_uint8(g, "rgb", "gray")
    sess = session(to_model(g, [("rgb", TensorProto.UINT8, ["H", "W", 3])], [(gray, TensorProto.UINT8, ["H", "W"])]))
    colors = np.arange(1 << 24, dtype=np.uint32)
    rgb = (
        np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=-1)
        .astype(np.uint8)
        .reshape(4096, 4096, 3)
    )
    for part in np.split(rgb, 4):
        expected = np.array(Image.fromarray(part, "RGB").convert("F"), dtype=np.float32).astype(np.uint8)
        assert np.array_equal(sess.run(None, {"rgb": part})[0], expected)


def otsu_model(always_fast: bool = False) -> onnx.ModelProto:
    """x (uint8 [H, W]) -> OpenCV's Otsu threshold, and whether the fast side decided it.

    always_fast: the `If` told to take the fast side whatever its guard says (a mutation)."""
    g = GraphBuilder(OPSET)
    threshold = otsu_threshold(g, "x", "otsu")
    clear = next(node for node in g.nodes if node.name == "otsu/fast/Clear").output[0]
    if always_fast:
        choice = next(node for node in g.nodes if node.name == "otsu/If")
        choice.input[0] = g.const("otsu/always", np.array(True))
    return to_model(
        g, [("x", TensorProto.UINT8, ["H", "W"])], [(threshold, TensorProto.DOUBLE, []), (clear, TensorProto.BOOL, [])]
    )


def otsu_images() -> list[np.ndarray]:
    """Images with varied histograms (noise, a few levels, a bump, one odd pixel, symmetric ones), and one
    pixel in 12 M (q1 < FLT_EPSILON)."""
    rng = np.random.default_rng(5)
    images = []
    for index in range(300):
        rows, cols = rng.integers(1, 60, 2)
        kind = index % 4
        if kind == 0:
            image = rng.integers(0, 256, (rows, cols))
        elif kind == 1:
            levels = rng.integers(0, 256, rng.integers(1, 5))
            image = levels[rng.integers(0, len(levels), (rows, cols))]
        elif kind == 2:
            image = np.clip(rng.normal(rng.uniform(0, 255), rng.uniform(0, 40), (rows, cols)), 0, 255)
        else:
            image = np.full((rows, cols), rng.integers(0, 256))
            image.flat[rng.integers(0, image.size)] = rng.integers(0, 256)
        images.append(image.astype(np.uint8))
    for _ in range(100):  # symmetric histograms (v and 255 - v): sigma ties between distant bins
        half = rng.integers(0, 256, int(rng.integers(2, 60)))
        images.append(np.concatenate([half, 255 - half]).astype(np.uint8)[None, :])
    big = np.full((3000, 4000), 255, np.uint8)
    big[5, 7] = 3
    images.append(big)
    return images


def opencv_otsu(image: np.ndarray, ipp: bool) -> float:
    """cv2.threshold's Otsu value, with Intel IPP's version (OpenCV's default where built in) or
    OpenCV's own C loop, which the graph reproduces."""
    used = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(ipp)
    try:
        return cv2.threshold(image, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]
    finally:
        cv2.ipp.setUseIPP(used)


def test_otsu_matches_opencv():
    """Equal to OpenCV's C loop on every image, the fast side deciding most, the exact recurrence
    the rest; equal to IPP's Otsu too except on exact ties (symmetric histograms), where IPP
    picks another of the equal bins."""
    sess = session(otsu_model())
    decided, ipp_ties = [], 0
    for image in otsu_images():
        threshold, clear = sess.run(None, {"x": image})
        assert threshold == opencv_otsu(image, ipp=False), image.shape
        if threshold != opencv_otsu(image, ipp=True):
            assert image.shape[0] == 1, image.shape  # only the symmetric images (one row each)
            ipp_ties += 1
        decided.append(bool(clear))
    assert 100 < sum(decided) < len(decided) - 50, sum(decided)  # both sides ran, many times each
    assert ipp_ties < 20, ipp_ties


def test_otsu_both_sides_in_the_reference_runtime():
    """ONNX's reference runtime takes each side of the `If` where onnxruntime does, with the same value."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(11)
    noise = rng.integers(0, 256, (30, 40)).astype(np.uint8)  # a clear maximum: the fast side
    two_levels = np.where(rng.random((30, 40)) < 0.4, 20, 200).astype(np.uint8)  # equal sigma over empty bins
    evaluator = ReferenceEvaluator(otsu_model())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's divide-by-zero on skipped bins, which Where drops
        results = [evaluator.run(None, {"x": image}) for image in (noise, two_levels)]
    assert [bool(clear) for _threshold, clear in results] == [True, False]
    for image, (threshold, _clear) in zip((noise, two_levels), results):
        assert threshold == opencv_otsu(image, ipp=False)


def test_otsu_fast_side_alone_is_not_opencv():
    """Without its guard the fast side is wrong on some images: the guard is what makes it exact."""
    sess = session(otsu_model(always_fast=True))
    wrong = [image.shape for image in otsu_images() if sess.run(None, {"x": image})[0] != opencv_otsu(image, ipp=False)]
    assert wrong, "the unguarded fast side agreed with OpenCV's C loop everywhere"


@pytest.mark.parametrize(
    "in_size,out_size",
    [
        ((952, 1360), (170, 243)),  # SigNet's canvas -> resize target
        ((60, 60), (20, 41)),  # vertical first: 40 > 2 * 19
        ((60, 60), (20, 40)),  # tie 40 == 2 * 20: horizontal first
        ((50, 50), (20, 100)),  # height shrinks, width grows: vertical first
        ((50, 50), (100, 20)),
        ((7, 5), (3, 11)),
        ((1, 1), (4, 4)),
        ((100, 37), (100, 200)),
    ],
)
def test_resize_matches_pillow(in_size, out_size):
    g = GraphBuilder(OPSET)
    resized = resize_bilinear(g, "x", in_size, out_size, "resize")
    sess = session(
        to_model(g, [("x", TensorProto.UINT8, list(in_size))], [(resized, TensorProto.UINT8, list(out_size))])
    )
    rng = np.random.default_rng(sum(in_size) + sum(out_size))
    for binary in (False, True):
        image = rng.integers(0, 256, in_size).astype(np.uint8)
        if binary:
            image = np.where(image < 128, 0, 255).astype(np.uint8)
        expected = np.array(Image.fromarray(image).resize(out_size[::-1], Image.Resampling.BILINEAR))
        assert np.array_equal(sess.run(None, {"x": image})[0], expected), (
            in_size,
            out_size,
            vertical_first(in_size, out_size),
        )
