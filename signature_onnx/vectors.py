"""Test vectors in the ONNX model-zoo layout, and checking a model against them.

A model folder holds `test_data_set_N/input_K.pb` and `output_K.pb` (serialized `TensorProto`s,
named after the graph's inputs and outputs, K in graph order) and `test_vectors.json`, which
says the tolerance a runtime must meet: `|actual - expected| <= atol + rtol * |expected|`
element-wise. Any runtime can read them (the project's tests also run them in Node.js).

`check_vectors` trusts none of it blindly. The tolerance rule: atol and rtol must be finite,
non-negative, no larger than the tolerance the model was validated with (`validation.atol` /
`validation.rtol` of the folder's own lineage.json, which the vectors step copies) and never
above MAX_ATOL / MAX_RTOL (1e-3: about 7x the largest published atol, 1.5e-4; a float32
conversion error beyond it is not rounding); a variant folder (its lineage names a `variant`: fp16 or
int8, checked against its parent's float64 expected outputs) may add MAX_VARIANT_ERROR (100, the
largest `max_abs_error` params accept for a variant). Expected values must be finite (NaN compares false,
so NaN expected values would pass anything) and actual outputs too. Tensors with external data
are refused (they would be resolved against some other folder), every file is read confined to
the folder, and model.onnx is checked against the lineage's sha256 as `from_pretrained` does.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from signature_onnx.errors import ModelFolderError, SignatureOnnxError, first_line, shown
from signature_onnx.folder import (
    MODEL_FILE,
    PIPELINE_FILE,
    checked_model_bytes,
    own_lineage,
    read_confined,
    read_json,
    recorded_graph_sha256,
    recorded_sha256,
    verify_signature,
)
from signature_onnx.runtime import cpu_session

VECTORS_FILE = "test_vectors.json"
# pipeline.onnx's test sets (raw pixels in), in the same layout one folder down
PIPELINE_VECTORS_DIR = "pipeline_test_data"
_SET_NAME = re.compile(r"test_data_set_(\d+)")  # used with fullmatch: no name with a trailing newline
_MAX_TENSOR_BYTES = 512 << 20
MAX_ATOL = 1e-3
MAX_RTOL = 1e-3
MAX_VARIANT_ERROR = 100.0


def tensor_bytes(array: np.ndarray, name: str) -> bytes:
    """A TensorProto for `array` (its dtype and shape kept), serialized deterministically."""
    from onnx import numpy_helper

    data = np.asarray(array)  # np.ascontiguousarray would make a 0-d array (a valid flag) 1-d
    return numpy_helper.from_array(np.ascontiguousarray(data) if data.ndim else data, name).SerializeToString(
        deterministic=True
    )


def read_tensor(path: Path, root: Path | None = None) -> tuple[str, np.ndarray]:
    """(name, array) of one `.pb` TensorProto file inside `root` (default: its folder); a damaged file fails naming it.

    A tensor whose data is external (another file, resolved against whatever folder is current)
    is refused, as are non-numeric tensors.
    """
    from google.protobuf.message import DecodeError
    from onnx import TensorProto, numpy_helper

    data = read_confined(path, root or path.parent, _MAX_TENSOR_BYTES, "a test-vector TensorProto")
    tensor = TensorProto()
    try:
        tensor.ParseFromString(data)
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            raise ModelFolderError(
                f"{shown(path)}: the tensor's data is in an external file; expected its values inside the .pb file"
            )
        array = numpy_helper.to_array(tensor)
    except (DecodeError, ValueError, TypeError, KeyError, MemoryError) as exc:
        raise ModelFolderError(
            f"{shown(path)}: not a readable ONNX TensorProto ({first_line(exc, 200)}); pull the model folder again"
        ) from None
    if array.dtype.kind not in "biuf":
        raise ModelFolderError(f"{shown(path)}: a {array.dtype} tensor; expected numbers")
    return tensor.name, array


def find_test_sets(folder: Path) -> list[Path]:
    """The `test_data_set_N` folders of a model folder, in order of N."""
    sets = [p for p in folder.iterdir() if p.is_dir() and _SET_NAME.fullmatch(p.name)]
    return sorted(sets, key=lambda p: int(_SET_NAME.fullmatch(p.name).group(1)))  # type: ignore[union-attr]


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


def read_tolerance(folder: Path, lineage: Any = None) -> tuple[float, float]:
    """(atol, rtol) from test_vectors.json, checked by the rule in the module docstring.

    lineage: the folder's own lineage record (None: the ceilings only).
    """
    path = folder / VECTORS_FILE
    where = shown(path)
    if not path.exists():
        raise ModelFolderError(
            f"{where}: missing; the folder has no test vectors (pull it again, or `dvc repro vectors`)"
        )
    data = read_json(path, folder)
    try:
        atol, rtol = data["tolerance"]["atol"], data["tolerance"]["rtol"]
    except (KeyError, TypeError):
        raise ModelFolderError(f"{where}: expected JSON with tolerance.atol and tolerance.rtol") from None
    validation = lineage.get("validation") if isinstance(lineage, dict) else None
    variant = isinstance(lineage, dict) and "variant" in lineage
    for key, value, ceiling in (
        ("atol", atol, MAX_ATOL + (MAX_VARIANT_ERROR if variant else 0.0)),
        ("rtol", rtol, MAX_RTOL),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ModelFolderError(f"{where}: tolerance.{key} {shown(repr(value), 40)}; expected a finite number >= 0")
        published = validation.get(key) if isinstance(validation, dict) else None
        if (
            isinstance(published, (int, float))
            and not isinstance(published, bool)
            and math.isfinite(published)
            and published >= 0
        ):
            if value > published:
                raise ModelFolderError(
                    f"{where}: tolerance.{key} {value:g} is larger than the {published:g} the model was validated with "
                    f"(lineage.json validation.{key}); expected at most that"
                )
        if value > ceiling:
            raise ModelFolderError(
                f"{where}: tolerance.{key} {value:g}; expected at most {ceiling:g} (a conversion error, not a different model)"
            )
    return float(atol), float(rtol)


def check_vectors(
    model_dir: str | os.PathLike[str],
    *,
    threads: int | None = None,
    show_progress: bool = False,
    integrity_check: bool = True,
    public_key: str | os.PathLike[str] | None = None,
) -> list[SetResult]:
    """Run every test set of a model folder in ONNX Runtime and compare with its expected outputs.

    integrity_check and public_key: as `ORTSignatureModel.from_pretrained` (model.onnx checked
    against the lineage's sha256; a release signature required).
    """
    from signature_onnx.progress import progress

    folder = Path(model_dir)
    if folder.suffix == ".onnx":
        folder = folder.parent
    if not folder.is_dir():
        raise ModelFolderError(
            f"{shown(folder)}: not a folder; expected a published model folder with test_data_set_N/"
        )
    lineage_path, lineage = own_lineage(folder)
    atol, rtol = read_tolerance(folder, lineage)
    sets = find_test_sets(folder)
    if not sets:
        raise ModelFolderError(f"{shown(folder)}: no test_data_set_N folders; pull the model folder again")
    if public_key is not None:
        verify_signature(folder, Path(public_key))
    onnx_path = folder / MODEL_FILE
    if not onnx_path.is_file():
        raise ModelFolderError(f"{shown(onnx_path)}: no such model file; expected the folder's model.onnx")
    data = checked_model_bytes(onnx_path, lineage_path, recorded_sha256(lineage), integrity_check)
    runs = [("", sets, data, onnx_path, atol, rtol)]
    pipeline_dir = folder / PIPELINE_VECTORS_DIR
    if pipeline_dir.is_dir():  # pipeline.onnx: raw pixels in, checked against the lineage's sha256 too
        pipeline_path = folder / PIPELINE_FILE
        if not pipeline_path.is_file():
            raise ModelFolderError(
                f"{shown(pipeline_path)}: missing, but {shown(pipeline_dir)} holds its test sets; pull the folder again"
            )
        digest = dict(recorded_graph_sha256(lineage)).get(PIPELINE_FILE)
        pipeline_bytes = checked_model_bytes(pipeline_path, lineage_path, digest, integrity_check)
        p_atol, p_rtol = read_tolerance(pipeline_dir, lineage)
        runs.append(
            (f"{PIPELINE_VECTORS_DIR}/", find_test_sets(pipeline_dir), pipeline_bytes, pipeline_path, p_atol, p_rtol)
        )
    results = []
    total = sum(len(run[1]) for run in runs)
    with progress(
        total=total, desc=f"check-vectors ({shown(folder.name, 40)})", unit="set", enabled=show_progress
    ) as bar:
        for prefix, test_sets, model_bytes, path, set_atol, set_rtol in runs:
            session = cpu_session(model_bytes, str(path), "pull or rebuild it", threads)
            for test_set in test_sets:
                results.append(run_set(session, test_set, folder, prefix, set_atol, set_rtol))
                bar.update(1)
    return results


def run_set(session: Any, test_set: Path, folder: Path, prefix: str, atol: float, rtol: float) -> SetResult:
    """One test_data_set_N folder (read confined to `folder`) through `session`, compared with `compare_set`."""
    input_names = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    inputs = [read_tensor(p, folder) for p in _numbered(test_set, "input")]
    expected = [read_tensor(p, folder) for p in _numbered(test_set, "output")]
    if [n for n, _ in inputs] != input_names or [n for n, _ in expected] != output_names:
        raise ModelFolderError(
            f"{shown(test_set)}: tensors {shown([n for n, _ in inputs])} -> {shown([n for n, _ in expected])} do not match "
            f"the graph's {shown(input_names)} -> {shown(output_names)}"
        )
    for (output, want), path in zip(expected, _numbered(test_set, "output")):
        if not np.isfinite(want).all():
            raise ModelFolderError(
                f"{shown(path)}: expected values of {shown(repr(output), 60)} hold NaN or infinity; expected finite numbers"
            )
    try:
        actual = session.run(output_names, dict(inputs))
    except Exception as exc:  # ORT's own error types
        raise SignatureOnnxError(
            f"{shown(test_set)}: ONNX Runtime failed on the inputs ({first_line(exc, 200)})"
        ) from None
    return compare_set(prefix + test_set.name, expected, actual, atol, rtol)


def compare_set(
    name: str, expected: list[tuple[str, np.ndarray]], actual: list[np.ndarray], atol: float, rtol: float
) -> SetResult:
    """One test set against the rule `|actual - expected| <= atol + rtol * |expected|`, element-wise
    (shapes must agree, NaN or infinity fails): the one copy of the rule (the variants step uses it too)."""
    errors: dict[str, float] = {}
    failure = None
    for (output, want), got in zip(expected, actual):
        if got.shape != want.shape:
            failure = failure or f"{shown(repr(output), 60)}: shape {got.shape}, expected {want.shape}"
            continue
        if not np.isfinite(got).all():
            # NaN compares false against any tolerance: without this a NaN output would pass.
            errors[output] = math.inf
            failure = (
                failure or f"{shown(repr(output), 60)}: the model output holds NaN or infinity; expected finite values"
            )
            continue
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        errors[output] = float(diff.max()) if diff.size else 0.0
        bad = diff > atol + rtol * np.abs(want.astype(np.float64))
        if bad.any() and failure is None:
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            failure = (
                f"{shown(output, 60)}, element {index}: {float(got[index]):.8g}, expected {float(want[index]):.8g} "
                f"(|diff| {float(diff[index]):.3g} > atol {atol:g} + rtol {rtol:g} * |expected|)"
            )
    return SetResult(name, errors, failure is None, failure)
