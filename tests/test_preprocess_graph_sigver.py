"""Style "sigver" as an ONNX graph against the package's Python preprocessing, bit for bit.

Parts first (each against the library it reproduces): SciPy's Gaussian filter per mode and
dtype, scikit-image's gray conversion on all 2**24 RGB triples, scikit-image's Otsu threshold,
the anti-aliased resize. Then the whole style for both sigver models (signet_pth, siamese) in
onnxruntime on the real scans of ../shared/fixtures and on drawn and adversarial pages, one
small page in ONNX's reference runtime, and two perturbed builds that must be caught.

    pytest tests/test_preprocess_graph_sigver.py -s   (prints the figures and timings)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ort_session, shared_fixture
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from PIL import Image
from scipy import ndimage
from scipy.ndimage._filters import _gaussian_kernel1d
from skimage.filters import threshold_otsu

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing import Preprocessing
from signature_onnx.preprocessing import sigver as python_sigver
from signature_onnx.preprocessing.sigver import luminance as plain_gray
from stages.core.drawings import drawn_page
from stages.core.graph_builder import GraphBuilder
from stages.core.params import model_spec
from stages.preprocess_graph import sigver as graph_sigver
from stages.preprocess_graph.gaussian import gaussian_blur, gaussian_kernel, kernel_radius
from stages.preprocess_graph.gray_skimage import gray_graph
from stages.preprocess_graph.otsu_skimage import otsu_threshold
from stages.preprocess_graph.resize_skimage import resize_image

OPSET = 17
IR_VERSION = 8  # opset 17's IR version; onnxruntime 1.31 reads up to 13
MODELS = ("signet_pth", "siamese")
ONNX_TYPES = {
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(bool): TensorProto.BOOL,
}
Run = Callable[[np.ndarray], tuple[np.ndarray, ...]]


# ---- helpers -------------------------------------------------------------------------------


def make_model(g: GraphBuilder, inputs: dict[str, tuple], outputs: dict[str, tuple]) -> onnx.ModelProto:
    """A checked model of `g`'s nodes: inputs {name: (dtype, shape)}, outputs {tensor: (name, dtype, shape)}."""
    nodes = list(g.nodes) + [
        helper.make_node("Identity", [tensor], [out], name=f"{out}/Identity") for tensor, (out, _, _) in outputs.items()
    ]
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(n, ONNX_TYPES[np.dtype(d)], s) for n, (d, s) in inputs.items()],
        [helper.make_tensor_value_info(n, ONNX_TYPES[np.dtype(d)], s) for n, d, s in outputs.values()],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model


