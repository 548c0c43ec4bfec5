"""Generic output validator: ONNX Runtime against a reference, per output and per sample.

An element passes when |onnx - ref| <= atol + rtol * |ref| (numpy.allclose). Embedding outputs
must also keep their direction (cosine similarity) and their distance rankings; a decision
output (a logit) must keep its sign. The first failure is reported precisely: which output,
which sample, which element, both values and how far off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stages.core.errors import PipelineError
from stages.core.params import ValidationSpec


def _sig(value: float) -> float:
    """Three significant digits: metrics must not change with the last bits of a CPU kernel."""
    return float(f"{value:.3g}")


@dataclass
class OutputErrors:
    """Running error statistics of one output over all samples."""

    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    abs_error_sum: float = 0.0
    elements: int = 0
    min_cosine: float = 1.0

    def summary(self) -> dict[str, float]:
        return {
            "max_abs_error": _sig(self.max_abs_error),
            "max_rel_error": _sig(self.max_rel_error),
            "mean_abs_error": _sig(self.abs_error_sum / max(self.elements, 1)),
            "min_cosine": _sig(self.min_cosine),
        }


@dataclass
class Validator:
    """Feed it (sample id, reference outputs, ONNX outputs) one sample at a time with `add` (each
    sample is checked as it comes), then `check_rankings()` (the embeddings' distance rankings over
    all samples); `metrics()` only reads what was measured."""

    spec: ValidationSpec
    reference_name: str
    outputs: dict[str, OutputErrors] = field(default_factory=dict)
    per_sample: list[dict[str, float | str | int]] = field(default_factory=list)
    embeddings: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=dict)
    decisions: int = 0
    decisions_near_zero: int = 0  # reference logits within atol of 0, whose sign may flip legitimately
    # per embedding output: (triples compared, near-tie triples skipped), set by check_rankings()
    rankings: dict[str, tuple[int, int]] = field(default_factory=dict)

    def add(self, sample: str, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> None:
        row: dict[str, float | str | int] = {"sample": len(self.per_sample), "id": sample}
        for name, ref in reference.items():
            got = candidate[name]
            if got.shape != ref.shape or got.dtype != ref.dtype:
                raise PipelineError(
                    f"output {name!r}, sample {sample!r}: ONNX gives {got.dtype}{list(got.shape)}, "
                    f"{self.reference_name} gives {ref.dtype}{list(ref.shape)}"
                )
            self._compare(name, sample, ref.astype(np.float64), got.astype(np.float64), row)
        self.per_sample.append(row)

    def _compare(self, name: str, sample: str, ref: np.ndarray, got: np.ndarray, row: dict) -> None:
        stats = self.outputs.setdefault(name, OutputErrors())
        diff = np.abs(got - ref)
        allowed = self.spec.atol + self.spec.rtol * np.abs(ref)
        for produced, values in ((self.reference_name, ref), ("ONNX Runtime", got)):
            if not np.all(np.isfinite(values)):
                raise PipelineError(f"output {name!r}, sample {sample!r}: {produced} produced non-finite values")
        if np.any(diff > allowed):
            worst = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape)
            raise PipelineError(
                f"output {name!r}, sample {sample!r}, element {tuple(int(i) for i in worst)}: "
                f"ONNX {got[worst]:.7g} vs {self.reference_name} {ref[worst]:.7g}, off by {diff[worst]:.3g} "
                f"(allowed {allowed[worst]:.3g} = atol {self.spec.atol:g} + rtol {self.spec.rtol:g} * |ref|); "
                f"max over the output {diff.max():.3g}"
            )
        relative = diff / np.maximum(np.abs(ref), self.spec.atol)
        stats.max_abs_error = max(stats.max_abs_error, float(diff.max()))
        stats.max_rel_error = max(stats.max_rel_error, float(relative.max()))
        stats.abs_error_sum += float(diff.sum())
        stats.elements += diff.size
        row[f"{name}_max_abs_error"] = _sig(float(diff.max()))
        # The strictest allowance of the sample, drawn as the tolerance line of its plot.
        row[f"{name}_tolerance"] = _sig(float(allowed.min()))
        if name in self.spec.embedding_outputs:
            self._check_embedding(name, sample, ref, got, stats, row)
        if name == self.spec.decision_output:
            self._check_decision(name, sample, ref, got)

    def _check_embedding(
        self, name: str, sample: str, ref: np.ndarray, got: np.ndarray, stats: OutputErrors, row: dict
    ) -> None:
        ref_rows, got_rows = ref.reshape(ref.shape[0], -1), got.reshape(got.shape[0], -1)
        norms = np.linalg.norm(ref_rows, axis=1) * np.linalg.norm(got_rows, axis=1)
        cosine = float(np.min(np.sum(ref_rows * got_rows, axis=1) / np.maximum(norms, 1e-30)))
        stats.min_cosine = min(stats.min_cosine, cosine)
        row[f"{name}_cosine"] = _sig(cosine)
        if cosine < self.spec.min_cosine:
            raise PipelineError(
                f"output {name!r}, sample {sample!r}: cosine similarity {cosine:.7f} to {self.reference_name} "
                f"is below min_cosine {self.spec.min_cosine}"
            )
        refs, gots = self.embeddings.setdefault(name, ([], []))
        refs.extend(ref_rows)
        gots.extend(got_rows)

    def _check_decision(self, name: str, sample: str, ref: np.ndarray, got: np.ndarray) -> None:
        for index, (r, g) in enumerate(zip(ref.ravel(), got.ravel())):
            self.decisions += 1
            # A logit within tolerance of 0 may flip legitimately; it is agreement, not a verdict.
            if abs(r) <= self.spec.atol:
                self.decisions_near_zero += 1
            elif np.sign(r) != np.sign(g):
                raise PipelineError(
                    f"output {name!r}, sample {sample!r}, row {index}: decision flips "
                    f"({self.reference_name} logit {r:.6g}, ONNX {g:.6g})"
                )

    def check_rankings(self) -> None:
        """Every (anchor, a, b) triple of samples must get the same 'a closer than b' verdict from
        both runtimes, per embedding output; triples whose reference distances differ by no more
        than the tolerance (near ties) are skipped. Raises PipelineError on the first output that
        disagrees, with the share of triples that agree."""
        for name in self.spec.embedding_outputs:
            refs, gots = (np.stack(rows) for rows in self.embeddings[name])
            ref_d = np.linalg.norm(refs[:, None] - refs[None], axis=-1)
            got_d = np.linalg.norm(gots[:, None] - gots[None], axis=-1)
            counted = agreed = skipped = 0
            near_tie = 2 * self.spec.atol * np.sqrt(refs.shape[1])
            for anchor in range(len(refs)):
                # every pair (a, b), a < b, of the other samples: itertools.combinations' pairs, as arrays
                others = np.array([i for i in range(len(refs)) if i != anchor], dtype=np.intp)
                first, second = np.triu_indices(len(others), k=1)
                a, b = others[first], others[second]
                gap = ref_d[anchor, a] - ref_d[anchor, b]
                kept = np.abs(gap) > near_tie
                skipped += int(np.count_nonzero(~kept))
                counted += int(np.count_nonzero(kept))
                got_gap = got_d[anchor, a[kept]] - got_d[anchor, b[kept]]
                agreed += int(np.count_nonzero(np.sign(gap[kept]) == np.sign(got_gap)))
            if agreed < counted:
                raise PipelineError(
                    f"output {name!r}: embedding distance rankings agree on only {agreed / counted:.1%} of "
                    f"{counted} triples ({self.reference_name} vs ONNX Runtime)"
                )
            self.rankings[name] = (counted, skipped)

    def metrics(self) -> dict:
        """What was measured: per output the error statistics, for embeddings the cosine and the
        number of ranking triples compared (all agreed: `check_rankings` raises otherwise), for a
        decision output the number of decisions compared (all agreed: `add` raises otherwise)."""
        result: dict = {
            "reference": self.reference_name,
            "samples": len(self.per_sample),
            "tolerance": {"atol": self.spec.atol, "rtol": self.spec.rtol},
            "outputs": {},
        }
        for name, stats in self.outputs.items():
            summary = stats.summary()
            if name not in self.spec.embedding_outputs:
                del summary["min_cosine"]
            result["outputs"][name] = summary
        for name, (counted, skipped) in self.rankings.items():
            result["outputs"][name]["ranking_triples"] = counted
            result["outputs"][name]["ranking_near_ties_skipped"] = skipped
        if self.spec.decision_output:
            result["outputs"][self.spec.decision_output]["decisions"] = self.decisions
            result["outputs"][self.spec.decision_output]["decisions_near_zero"] = self.decisions_near_zero
        return result
