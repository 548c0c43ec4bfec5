"""The preprocessing graph against the package's Python preprocessing, on hostile shapes too.

For every page (drawn signatures or pages, the user's images in `validation.image_dirs`, and
the adversarial shapes of `adversarial_pages`), the graph's network input is compared with the
Python one (`Preprocessing.image` of the gray image a file of those pixels loads to): exactly
equal or not, and the largest difference in gray levels; the `valid` flag must be false exactly
where Python refuses the image. End to end, pipeline.onnx's outputs are compared with the
network run on the Python input (cosine per output), on every accepted page up to
END_TO_END_MAX_PIXELS. Figures and targets: `PreprocessFigures`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from signature_onnx.errors import ImageError
from signature_onnx.preprocessing import Preprocessing
from signature_onnx.preprocessing.files import load_rgb
from stages.core.drawings import drawn_page
from stages.core.errors import PipelineError
from stages.core.params import PreprocessGraphSpec, TensorSpec
from stages.preprocess_graph import pixels_name, valid_name

Page = tuple[str, np.ndarray]  # (label, uint8 RGB [H, W, 3])
# End to end, pipeline.onnx runs the preprocessing again: a page above this many pixels is
# compared through preprocess.onnx only (its network input is checked bit for bit there), so
# the composition is proven on the smaller pages without preprocessing the largest twice.
END_TO_END_MAX_PIXELS = 4_000_000
Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def drawn_pages(seed: int, count: int, rgb_style: bool) -> list[Page]:
    """`count` drawn pages (integer arithmetic only, `stages.core.drawings.drawn_page`), sizes varied."""
    return [
        (f"drawn_{index:03d}", drawn_page(seed * 1000 + 700 + index, 240 + 61 * index, 400 + 97 * index, rgb_style))
        for index in range(count)
    ]


def adversarial_pages(pre: Preprocessing, seed: int) -> list[Page]:
    """Shapes a port gets wrong: tiny and huge images, a blank page, one-pixel ink, ink on the
    borders, ink larger than the canvas, low contrast. uint8 RGB, deterministic."""
    white = lambda h, w: np.full((h, w, 3), 255, np.uint8)  # noqa: E731
    dot = white(200, 300)
    dot[100, 150] = 0
    square = white(200, 300)
    square[90:94, 140:146] = 10
    borders = drawn_page(seed * 1000 + 801, 300, 500, False)
    borders[0, :] = borders[-1, :] = borders[:, 0] = borders[:, -1] = 20
    canvas = pre.canvas or pre.input_size
    huge_ink = drawn_page(seed * 1000 + 802, canvas[0] + 150, canvas[1] + 240, False)
    huge_ink[40:-40:37, 30:-30] = 30  # ruled strokes over the whole page: the ink box exceeds the canvas
    faint = drawn_page(seed * 1000 + 803, 260, 420, False)
    faint = np.where(faint < 128, 200, 230).astype(np.uint8)
    gradient = np.repeat(np.linspace(180, 255, 500).astype(np.uint8)[None, :, None], 3, axis=2).repeat(300, axis=0)
    gradient[140:160, 100:400] = 40
    pages = [
        ("blank_page", white(300, 400)),
        ("one_pixel_ink", dot),
        ("tiny_ink_square", square),
        ("ink_on_borders", borders),
        ("ink_larger_than_canvas", huge_ink),
        ("faint_ink", faint),
        ("gradient_paper", gradient),
        ("tiny_1x1", white(1, 1)),
        (
            "tiny_3x3",
            np.array([[[255] * 3, [255] * 3, [255] * 3], [[255] * 3, [0] * 3, [255] * 3], [[255] * 3] * 3], np.uint8),
        ),
        ("thin_3x500", drawn_page(seed * 1000 + 804, 3, 500, False)),
        # a 600 x 800 drawing scaled 4x (drawing 7.7 M pixels of paper grain costs a second)
        (
            "large_2400x3200",
            drawn_page(seed * 1000 + 805, 600, 800, pre.style == "rgb").repeat(4, axis=0).repeat(4, axis=1),
        ),
    ]
    if pre.spp:  # just below and at the smallest accepted size
        min_h, min_w = pre.input_size
        pages.append(("spp_below_minimum", drawn_page(seed * 1000 + 806, min_h - 1, min_w + 20, False)))
        pages.append(("spp_minimum", drawn_page(seed * 1000 + 807, min_h, min_w, False)))
    return pages


def user_pages(paths: Sequence[Path]) -> list[Page]:
    """The user's validation images, decoded to RGB with the package's checks (`load_rgb`)."""
    return [(path.name, load_rgb(path)) for path in paths]


def python_input(pre: Preprocessing, rgb: np.ndarray, dtype: str) -> np.ndarray | None:
    """The package's network input for a file that decodes to `rgb`; None where it refuses it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "larger than the canvas": measured, not shown
            return pre.network_input(pre.image(pre.gray_from_rgb(rgb)), dtype)
    except ImageError:
        return None


