"""Test vectors in the ONNX model-zoo layout, and checking a model against them.

A model folder holds `test_data_set_N/input_K.pb` and `output_K.pb` (serialized `TensorProto`s,
named after the graph's inputs and outputs, K in graph order) and `test_vectors.json`, which
says the tolerance a runtime must meet: `|actual - expected| <= atol + rtol * |expected|`
element-wise. Any runtime can read them (the project's tests also run them in Node.js).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from signature_onnx.errors import ModelFolderError, SignatureOnnxError, first_line
from signature_onnx.runtime import cpu_session

VECTORS_FILE = "test_vectors.json"
_SET_NAME = re.compile(r"^test_data_set_(\d+)$")
_MAX_TENSOR_BYTES = 512 << 20


def tensor_bytes(array: np.ndarray, name: str) -> bytes:
    """A TensorProto for `array` (its dtype and shape kept), serialized deterministically."""
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array), name).SerializeToString(deterministic=True)


def read_tensor(path: Path) -> tuple[str, np.ndarray]:
    """(name, array) of one `.pb` TensorProto file; a damaged file fails naming it."""
    from google.protobuf.message import DecodeError
    from onnx import TensorProto, numpy_helper

    if path.stat().st_size > _MAX_TENSOR_BYTES:
        raise ModelFolderError(f"{path}: {path.stat().st_size} bytes, larger than any test vector; refused")
    tensor = TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        return tensor.name, numpy_helper.to_array(tensor)
    except (DecodeError, ValueError, TypeError, KeyError) as exc:
        raise ModelFolderError(f"{path}: not a readable ONNX TensorProto ({str(exc)[:200]}); pull the model folder again") from None


def find_test_sets(folder: Path) -> list[Path]:
    """The `test_data_set_N` folders of a model folder, in order of N."""
    sets = [p for p in folder.iterdir() if p.is_dir() and _SET_NAME.match(p.name)]
    return sorted(sets, key=lambda p: int(_SET_NAME.match(p.name).group(1)))  # type: ignore[union-attr]


def _numbered(folder: Path, prefix: str) -> list[Path]:
    files = [p for p in folder.glob(f"{prefix}_*.pb") if re.fullmatch(rf"{prefix}_\d+\.pb", p.name)]
    return sorted(files, key=lambda p: int(p.stem.split("_")[1]))


@dataclass(frozen=True)
class SetResult:
    """One test set: per output, the largest |actual - expected| and whether all elements passed."""

    name: str
    max_abs_error: dict[str, float]
    passed: bool
    failure: str | None


def read_tolerance(folder: Path) -> tuple[float, float]:
    """(atol, rtol) from test_vectors.json."""
    path = folder / VECTORS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        atol, rtol = float(data["tolerance"]["atol"]), float(data["tolerance"]["rtol"])
    except FileNotFoundError:
        raise ModelFolderError(f"{path}: missing; the folder has no test vectors (pull it again, or `dvc repro vectors`)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"{path}: expected JSON with tolerance.atol and tolerance.rtol ({exc})") from None
    if not (atol >= 0 and rtol >= 0):
        raise ModelFolderError(f"{path}: tolerances must be non-negative numbers")
    return atol, rtol


def check_vectors(model_dir: str | os.PathLike[str], *, threads: int | None = None, show_progress: bool = False) -> list[SetResult]:
    """Run every test set of a model folder in ONNX Runtime and compare with its expected outputs."""
    from signature_onnx.progress import progress

    folder = Path(model_dir)
    if folder.suffix == ".onnx":
        folder = folder.parent
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: not a folder; expected a published model folder with test_data_set_N/")
    atol, rtol = read_tolerance(folder)
    sets = find_test_sets(folder)
    if not sets:
        raise ModelFolderError(f"{folder}: no test_data_set_N folders; pull the model folder again")
    session = cpu_session(folder / "model.onnx", str(folder / "model.onnx"), "pull or rebuild it", threads)
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    results = []
    with progress(total=len(sets), desc=f"check-vectors ({folder.name})", unit="set", enabled=show_progress) as bar:
        for test_set in sets:
            inputs = [read_tensor(p) for p in _numbered(test_set, "input")]
            expected = [read_tensor(p) for p in _numbered(test_set, "output")]
            if [n for n, _ in inputs] != input_names or [n for n, _ in expected] != output_names:
                raise ModelFolderError(
                    f"{test_set}: tensors {[n for n, _ in inputs]} -> {[n for n, _ in expected]} do not match "
                    f"the graph's {input_names} -> {output_names}"
                )
            try:
                actual = session.run(output_names, dict(inputs))
            except Exception as exc:  # ORT's own error types
                raise SignatureOnnxError(f"{test_set}: ONNX Runtime failed on the inputs ({first_line(exc, 200)})") from None
            results.append(_compare(test_set.name, expected, actual, atol, rtol))
            bar.update(1)
    return results


def _compare(name: str, expected: list[tuple[str, np.ndarray]], actual: list[np.ndarray], atol: float, rtol: float) -> SetResult:
    errors: dict[str, float] = {}
    failure = None
    for (output, want), got in zip(expected, actual):
        if got.shape != want.shape:
            failure = failure or f"{output}: shape {got.shape}, expected {want.shape}"
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        errors[output] = float(diff.max()) if diff.size else 0.0
        bad = diff > atol + rtol * np.abs(want.astype(np.float64))
        if bad.any() and failure is None:
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            failure = (
                f"{output}, element {index}: {float(got[index]):.8g}, expected {float(want[index]):.8g} "
                f"(|diff| {float(diff[index]):.3g} > atol {atol:g} + rtol {rtol:g} * |expected|)"
            )
    return SetResult(name, errors, failure is None, failure)
