"""Deterministic signature-like validation images drawn by the project itself.

Plain noise would exercise a network far from where it is used, so the validation inputs are
pen strokes (smooth cursive-like curves of varying width) on a paper-like background; the
cleaning model also gets the clutter it is meant to remove: ruled lines, printed text and ink
stamps. Everything is drawn from a seeded numpy Generator with OpenCV's integer rasteriser, so
the same seed gives the same pixels on every machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from stages.core import random_draws as draws

Color = tuple[int, int, int]


def paper(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An off-white sheet with slow shading and grain.

    Returns uint8 (height, width, 3) RGB, values about 200..255.
    """
    base = rng.uniform(225, 250)
    tint = rng.uniform(-6, 6, size=3)
    rows = np.linspace(0, 1, height)[:, None]
    cols = np.linspace(0, 1, width)[None, :]
    shading = 8 * np.sin(2 * np.pi * (rows * rng.uniform(0.3, 1.2) + cols * rng.uniform(0.3, 1.2)))
    grain = rng.normal(0, 3, size=(height, width))
    gray = base + shading + grain
    sheet = np.clip(gray[..., None] + tint[None, None, :], 0, 255)
    return sheet.round().astype(np.uint8)


def _stroke_points(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One cursive-looking stroke: a left-to-right sweep with loops. int32 (n, 1, 2) x, y points."""
    n = 400
    t = np.linspace(0, 1, n)
    x0, x1 = rng.uniform(0.08, 0.3) * width, rng.uniform(0.6, 0.92) * width
    y_mid = rng.uniform(0.35, 0.65) * height
    loops = rng.uniform(4, 10)
    loop_size = rng.uniform(0.03, 0.08) * min(height, width) * 2
    x = x0 + (x1 - x0) * t + loop_size * 0.6 * np.sin(2 * np.pi * loops * t + rng.uniform(0, 6))
    y = y_mid + loop_size * np.cos(2 * np.pi * loops * t) + 0.1 * height * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t)
    points = np.stack([x, y], axis=1).round().astype(np.int32)
    return points.reshape(-1, 1, 2)


def draw_signature(rng: np.random.Generator, sheet: np.ndarray, ink: Color = (20, 25, 60)) -> np.ndarray:
    """Draw 2-4 strokes and a flourish underline in `ink` on a copy of `sheet` (uint8 H x W x 3)."""
    canvas = sheet.copy()
    height, width = canvas.shape[:2]
    pen = max(1, int(round(min(height, width) / 120)))
    for _ in range(int(rng.integers(2, 5))):
        points = _stroke_points(rng, height, width)
        cv2.polylines(canvas, [points], False, ink, int(pen + rng.integers(0, 2)), cv2.LINE_AA)
    y = int(rng.uniform(0.7, 0.85) * height)
    x0, x1 = int(0.15 * width), int(rng.uniform(0.6, 0.9) * width)
    cv2.line(canvas, (x0, y), (x1, y - int(rng.integers(0, height // 10 + 1))), ink, pen, cv2.LINE_AA)
    return canvas


def draw_clutter(rng: np.random.Generator, sheet: np.ndarray) -> np.ndarray:
    """Add what a cleaning model removes: ruled lines, printed text, a round ink stamp."""
    canvas = sheet.copy()
    height, width = canvas.shape[:2]
    spacing = int(rng.integers(max(8, height // 12), max(9, height // 6)))
    for y in range(int(rng.integers(0, spacing)), height, spacing):
        cv2.line(canvas, (0, y), (width - 1, y), (150, 170, 210), 1, cv2.LINE_AA)
    scale = max(height, width) / 600
    words = ["Signature", "Date:", "Approved", "Name", "Page 1 of 2"]
    for _ in range(int(rng.integers(1, 3))):
        text = words[int(rng.integers(0, len(words)))]
        origin = (int(rng.uniform(0, 0.6) * width), int(rng.uniform(0.1, 0.95) * height))
        cv2.putText(
            canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (40, 40, 40), max(1, int(scale * 2)), cv2.LINE_AA
        )
    center = (int(rng.uniform(0.2, 0.8) * width), int(rng.uniform(0.2, 0.8) * height))
    radius = int(rng.uniform(0.1, 0.2) * min(height, width))
    stamp: Color = (200, 40, 50) if rng.random() < 0.5 else (40, 60, 190)
    cv2.circle(canvas, center, radius, stamp, max(1, radius // 12), cv2.LINE_AA)
    cv2.circle(canvas, center, int(radius * 0.75), stamp, max(1, radius // 20), cv2.LINE_AA)
    cv2.putText(
        canvas,
        "PAID",
        (center[0] - radius // 2, center[1] + radius // 6),
        cv2.FONT_HERSHEY_DUPLEX,
        radius / 60,
        stamp,
        max(1, radius // 15),
        cv2.LINE_AA,
    )
    return canvas


def signature_rgb(seed: int, height: int, width: int, clutter: bool) -> np.ndarray:
    """A whole synthetic page: uint8 (height, width, 3) RGB, 0..255; same seed, same pixels."""
    rng = draws.generator(seed)
    sheet = paper(rng, height, width)
    if clutter:
        sheet = draw_clutter(rng, sheet)
    return draw_signature(rng, sheet)


def signature_gray(seed: int, height: int, width: int) -> np.ndarray:
    """A synthetic scanned signature in gray levels: float32 (height, width), 0..255, ink dark.

    Uses the same luminance as `preprocess.load_signature` (0.299 R + 0.587 G + 0.114 B).
    """
    rgb = signature_rgb(seed, height, width, clutter=False).astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def stroke_samples(
    seed: int, count: int, size: tuple[int, int], input_name: str, to_input: Callable[[np.ndarray], np.ndarray]
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """`count` network-space stroke images (`calibration.signature_field_images`, another seed
    than the stand-ins were calibrated with), each through `to_input(uint8 (H, W), ink bright)`."""
    from stages.core.calibration import signature_field_images

    images = signature_field_images(seed * 1000 + 500, count, [size])
    return [
        (f"strokes_{size[0]}x{size[1]}_{index:03d}", {input_name: to_input(image)})
        for index, image in enumerate(images)
    ]


def batched_signature_samples(
    seed: int,
    count: int,
    input_name: str,
    prepare: Callable[[np.ndarray, str | None], np.ndarray],
    image_paths: Sequence[Path],
    strokes: Sequence[tuple[str, dict[str, np.ndarray]]],
    load: Callable[[Path], np.ndarray],
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Validation samples for a fixed-size SigNet: drawn scans, the user's images, strokes, then one batch.

    `prepare(gray, source)` turns a gray scan (float32 0..255, ink dark) into one network input
    of shape (1, ...); `strokes` are ready samples (`stroke_samples`); the last sample stacks
    every input, so a dynamic batch axis is exercised. `load(path)` reads a user's image as the
    model's preprocessing style does.
    """
    samples = []
    for index in range(count):
        gray = signature_gray(seed * 1000 + index, 240 + 37 * index, 480 + 71 * index)
        samples.append((f"synthetic_{index:03d}", {input_name: prepare(gray, None)}))
    for path in image_paths:
        samples.append((path.name, {input_name: prepare(load(path), str(path))}))
    samples.extend(strokes)
    batch = np.concatenate([inputs[input_name] for _sample, inputs in samples])
    samples.append((f"batch_of_{len(batch)}", {input_name: batch}))
    return samples


def drawn_page(seed: int, height: int, width: int, clutter: bool) -> np.ndarray:
    """A signature on paper, uint8 RGB (height, width, 3), with integer arithmetic only.

    Paper: 236 +- 4 grain and a tint; 2-3 strokes as random walks drawn anti-aliased by OpenCV
    (fixed-point); with `clutter`, ruled lines, printed text and a stamp (what cleaning removes).
    """
    rng = draws.generator(seed)
    grain = rng.integers(-4, 5, size=(height, width, 1))
    tint = rng.integers(-5, 6, size=3)
    page = np.clip(236 + grain + tint, 0, 255).astype(np.uint8)
    pen = max(1, min(height, width) // 60)
    if clutter:
        for y in range(int(rng.integers(4, 20)), height, max(8, height // 8)):
            cv2.line(page, (0, y), (width - 1, y), (150, 170, 210), 1, cv2.LINE_AA)
        cv2.putText(
            page, "Signature", (width // 10, height // 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (40, 40, 40), 1, cv2.LINE_AA
        )
        center = (int(rng.integers(width // 4, 3 * width // 4)), int(rng.integers(height // 4, 3 * height // 4)))
        cv2.circle(page, center, min(height, width) // 6, (200, 40, 50), 2, cv2.LINE_AA)
    for _ in range(int(rng.integers(2, 4))):
        steps = 48
        xs = np.int64(width // 8) + np.arange(steps) * (width * 3 // 4) // steps
        ys = height // 2 + np.cumsum(rng.integers(-max(2, height // 25), max(2, height // 25) + 1, size=steps))
        points = np.stack([xs, np.clip(ys, pen, height - 1 - pen)], axis=1).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(page, [points], False, (20, 25, 60), pen, cv2.LINE_AA)
    return page


def page_gray(page: np.ndarray) -> np.ndarray:
    """uint8 gray of a uint8 RGB page: OpenCV's fixed-point ITU-R 601 conversion (bit-exact)."""
    return cv2.cvtColor(page, cv2.COLOR_RGB2GRAY)