@dataclass
class PreprocessFigures:
    """Graph against Python over `images` pages (refused ones included in `valid_agrees` only)."""

    images: int = 0
    exact: int = 0
    compared: int = 0  # pages Python accepts (the exact fraction's denominator)
    max_gray_levels: int = 0
    valid_disagreements: list[str] = field(default_factory=list)
    min_cosine: float = 1.0
    worst: str = ""  # the page with the largest gray-level difference

    @property
    def exact_fraction(self) -> float:
        return self.exact / self.compared if self.compared else 1.0

    def failures(self, targets: PreprocessGraphSpec) -> list[str]:
        problems = []
        if self.valid_disagreements:
            problems.append(
                f"the valid flag disagrees with the Python preprocessing on {', '.join(self.valid_disagreements[:5])}"
            )
        if self.exact_fraction < targets.min_exact_fraction:
            problems.append(
                f"{self.exact}/{self.compared} network inputs exactly equal, below {targets.min_exact_fraction:.0%}"
            )
        if self.max_gray_levels > targets.max_gray_levels:
            problems.append(f"{self.max_gray_levels} gray levels off on {self.worst}, above {targets.max_gray_levels}")
        if self.min_cosine < targets.min_cosine:
            problems.append(f"end-to-end cosine {self.min_cosine:.7f}, below {targets.min_cosine}")
        return problems

    def record(self) -> dict[str, float | int]:
        """Machine-independent figures (integers and their ratio) for the verdict."""
        return {
            "images": self.images,
            "exactly_equal": self.exact,
            "accepted": self.compared,
            "max_gray_levels": self.max_gray_levels,
        }


def gray_levels(graph: np.ndarray, python: np.ndarray, pre: Preprocessing) -> int:
    """Largest |graph - python| in gray levels (a float input divided by `input_divisor` is scaled back)."""
    scale = pre.input_divisor if graph.dtype != np.uint8 else 1
    difference = np.abs(graph.astype(np.float64) - python.astype(np.float64)) * scale
    return int(np.ceil(difference.max() - 1e-6)) if difference.size else 0


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if norms == 0:
        return 1.0 if np.array_equal(a, b) else 0.0
    return float(a @ b / norms)


def compare(
    pre: Preprocessing,
    inputs: Sequence[TensorSpec],
    pages: Sequence[Page],
    preprocess: Run,
    pipeline: Run,
    network: Run,
) -> PreprocessFigures:
    """Run every page through the graphs and the Python path; a verifier gets consecutive pairs."""
    figures = PreprocessFigures()
    groups = [pages[i : i + len(inputs)] for i in range(0, len(pages) - len(inputs) + 1, len(inputs))]
    for group in groups:
        feeds = {pixels_name(spec): rgb for spec, (_label, rgb) in zip(inputs, group)}
        graph = preprocess(feeds)
        python_inputs = {}
        for spec, (label, rgb) in zip(inputs, group):
            figures.images += 1
            expected = python_input(pre, rgb, spec.dtype)
            valid = bool(graph[valid_name(spec)])
            if valid != (expected is not None):
                figures.valid_disagreements.append(f"{label} (graph {'accepts' if valid else 'refuses'} it)")
                continue
            if expected is None:
                continue
            python_inputs[spec.name] = expected
            figures.compared += 1
            actual = graph[spec.name]
            if actual.shape == expected.shape and np.array_equal(actual, expected):
                figures.exact += 1
                continue
            levels = gray_levels(actual, expected, pre) if actual.shape == expected.shape else 256
            if levels > figures.max_gray_levels:
                figures.max_gray_levels, figures.worst = levels, label
        small = all(rgb.shape[0] * rgb.shape[1] <= END_TO_END_MAX_PIXELS for _label, rgb in group)
        if small and len(python_inputs) == len(inputs):  # end to end where Python accepts the whole group
            ends, reference = pipeline(feeds), network(python_inputs)
            for output, expected in reference.items():
                figures.min_cosine = min(figures.min_cosine, cosine(ends[output], expected))
    return figures


def check(figures: PreprocessFigures, targets: PreprocessGraphSpec, where: str) -> None:
    problems = figures.failures(targets)
    if problems:
        raise PipelineError(
            f"{where}: the preprocessing graph drifts from the Python preprocessing: " + "; ".join(problems)
        )