def ort_run(model: onnx.ModelProto, threads: int = 2) -> Callable[..., list[np.ndarray]]:
    session = ort_session(model.SerializeToString(), threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def style_model(pre: Preprocessing, **options) -> onnx.ModelProto:
    """pixels uint8 [H, W, 3] -> image uint8 [input_size], valid bool []."""
    g = GraphBuilder(OPSET)
    image, valid = graph_sigver.image_graph(g, "pixels", pre, **options)
    return make_model(
        g,
        {"pixels": (np.uint8, ["height", "width", 3])},
        {image: ("image", np.uint8, list(pre.input_size)), valid: ("valid", bool, [])},
    )


def python_image(pre: Preprocessing, gray: np.ndarray) -> np.ndarray | None:
    """`pre.image(gray)`, None where the package refuses the image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "larger than the canvas"
            return pre.image(gray)
    except ImageError:
        return None


def python_gray(rgb: np.ndarray) -> np.ndarray:
    """What `load_signature` makes of a file that decodes to these RGB pixels."""
    return python_sigver.gray_from_rgb(rgb)


@dataclass
class Figures:
    """Graph against Python over a set of pages."""

    pages: int = 0
    accepted: int = 0
    exact: int = 0
    max_levels: int = 0
    flag_mismatches: list[str] = field(default_factory=list)
    graph_seconds: float = 0.0
    python_seconds: float = 0.0

    def add(self, label: str, graph: tuple[np.ndarray, np.ndarray], python: np.ndarray | None) -> None:
        image, valid = graph
        self.pages += 1
        if bool(valid) != (python is not None):
            self.flag_mismatches.append(label)
        if python is None:
            if image.any():
                self.flag_mismatches.append(f"{label} (refused but not blank)")
            return
        self.accepted += 1
        self.exact += int(np.array_equal(image, python))
        self.max_levels = max(self.max_levels, int(np.abs(image.astype(int) - python.astype(int)).max()))

    def __str__(self) -> str:
        return (
            f"{self.exact}/{self.accepted} accepted pages exactly equal ({self.pages} pages), max {self.max_levels} "
            f"gray levels off, flag mismatches {self.flag_mismatches}; graph {1000 * self.graph_seconds / max(self.pages, 1):.1f} "
            f"ms/page, Python {1000 * self.python_seconds / max(self.pages, 1):.1f} ms/page"
        )


def compare_pages(
    run: Run, pre: Preprocessing, pages: list[tuple[str, np.ndarray, Callable[[], np.ndarray]]]
) -> Figures:
    """pages: (label, RGB pixels given to the graph, the package's gray image of that file)."""
    figures = Figures()
    for label, rgb, load in pages:
        start = time.perf_counter()
        graph = run(rgb)
        middle = time.perf_counter()
        python = python_image(pre, load())
        figures.graph_seconds += middle - start
        figures.python_seconds += time.perf_counter() - middle
        figures.add(label, (graph[0], graph[1]), python)
    return figures


def real_scans() -> list[tuple[str, np.ndarray, Callable[[], np.ndarray]]]:
    """The fixtures' scans: the graph gets `Image.convert("RGB")`, Python loads the file itself."""
    paths = sorted(shared_fixture("signatures").glob("*.png")) + sorted(shared_fixture("sigver_wiwd").glob("*.png"))
    return [
        (p.name, np.array(Image.open(p).convert("RGB")), lambda p=p: python_sigver.load_signature(p)) for p in paths
    ]


def white(rows: int, cols: int, level: int = 255) -> np.ndarray:
    return np.full((rows, cols, 3), level, dtype=np.uint8)


def adversarial_pages() -> list[tuple[str, np.ndarray]]:
    """Shapes and contents a port gets wrong. uint8 RGB, deterministic."""
    rng = np.random.default_rng(20261206)
    one_pixel = white(200, 300)
    one_pixel[100, 150] = 0
    small_square = white(200, 300)
    small_square[90:94, 140:146] = 10
    borders = drawn_page(801, 300, 500, False)
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = 20
    corner = white(120, 160)
    corner[:6, :9] = 30  # ink touching two borders
    huge = drawn_page(802, 1100, 1600, False)
    huge[40:-40:37, 30:-30] = 30  # ruled strokes: the ink box exceeds the canvas on both axes
    dark_page = rng.integers(0, 90, size=(1000, 1400, 3), dtype=np.uint8)  # ink everywhere
    faint = np.where(drawn_page(803, 260, 420, False) < 128, 200, 230).astype(np.uint8)
    gradient = np.repeat(np.linspace(180, 255, 500).astype(np.uint8)[None, :, None], 3, axis=2).repeat(300, axis=0)
    gradient[140:160, 100:400] = 40
    levels = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)  # every gray level, colored
    row_ink = white(100, 200)
    row_ink[50, 20:180] = 0  # the blur spreads it over rows: accepted or not, the flag must agree
    tiny_dot = white(3, 3)
    tiny_dot[1, 1] = 0
    return [
        ("blank_page", white(300, 400)),
        ("gray_uniform", white(50, 60, 128)),
        ("one_pixel_ink", one_pixel),
        ("tiny_ink_square", small_square),
        ("ink_on_borders", borders),
        ("ink_in_corner", corner),
        ("ink_larger_than_canvas", huge),
        ("dark_page", dark_page),
        ("faint_ink", faint),
        ("gradient_paper", gradient),
        ("random_colors", levels),
        ("one_row_of_ink", row_ink),
        ("tiny_1x1", white(1, 1)),
        ("tiny_3x3_dot", tiny_dot),
        ("single_column", np.repeat(np.arange(0, 256, 8, dtype=np.uint8)[:, None, None], 3, axis=2)),
        ("thin_3x500", drawn_page(804, 3, 500, False)),
        ("color_clutter", drawn_page(805, 400, 640, True)),
    ]


def drawn_pages(count: int) -> list[tuple[str, np.ndarray]]:
    """Signatures on paper of varied sizes (`stages.core.drawings.drawn_page`)."""
    return [(f"drawn_{i}", drawn_page(900 + i, 180 + 53 * i, 300 + 71 * i, i % 3 == 0)) for i in range(count)]


@pytest.fixture(scope="module")
def presets() -> dict[str, Preprocessing]:
    return {
        name: model_spec(name, Path(__file__).resolve().parents[1] / "params.yaml").preprocessing.package_form()
        for name in MODELS
    }


@pytest.fixture(scope="module")
def models(presets: dict[str, Preprocessing]) -> dict[str, onnx.ModelProto]:
    return {name: style_model(pre) for name, pre in presets.items()}


# ---- the Gaussian filter -------------------------------------------------------------------


def blur_model(sigma, mode: str, dtype: type) -> Run:
    g = GraphBuilder(OPSET)
    out = gaussian_blur(g, "x", sigma, mode, dtype, "blur", x_dtype=dtype)
    return ort_run(make_model(g, {"x": (dtype, ["h", "w"])}, {out: ("y", dtype, ["h", "w"])}), threads=1)


@pytest.mark.parametrize("sigma", [0.7, 2.0, 2.3, (2.3, 1.7), (0.0, 1.5)])
def test_kernel_is_scipys(sigma) -> None:
    for s in np.ravel(sigma):
        if s > 0:
            radius = kernel_radius(s)
            assert np.array_equal(gaussian_kernel(s, radius), _gaussian_kernel1d(s, 0, radius))


@pytest.mark.parametrize("mode", ["reflect", "nearest", "constant"])
@pytest.mark.parametrize("dtype", [np.float64, np.uint8])
@pytest.mark.parametrize("sigma", [2.0, (2.3, 1.7), (0.0, 1.5)])
def test_gaussian_is_scipys_bit_for_bit(mode: str, dtype: type, sigma) -> None:
    """Every pixel equal, also on images shorter than the kernel (scipy's repeated reflection)."""
    run = blur_model(sigma, mode, dtype)
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (1, 6), (3, 3), (7, 2), (40, 57), (160, 230)]:
        x = rng.integers(0, 256, size=shape).astype(np.uint8) if dtype == np.uint8 else rng.random(shape) * 255
        expected = ndimage.gaussian_filter(x, sigma, mode=mode, truncate=4.0, output=dtype)
        got = run(x)[0]
        assert got.dtype == expected.dtype and np.array_equal(got, expected), (shape, int((got != expected).sum()))


