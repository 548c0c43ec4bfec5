"""Weight exactness: every constant of an ONNX graph traced, bit for bit, to the upstream bytes.

Why: a weight computed at build time with floating-point kernels (a Conv + BatchNorm fold done by
an exporter, a converter's constant folding) can round differently on another CPU, and then the
ONNX bytes, and dvc.lock, differ between machines. A constant that is an upstream tensor, or an
exact rearrangement of one, cannot. Tracing also proves the weights that no validation input
reaches numerically: a 2x change of any single weight is an untraceable constant.

Every float constant of the graph (initializers and Constant nodes) must be, bit for bit, one of:
- `copy`: an upstream tensor as stored;
- `reshape`: the same elements in the same order under another shape;
- `transpose`: the upstream tensor with its axes permuted (then possibly reshaped);
- `fold`: an allow-listed exact fold the family declares (`exact_folds`), each a single IEEE 754
  operation per element, which every conforming CPU rounds identically (for example one float32
  multiply, gamma * inv_std, in the Lasagne graphs);
- `literal`: a constant of the family's own code (`GRAPH_LITERALS`, e.g. the 255 that scales
  uint8 input), every element equal to it.
Integer and boolean constants (shapes, axes, indices) are graph structure: integer arithmetic
does not round, so they are accepted as such and counted. Any other number format (complex,
bfloat16, float8) is untraceable: no family builds one.

Matching uses a permutation-invariant fingerprint (sum and XOR of the bit patterns), so a candidate is
found whatever the layout; the transform is then confirmed element by element.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from stages.core.errors import PipelineError

FLOAT_KINDS = "f"  # numpy dtype kinds that carry rounding and are traced
# integers and booleans (shapes, axes, indices) are graph structure; any other kind (complex,
# and bfloat16 / float8, which onnx returns as numpy void) is neither and is refused
STRUCTURE_KINDS = "iub"


@dataclass(frozen=True)
class Trace:
    """How one graph constant derives from the upstream bytes."""

    tensor: str  # the ONNX initializer or Constant output name
    rule: str  # copy | reshape | transpose | fold | literal | structure
    source: str  # the upstream tensor, fold or literal it comes from ("" for structure)


def graph_constants(model: onnx.ModelProto) -> Iterator[tuple[str, np.ndarray]]:
    """(name, array) for every initializer and every tensor-valued Constant node of the graph."""
    for initializer in model.graph.initializer:
        yield initializer.name, numpy_helper.to_array(initializer)
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attribute in node.attribute:
            if attribute.name == "value":
                yield node.output[0], numpy_helper.to_array(attribute.t)
            elif attribute.name in ("value_float", "value_floats"):
                values = [attribute.f] if attribute.name == "value_float" else list(attribute.floats)
                yield node.output[0], np.array(values, dtype=np.float32)
            elif attribute.name in ("value_int", "value_ints"):
                values = [attribute.i] if attribute.name == "value_int" else list(attribute.ints)
                yield node.output[0], np.array(values, dtype=np.int64)
            else:  # sparse_value, strings: nothing a network here uses; refuse rather than guess
                raise PipelineError(
                    f"weight check: Constant {node.output[0]!r} has a {attribute.name} value, not a traceable tensor"
                )


def _fingerprint(array: np.ndarray) -> str:
    """Invariant under any rearrangement of the elements; any one changed element changes it.

    The sum (wrapping at 2**64) and the XOR of the elements' bit patterns: linear time (sorting
    the bits, as a content hash of the multiset needs, cost a second per model). It only groups
    candidates: `_rearrangement` confirms each match element by element, so two different
    tensors that happen to share a fingerprint are told apart there."""
    bits = np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}").ravel()
    total = int(bits.sum(dtype=np.uint64))
    folded = int(np.bitwise_xor.reduce(bits)) if bits.size else 0
    return f"{array.dtype.str}:{array.size}:{total:x}:{folded:x}"


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return (
        a.dtype == b.dtype
        and a.size == b.size
        and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()
    )


def _rearrangement(source: np.ndarray, target: np.ndarray) -> str | None:
    """'copy', 'reshape' or 'transpose' when target is exactly that of source, else None."""
    if _same_bits(source, target):
        return "copy" if source.shape == target.shape else "reshape"
    for order in itertools.permutations(range(source.ndim)):
        if order != tuple(range(source.ndim)) and _same_bits(source.transpose(order), target):
            return "transpose"
    return None


class WeightTracer:
    """Traces graph constants against one model's upstream tensors, folds and literals."""

    def __init__(
        self,
        upstream: Mapping[str, np.ndarray],
        folds: Mapping[str, np.ndarray] | None = None,
        literals: Mapping[float, str] | None = None,
    ):
        self.literals = dict(literals or {})
        self._pool: dict[str, list[tuple[str, str, np.ndarray]]] = {}
        for rule, tensors in (("upstream", upstream), ("fold", folds or {})):
            for name, array in tensors.items():
                array = np.asarray(array)
                if array.dtype.kind in FLOAT_KINDS:
                    self._pool.setdefault(_fingerprint(array), []).append((rule, name, array))

    def trace(self, name: str, array: np.ndarray) -> Trace | None:
        if array.dtype.kind in STRUCTURE_KINDS:
            return Trace(name, "structure", "")
        if array.dtype.kind not in FLOAT_KINDS:
            return None  # complex, bfloat16, float8: a number format nothing here builds
        for rule, source, candidate in self._pool.get(_fingerprint(array), []):
            how = _rearrangement(candidate, array)
            if how is not None:
                return Trace(name, "fold" if rule == "fold" else how, source)
        if array.size and np.all(array == array.flat[0]):
            value = float(array.flat[0])
            if value in self.literals and np.float32(value) == array.flat[0]:
                return Trace(name, "literal", self.literals[value])
        return None

    def trace_model(self, model: onnx.ModelProto, label: str) -> list[Trace]:
        """Trace every constant; raise naming the untraceable ones (the first few, and how many)."""
        traces, untraced = [], []
        for name, array in graph_constants(model):
            found = self.trace(name, array)
            if found is None:
                untraced.append(f"{name} {array.dtype}{list(array.shape)}")
            else:
                traces.append(found)
        if untraced:
            shown = ", ".join(untraced[:3]) + (f" and {len(untraced) - 3} more" if len(untraced) > 3 else "")
            raise PipelineError(
                f"{label}: {len(untraced)} constant(s) are not an upstream tensor, an exact rearrangement or an "
                f"allow-listed exact fold of one: {shown}; a weight was computed or changed at build time"
            )
        return traces


def summary(traces: list[Trace]) -> dict[str, int]:
    """Counts per rule, for validation.json (machine-independent: a pure function of the bytes)."""
    counts = Counter(trace.rule for trace in traces)
    return {"constants": len(traces), **{rule: counts[rule] for rule in sorted(counts)}}
