"""Style "rgb" as an ONNX graph (stages/preprocess_graph/rgb.py, resize_area.py) against OpenCV.

The graph must give exactly `cv2.resize(pixels, (cols, rows), interpolation=cv2.INTER_AREA)`
(= `Preprocessing.image` of style "rgb") on real scans and on drawn/random pages of many
sizes, covering every OpenCV path (copy, integer factors 2 x 2 and others, area tables,
the linear-like path of enlargements); changing one rule of the graph must break that.
Run: python -m pytest tests/test_preprocess_graph_rgb.py -q -s   (-s shows the numbers)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

cv2 = pytest.importorskip("cv2")
from conftest import ort_session, shared_fixture  # noqa: E402
from PIL import Image  # noqa: E402
from subgraphs import all_initializers, all_nodes  # noqa: E402

from signature_onnx.preprocessing import Preprocessing  # noqa: E402
from stages import preprocess_graph  # noqa: E402
from stages.core.graph_builder import GraphBuilder  # noqa: E402
from stages.core.params import model_spec  # noqa: E402
from stages.preprocess_graph import resize_area  # noqa: E402

OPSET = 17
IR_VERSION = 8  # the IR of opset 17 (onnxruntime reads up to its own maximum)


def real_scans() -> list[Path]:
    """The 40+ real scans of ../shared/fixtures (the test skips when that folder is absent)."""
    fixtures = shared_fixture()
    scans = sorted((fixtures / "signatures").glob("*.png")) + sorted((fixtures / "sigver_wiwd").glob("*.png"))
    assert len(scans) >= 40, f"expected the shared fixtures under {fixtures}"
    return scans


CLEANING = model_spec("cleaning").preprocessing.package_form()  # params.yaml: rgb, 224 x 224
# (H, W) pages; the comment is the OpenCV path each one takes to 224 x 224.
PAGES = [
    (224, 224),  # copy
    (448, 448),  # integer factors 2 x 2: (sum + 2) >> 2
    (672, 448),  # integer factors 3 x 2: cvRound(sum * (1.f / 6))
    (896, 224),  # integer factors 4 x 1
    (10976, 448),  # factors 49 x 2, but 1 / (224 / 10976) = 49.00000000000001: area tables
    (300, 400),  # area tables
    (1000, 1400),  # area tables
    (4000, 3000),  # area tables, a large page
    (225, 224),  # area tables, a factor barely above 1
    (1115, 256),  # area tables, gradients give float sums near .5 (order and weights matter)
    (1, 1),  # linear-like (enlarging)
    (3, 500),  # linear-like, a very thin page (rows enlarge, columns shrink)
    (500, 3),  # linear-like
    (100, 150),  # linear-like, non-integer enlargement
    (112, 112),  # linear-like, an integer enlargement
    (200000, 1),  # linear-like, a 1-pixel column (rows picked before the horizontal pass)
    (1, 200000),  # linear-like, a 1-pixel row (horizontal pass before picking rows)
]


# ---- building and running --------------------------------------------------------------------


def build_model(pre: Preprocessing) -> onnx.ModelProto:
    """The contract's image graph ("pixels" -> "image", "valid") as a model."""
    g = preprocess_graph.image_graph(pre, OPSET)
    rows, cols = pre.input_size
    inputs = [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["height", "width", 3])]
    outputs = [
        helper.make_tensor_value_info("image", TensorProto.UINT8, [rows, cols, 3]),
        helper.make_tensor_value_info("valid", TensorProto.BOOL, []),
    ]
    graph = helper.make_graph(g.nodes, "rgb", inputs, outputs, g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION)


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    """onnxruntime CPU, 2 threads."""
    return ort_session(model.SerializeToString(), 2)


def run(sess: ort.InferenceSession, pixels: np.ndarray) -> tuple[np.ndarray, bool]:
    """uint8 [H, W, 3] -> (uint8 [rows, cols, 3], valid)."""
    image, valid = sess.run(["image", "valid"], {"pixels": pixels})
    return image, bool(valid)


def opencv(pixels: np.ndarray, pre: Preprocessing) -> np.ndarray:
    rows, cols = pre.input_size
    return cv2.resize(pixels, (cols, rows), interpolation=cv2.INTER_AREA)