def test_scipy_sums_the_outermost_pair_first() -> None:
    """The fact gaussian.py relies on: t = x[i] w0, then pairs j = r .. 1. The other order differs."""
    rng = np.random.default_rng(3)
    x = rng.random(500) * 255
    sigma, radius = 2.0, kernel_radius(2.0)
    w = gaussian_kernel(sigma, radius)[radius:]  # w[j] for j = 0..r
    padded = np.pad(x, radius)
    center = padded[radius : radius + len(x)]

    def pair(j: int) -> np.ndarray:
        return padded[radius - j : radius - j + len(x)] + padded[radius + j : radius + j + len(x)]

    outer_first, inner_first = center * w[0], center * w[0]
    for j in range(radius, 0, -1):
        outer_first = outer_first + pair(j) * w[j]
    for j in range(1, radius + 1):
        inner_first = inner_first + pair(j) * w[j]
    expected = ndimage.gaussian_filter1d(x, sigma, mode="constant")
    assert np.array_equal(outer_first, expected)
    assert not np.array_equal(inner_first, expected)


def test_uint8_passes_truncate() -> None:
    """scipy stores each uint8 pass truncated (a C cast), not rounded: the fact behind the uint8 mode."""
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(60, 80)).astype(np.uint8)
    first = ndimage.gaussian_filter1d(x.astype(np.float64), 2.0, axis=0, mode="reflect")
    second = ndimage.gaussian_filter1d(first.astype(np.uint8).astype(np.float64), 2.0, axis=1, mode="reflect")
    assert np.array_equal(ndimage.gaussian_filter(x, 2.0), second.astype(np.uint8))
    assert not np.array_equal(ndimage.gaussian_filter(x, 2.0), np.rint(second).astype(np.uint8))


