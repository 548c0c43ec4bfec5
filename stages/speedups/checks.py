"""A variant against the fp32 model: accuracy deltas with the variant's tolerances, speed, and the
calibration inputs (integer-only drawings through the model's own preprocessing)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from signature_onnx.runtime import cpu_session
from stages.core.params import ModelSpec, VariantTolerance

Arrays = dict[str, np.ndarray]
SPP_STROKE_SIZE = (150, 220)  # SigNet-SPP calibration strokes: the fixed SigNets' input size


def session(model: bytes, what: str, threads: int | None = None):
    """A CPU session of serialized ONNX bytes (ORT_ENABLE_ALL, as users load models)."""
    return cpu_session(model, what, "rebuild it: dvc repro -f variants", threads)


# ---- validation against the fp32 model ----------------------------------------------------------


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


@dataclass
class VariantCheck:
    """Variant vs fp32 ONNX Runtime outputs, sample by sample: the deltas and the first violation."""

    tolerance: VariantTolerance
    embedding_outputs: list[str]
    decision_output: str | None
    decision_atol: float
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    decisions: int = 0
    agreed: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, sample: str, fp32: Arrays, got: Arrays) -> None:
        for name, ref in fp32.items():
            ref64, got64 = ref.astype(np.float64), got[name].astype(np.float64)
            stats = self.outputs.setdefault(name, {"max_abs_error": 0.0})
            if not np.all(np.isfinite(got64)):
                self._fail(f"output {name!r}, sample {sample!r}: non-finite values")
                continue
            error = float(np.max(np.abs(got64 - ref64)))
            stats["max_abs_error"] = max(stats["max_abs_error"], error)
            if error > self.tolerance.max_abs_error:
                self._fail(
                    f"output {name!r}, sample {sample!r}: max |variant - fp32| {error:.3g} > max_abs_error {self.tolerance.max_abs_error:g}"
                )
            if name == self.decision_output:
                for r, g in zip(ref64.ravel(), got64.ravel()):
                    self.decisions += 1
                    self.agreed += int(np.sign(r) == np.sign(g) or abs(r) <= self.decision_atol)
                continue
            rows = ref64.shape[0] if name in self.embedding_outputs else 1
            a, b = ref64.reshape(rows, -1), got64.reshape(rows, -1)
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cosine = float(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)))
            stats["min_cosine"] = min(stats.get("min_cosine", 1.0), cosine)
            if cosine < self.tolerance.min_cosine:
                self._fail(
                    f"output {name!r}, sample {sample!r}: cosine {cosine:.6f} < min_cosine {self.tolerance.min_cosine:g}"
                )

    def _fail(self, message: str) -> None:
        if len(self.failures) < 3:
            self.failures.append(message)

    def result(self) -> dict:
        summary: dict = {"outputs": {n: {k: _sig(v) for k, v in s.items()} for n, s in self.outputs.items()}}
        cosines = [s["min_cosine"] for s in self.outputs.values() if "min_cosine" in s]
        summary["min_cosine"] = _sig(min(cosines)) if cosines else None
        summary["max_abs_error"] = _sig(max(s["max_abs_error"] for s in self.outputs.values()))
        if self.decision_output:
            agreement = self.agreed / max(self.decisions, 1)
            summary["decision_agreement"] = _sig(agreement)
            wanted = self.tolerance.decision_agreement
            if wanted is not None and agreement < wanted:
                self._fail(
                    f"output {self.decision_output!r}: decision agreement {agreement:.4f} < decision_agreement {wanted:g}"
                )
        return summary


def ms_per_call(run: Callable[[], object], repeat: int) -> float:
    """Median wall-clock ms of `repeat` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def calibration_inputs(spec: ModelSpec, count: int) -> list[Arrays]:
    """Input sets from drawn signatures, integer-only drawing (so the ranges' inputs are the same
    bits on every machine), other seeds than the test vectors' and the validation's:
    - `count` drawn pages (`stages.core.drawings.drawn_page`) through the model's own preprocessing
      (cluttered pages for the cleaning model; pairs for a verifier; varied sizes for SPP);
    - for signature models, `count` more strokes drawn straight at the network's input size
      (`stages.core.calibration.signature_field_images`, ink bright), as the validate stage's
      `stroke_samples`, scaled as the network takes them (uint8, or / input_divisor)."""
    from stages.core.calibration import signature_field_images
    from stages.core.drawings import drawn_page, page_gray

    style = spec.preprocessing.package_form()
    names = [t.name for t in spec.onnx.inputs]
    dtype = spec.onnx.inputs[0].dtype
    seed = spec.source.seed * 100 + 50

    def signature(index: int) -> np.ndarray:
        height, width = 240 + 29 * index, 420 + 53 * index
        if style.spp:  # from the smallest accepted size up
            height, width = style.input_size[0] + 23 * index, style.input_size[1] + 41 * index
        return style.network_input(style.image(page_gray(drawn_page(seed + index, height, width, False))), dtype)

    if style.style == "rgb":
        return [
            {names[0]: style.network_input(style.image(drawn_page(seed + k, *style.input_size, True)), dtype)}
            for k in range(count)
        ]
    size = SPP_STROKE_SIZE if style.spp else tuple(style.input_size)
    strokes = [
        image if dtype == "uint8" else (image.astype(np.float32) / np.float32(style.input_divisor))[None, None]
        for image in signature_field_images(seed * 10 + 7, count, [size])
    ]
    if len(names) == 2:
        pairs = [(signature(2 * k), signature(2 * k + 1)) for k in range(count)] + list(
            zip(strokes, strokes[1:] + strokes[:1])
        )
        return [{names[0]: a, names[1]: b} for a, b in pairs]
    return [{names[0]: signature(k)} for k in range(count)] + [{names[0]: image} for image in strokes]