def opencv_path(height: int, width: int, rows: int, cols: int) -> str:
    """Which OpenCV INTER_AREA code path a uint8 resize takes (cv::resize, cv::hal::resize)."""
    if (height, width) == (rows, cols):
        return "copy"
    scale_x, scale_y = 1.0 / (cols / width), 1.0 / (rows / height)
    if scale_x < 1 or scale_y < 1:
        return "linear"
    eps = float(np.finfo(np.float64).eps)
    if abs(scale_x - round(scale_x)) < eps and abs(scale_y - round(scale_y)) < eps:
        return "fast 2x2" if round(scale_x) == round(scale_y) == 2 else "fast"
    return "table"


def page(height: int, width: int, rng: np.random.Generator, kind: int) -> np.ndarray:
    """uint8 [height, width, 3]: 0 noise, 1 one color, 2 paper with colored strokes, 3 gradients."""
    if kind == 0:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == 1:
        return np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    if kind == 2:
        pixels = np.full((height, width, 3), 255, np.uint8)
        for _ in range(30):
            top, left = rng.integers(0, height), rng.integers(0, width)
            pixels[top : top + rng.integers(1, 40), left : left + rng.integers(1, 8)] = rng.integers(0, 256, 3)
        return pixels
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([(rows * 7 + cols * 3) % 256, (cols * 5) % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)


def differences(sess: ort.InferenceSession, images: list[np.ndarray], pre: Preprocessing) -> Iterator[int]:
    """The largest |graph - OpenCV| of each image."""
    for pixels in images:
        got, valid = run(sess, pixels)
        assert valid
        yield int(np.abs(got.astype(np.int32) - opencv(pixels, pre)).max())


@pytest.fixture(scope="module")
def cleaning() -> ort.InferenceSession:
    return session(build_model(CLEANING))


# ---- the graph is standard ONNX --------------------------------------------------------------


def test_model_is_standard_onnx() -> None:
    model = build_model(CLEANING)
    onnx.checker.check_model(model, full_check=True)
    assert {node.domain for node in all_nodes(model.graph)} == {""}
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    nodes = list(all_nodes(model.graph))
    assert sum(node.op_type == "If" for node in nodes) >= 4, "the paths are If branches"
    tensors = [name for node in nodes for name in node.output] + [t.name for t in all_initializers(model.graph)]
    assert len(tensors) == len(set(tensors)), "a tensor name is made twice (subgraphs included)"
    assert len({node.name for node in nodes}) == len(nodes)


# ---- exactness -------------------------------------------------------------------------------


def test_real_scans_exact(cleaning: ort.InferenceSession) -> None:
    """Every real scan: graph == Preprocessing.image(Preprocessing.load(file)) == cv2.resize."""
    scans = real_scans()
    worst = 0
    for path in scans:
        pixels = CLEANING.load(path)
        assert np.array_equal(pixels, np.array(Image.open(path).convert("RGB")))
        got, valid = run(cleaning, pixels)
        expected = CLEANING.image(pixels)
        assert valid and got.shape == expected.shape == (224, 224, 3)
        worst = max(worst, int(np.abs(got.astype(np.int32) - expected).max()))
        assert np.array_equal(got, expected), f"{path.name} {pixels.shape}"
    print(f"\n{len(scans)} real scans: {len(scans)} exactly equal, max difference {worst}")


def test_pages_cover_every_opencv_path() -> None:
    assert CLEANING.style == "rgb" and CLEANING.input_size == (224, 224)
    assert {opencv_path(h, w, 224, 224) for h, w in PAGES} == {"copy", "fast 2x2", "fast", "table", "linear"}


@pytest.mark.parametrize("height,width", PAGES)
def test_pages_of_many_sizes_exact(cleaning: ort.InferenceSession, height: int, width: int) -> None:
    rng = np.random.default_rng(height * 10007 + width)
    for kind in (0, 2):
        pixels = page(height, width, rng, kind)
        got, valid = run(cleaning, pixels)
        assert valid
        assert np.array_equal(got, opencv(pixels, CLEANING)), (
            f"{height}x{width} kind {kind} ({opencv_path(height, width, 224, 224)})"
        )


@pytest.mark.parametrize("input_size,count", [((224, 224), 60), ((37, 53), 60)])
def test_random_sizes_exact(input_size: tuple[int, int], count: int) -> None:
    """Seeded random sizes (shrinking, integer factors, enlarging, thin) and contents."""
    pre = Preprocessing(style="rgb", input_size=input_size)
    rows, cols = input_size
    rng = np.random.default_rng(rows * 1000 + cols)
    sizes = [_random_size(rng, rows, cols) for _ in range(count)]
    images = [page(h, w, rng, int(rng.integers(0, 4))) for h, w in sizes]
    worst = list(differences(session(build_model(pre)), images, pre))
    exact = sum(d == 0 for d in worst)
    paths = sorted({opencv_path(h, w, rows, cols) for h, w in sizes})
    print(f"\n{input_size}: {exact}/{count} random pages exactly equal, max difference {max(worst)}, paths {paths}")
    assert exact == count


def _random_size(rng: np.random.Generator, rows: int, cols: int) -> tuple[int, int]:
    mode = int(rng.integers(0, 4))
    if mode == 0:
        size = (rng.integers(1, 3 * rows), rng.integers(1, 3 * cols))
    elif mode == 1:
        size = (rows * rng.integers(1, 5), cols * rng.integers(1, 5))
    elif mode == 2:
        size = (rng.integers(rows, 1500), rng.integers(cols, 1500))
    else:
        size = (rng.integers(1, 20), rng.integers(1, 1500))
    height, width = int(size[0]), int(size[1])
    return (width, height) if rng.random() < 0.5 else (height, width)


def test_empty_image_is_invalid_and_blank(cleaning: ort.InferenceSession) -> None:
    for shape in [(0, 0, 3), (0, 7, 3), (5, 0, 3)]:
        got, valid = run(cleaning, np.zeros(shape, np.uint8))
        assert not valid and got.shape == (224, 224, 3) and not got.any()
    got, valid = run(cleaning, np.zeros((1, 1, 3), np.uint8))
    assert valid


def test_reference_evaluator() -> None:
    """ONNX's own reference runtime agrees on small pages, one per path (and an empty one)."""
    from onnx.reference import ReferenceEvaluator

    evaluator = ReferenceEvaluator(build_model(CLEANING))
    rng = np.random.default_rng(5)
    # enlargement (all rows; rows picked), area tables, 2 x 2, 2 x 3 integer factors
    for height, width in [(60, 80), (300, 3), (300, 260), (448, 448), (448, 672)]:
        pixels = page(height, width, rng, 0)
        image, valid = evaluator.run(["image", "valid"], {"pixels": pixels})
        assert bool(valid) and np.array_equal(image, opencv(pixels, CLEANING)), (height, width)
    image, valid = evaluator.run(["image", "valid"], {"pixels": np.zeros((0, 5, 3), np.uint8)})
    assert not bool(valid) and image.shape == (224, 224, 3) and not image.any()


def test_preprocess_model_network_input(cleaning: ort.InferenceSession) -> None:
    """preprocess.onnx (the contract's assembly, names prefixed) gives the float network input."""
    spec = model_spec("cleaning").onnx.inputs[0]  # "input", float32 [1, 224, 224, 3]
    model = preprocess_graph.preprocess_model(CLEANING, [spec], OPSET, IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    pixels = np.array(Image.open(real_scans()[0]).convert("RGB"))
    got = session(model).run(["input"], {"input_pixels": pixels})[0]
    expected = CLEANING.network_input(CLEANING.image(pixels), "float32")
    assert got.dtype == expected.dtype and np.array_equal(got, expected)


# ---- a changed rule is caught ----------------------------------------------------------------


def _floor_weights(g: GraphBuilder, f: str, scope: str) -> tuple[str, str]:
    """The linear path's fixed-point weights truncated instead of rounded half to even."""
    one, coef = (g.scalar(f"{scope}/p/{n}", v, np.float32) for n, v in (("one", 1.0), ("coef", 2048.0)))
    scaled = [
        g.op("Mul", [g.op("Sub", [one, f], f"{scope}/p/Sub"), coef], f"{scope}/p/Mul0"),
        g.op("Mul", [f, coef], f"{scope}/p/Mul1"),
    ]
    return tuple(
        g.op("Cast", [g.op("Floor", [w], f"{scope}/p/Floor{i}")], f"{scope}/p/Cast{i}", to=TensorProto.UINT32)
        for i, w in enumerate(scaled)
    )


def _reversed_scan(original: Callable[..., str]) -> Callable[..., str]:
    """The taps summed last to first (Scan's scan_input_directions)."""

    def reversed_order(g: GraphBuilder, *args, **kwargs) -> str:
        out = original(g, *args, **kwargs)
        g.nodes[-1].attribute.append(helper.make_attribute("scan_input_directions", [1, 1]))
        return out

    return reversed_order


def _quarter_half_even(g: GraphBuilder, sums: str, scope: str) -> str:
    """2 x 2 sums / 4 rounded half to even (cvRound) instead of OpenCV's (sum + 2) >> 2."""
    quarter = g.scalar(f"{scope}/p/quarter", 0.25, np.float32)
    return g.op("Round", [g.op("Mul", [sums, quarter], f"{scope}/p/Mul")], f"{scope}/p/Round")


def _float32_cell(original: Callable[..., tuple[str, str, str]]) -> Callable[..., tuple[str, str, str]]:
    """The area cell width rounded to float32 before the weights' double divisions."""

    def float32_cell(
        g: GraphBuilder, cell: str, lead_gap: str, trail_gap: str, fast: str, scope: str
    ) -> tuple[str, str, str]:
        narrowed = g.op("Cast", [cell], f"{scope}/p/Cast32", to=TensorProto.FLOAT)
        widened = g.op("Cast", [narrowed], f"{scope}/p/Cast64", to=TensorProto.DOUBLE)
        return original(g, widened, lead_gap, trail_gap, fast, scope)

    return float32_cell


PERTURBATIONS = {
    "linear weights truncated": lambda mp: mp.setattr(resize_area, "fixed_point_weights", _floor_weights),
    "taps summed in reverse order": lambda mp: mp.setattr(
        resize_area, "weighted_scan", _reversed_scan(resize_area.weighted_scan)
    ),
    "integer factors not detected": lambda mp: mp.setattr(resize_area, "DBL_EPSILON", 0.0),
    "2x2 rounded half to even": lambda mp: mp.setattr(resize_area, "quarter_half_up", _quarter_half_even),
    "cell width rounded to float32": lambda mp: mp.setattr(
        resize_area, "area_weights", _float32_cell(resize_area.area_weights)
    ),
}


@pytest.mark.parametrize("name", sorted(PERTURBATIONS))
def test_a_changed_rule_is_caught(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    PERTURBATIONS[name](monkeypatch)
    rng = np.random.default_rng(11)
    # 1115 x 256 gradients: float sums close to .5 where order or weight rounding shows.
    images = [page(h, w, rng, kind) for h, w in [(100, 150), (448, 448), (1115, 256), (3, 500)] for kind in (0, 3)]
    worst = list(differences(session(build_model(CLEANING)), images, CLEANING))
    assert max(worst) > 0, f"{name}: still equal to OpenCV on every page"


# ---- speed -----------------------------------------------------------------------------------


def test_speed(cleaning: ort.InferenceSession) -> None:
    """ms per image, graph (onnxruntime, 2 threads) vs cv2.resize; printed with -s."""
    rng = np.random.default_rng(3)
    lines = []
    for height, width in [(100, 150), (300, 400), (1000, 1400), (4000, 3000)]:
        pixels = page(height, width, rng, 2)
        graph_ms = _best_ms(lambda: run(cleaning, pixels))
        opencv_ms = _best_ms(lambda: opencv(pixels, CLEANING))
        lines.append(f"{height}x{width}: graph {graph_ms:.1f} ms, cv2 {opencv_ms:.2f} ms")
        assert graph_ms < 3000
    print("\n" + "\n".join(lines))


def _best_ms(call: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)