# ---- gray, Otsu, resize --------------------------------------------------------------------


def skimage_gray(rgb: np.ndarray) -> np.ndarray:
    """What the package computes: `img_as_ubyte(rgb2gray(rgb))`, uint8 [...]."""
    from skimage import color, img_as_ubyte

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # img_as_ubyte's "lossy conversion" note
        return img_as_ubyte(color.rgb2gray(rgb))


def test_gray_is_the_plain_sum_and_scikit_image_but_where_blas_fuses() -> None:
    """All 2**24 triples (as 256 images of 256 x 256): the graph equals the plain-sum rule
    everywhere, and scikit-image except on the few triples this CPU's BLAS rounds with FMA
    (146 on the machine it was written on, 0 without FMA), never more than one level off."""
    g = GraphBuilder(OPSET)
    out = gray_graph(g, "rgb", "gray")
    run = ort_run(make_model(g, {"rgb": (np.uint8, ["h", "w", 3])}, {out: ("gray", np.uint8, ["h", "w"])}))
    levels = np.arange(256, dtype=np.uint8)
    block = np.empty((256, 256, 3), dtype=np.uint8)
    block[..., 1], block[..., 2] = levels[:, None], levels[None, :]
    fused = 0
    for red in range(256):
        block[..., 0] = red
        graph, truth = run(block)[0], skimage_gray(block)
        assert np.array_equal(graph, plain_gray(block))
        fused += int((graph != truth).sum())
        assert np.abs(graph.astype(int) - truth).max() <= 1
    assert fused < 1000, fused
    # A gray file (taken as it is by the package) given to the graph as R = G = B: the same pixels.
    gray_levels = np.repeat(np.stack([levels, levels])[..., None], 3, axis=2)
    assert np.array_equal(run(gray_levels)[0], np.stack([levels, levels]))


def test_otsu_equals_scikit_image() -> None:
    g = GraphBuilder(OPSET)
    out = otsu_threshold(g, "x", "otsu")
    run = ort_run(make_model(g, {"x": (np.uint8, ["h", "w"])}, {out: ("t", np.float64, [])}), threads=1)
    rng = np.random.default_rng(11)
    checked = 0
    for i in range(200):
        rows, cols = rng.integers(1, 200, size=2)
        low, high = sorted(rng.integers(0, 256, size=2))
        kind = i % 3
        if kind == 0:
            x = rng.integers(low, high + 1, size=(rows, cols))
        elif kind == 1:  # mostly paper, some ink
            x = np.where(
                rng.random((rows, cols)) < 0.1, rng.integers(0, 120, (rows, cols)), rng.integers(200, 256, (rows, cols))
            )
        else:  # a few levels only: many empty bins between them
            x = rng.choice(rng.integers(0, 256, size=3), size=(rows, cols))
        x = x.astype(np.uint8)
        if x.min() == x.max():
            continue
        checked += 1
        assert run(x)[0] == threshold_otsu(x), (i, x.shape)
    assert checked > 150
    assert np.isfinite(run(np.full((3, 3), 7, np.uint8))[0])  # uniform: some value, no failure


@pytest.mark.parametrize("size", [(170, 242), (256, 256)])
def test_resize_equals_the_package(size) -> None:
    canvas = (952, 1360)
    g = GraphBuilder(OPSET)
    out = resize_image(g, "x", canvas, size, "resize")
    run = ort_run(make_model(g, {"x": (np.uint8, list(canvas))}, {out: ("y", np.uint8, list(size))}))
    rng = np.random.default_rng(13)
    for case in range(8):
        x = np.zeros(canvas, dtype=np.uint8)
        if case == 0:
            x[:] = rng.integers(1, 256, size=canvas)  # no 0: scikit-image's own path, clip low end = min
        elif case == 1:
            x[0, 0] = 200  # a corner pixel: the zero padding of the zoom
        elif case == 2:
            pass  # all zero
        elif case == 5:
            x[-1, -1] = 90  # the opposite corner: the ink window ends at the image's end
        elif case == 6:
            x[300:700, 411] = 255  # one column of ink, far from any sampled row's edge
        elif case == 7:
            x[3, 5:9], x[940, 1300] = 17, 250  # two far-apart specks: one window spanning both
        else:
            top, left = rng.integers(0, 850), rng.integers(0, 1250)
            x[top : top + 100, left : left + 110] = rng.integers(
                0, 256, size=x[top : top + 100, left : left + 110].shape
            )
        assert np.array_equal(run(x)[0], python_sigver.resize_image(x, size)), case


# ---- the whole style -----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_real_scans_exactly_equal(name: str, presets, models) -> None:
    pre = presets[name]
    run = ort_run(models[name])
    figures = compare_pages(run, pre, real_scans())
    print(f"\n{name} real scans: {figures}")
    assert not figures.flag_mismatches
    assert figures.exact / figures.accepted >= 0.99 and figures.max_levels <= 1, str(figures)


@pytest.mark.parametrize("name", MODELS)
def test_drawn_and_adversarial_pages(name: str, presets, models) -> None:
    pre = presets[name]
    run = ort_run(models[name])
    pages = [(label, rgb, lambda rgb=rgb: python_gray(rgb)) for label, rgb in drawn_pages(6) + adversarial_pages()]
    figures = compare_pages(run, pre, pages)
    print(f"\n{name} drawn + adversarial: {figures}")
    assert not figures.flag_mismatches
    assert figures.accepted >= 10  # the set is not all refusals
    assert figures.exact / figures.accepted >= 0.99 and figures.max_levels <= 1, str(figures)


def test_a_large_page(presets, models) -> None:
    """A 3000 x 4000 scan (12 M pixels: float64 blur, histogram, canvas gathers). The steps up to
    the canvas are the same for both models, so one model is enough here (the test stays fast)."""
    pre = presets["signet_pth"]
    rgb = drawn_page(806, 3000, 4000, False)
    figures = compare_pages(ort_run(models["signet_pth"]), pre, [("large_3000x4000", rgb, lambda: python_gray(rgb))])
    print(f"\nsignet_pth large page: {figures}")
    assert figures.accepted == 1 and figures.exact == 1 and not figures.flag_mismatches


def test_refused_pages_are_blank_and_invalid(presets, models) -> None:
    run = ort_run(models["siamese"])
    dot = white(3, 3)
    dot[1, 1] = 0
    line = white(30, 40)
    line[:, 20] = 0  # ink on a single column, even after the blur
    for label, rgb in [("blank", white(40, 50)), ("1x1", white(1, 1, 3)), ("3x3 dot", dot), ("one column", line)]:
        image, valid = run(rgb)
        assert python_image(presets["siamese"], python_gray(rgb)) is None, label
        assert valid.shape == () and not valid and not image.any(), label


def test_reference_runtime_agrees(presets, models) -> None:
    """One small page through ONNX's own reference implementation: same bits as onnxruntime and Python."""
    pre = presets["signet_pth"]
    rgb = drawn_page(77, 60, 90, False)
    image, valid = ReferenceEvaluator(models["signet_pth"]).run(None, {"pixels": rgb})
    expected = python_image(pre, python_gray(rgb))
    assert expected is not None and bool(valid)
    assert np.array_equal(image, expected)
    assert np.array_equal(image, ort_run(models["signet_pth"])(rgb)[0])


def test_a_wrong_blur_sigma_is_caught(presets) -> None:
    pre = presets["signet_pth"]
    run = ort_run(style_model(pre, blur_sigma=2.5))
    figures = compare_pages(run, pre, real_scans()[:4])
    assert figures.exact < figures.accepted, "a graph blurring with sigma 2.5 passed as sigma 2"


def test_a_wrong_otsu_rule_is_caught(presets, monkeypatch) -> None:
    """Otsu's threshold one gray level higher (as a rule reading the bin's upper edge would give)."""
    pre = presets["signet_pth"]
    original = graph_sigver.otsu_threshold

    def shifted(g: GraphBuilder, gray: str, name: str) -> str:
        return g.op("Add", [original(g, gray, name), g.scalar(f"{name}/shift", 1.0, np.float64)], f"{name}/Shift")

    monkeypatch.setattr(graph_sigver, "otsu_threshold", shifted)
    run = ort_run(style_model(pre))
    figures = compare_pages(run, pre, real_scans()[:4])
    assert figures.exact < figures.accepted, "a graph with a shifted Otsu threshold passed"
