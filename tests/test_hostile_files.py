"""Hostile model files through the real stages: nothing runs, nothing is written, one clear line.

Every input of tests/hostile.py is placed in a scratch project's data/raw/<model>/ beside good
artifacts of an earlier run, and the stage that reads it (`convert`, which loads the file like
fetch's check and validate's reference do) runs as `python -m stages.convert MODEL` in a
subprocess limited to 1 GiB of address space and a timeout. Each must exit 1 with exactly one
`error:` line on stderr that says what was refused, escaped (no control character) and short,
and leave every file of its case folder, inside the project and beside it, byte-identical.
The cases of one family run a few at a time (each still in its own process); a case's files are
made when it runs and deleted once it is refused, so only the running cases are on disk.

The SavedModel whose resource initializer writes a file is made by TensorFlow itself and
proven live first (plain tf.saved_model.load writes the file); then fetch, convert and validate
refuse it before TensorFlow is imported, and the file is never written. The real upstream
saved_model.pb passes the op check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hostile
import pytest
import warm_stages
import yaml
from conftest import REPO, SHARED, copy_project

from stages.core.errors import PipelineError
from stages.core.params import read_params_file

UPSTREAM_PB = SHARED / "reference" / "upstream" / "signature-image-cleaning" / "model" / "saved_model.pb"
GOOD = {
    "data/interim/{model}/converted.onnx": b"good converted.onnx of an earlier run",
    "data/interim/{model}/patched.onnx": b"good patched.onnx of an earlier run",
    "models/{model}/model.onnx": b"good published model.onnx",
    "models/{model}/lineage.json": b'{"good": true}\n',
}
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
WORKERS = max(2, min(4, os.cpu_count() or 2))


def place_case(case_dir: Path, model: str, files: dict[str, bytes]) -> Path:
    """A scratch project with good artifacts and the hostile upstream files of `model`."""
    project = copy_project(case_dir / "project")
    for pattern, data in GOOD.items():
        path = project / pattern.format(model=model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for relative, data in files.items():
        path = project / "data" / "raw" / model / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return project


def run_cases(root: Path, model: str, cases: dict[str, hostile.Hostile], step: str = "convert") -> dict:
    """Run every case in its own limited subprocess, a few at once; {case: (outcome, before, after)}.

    A case's files are made just before its run, and its folder is deleted as soon as the run is
    refused as `check_refusal` expects (a failing case's folder stays for a look): with 63 MB
    checkpoints, only the cases running at once are ever on disk."""
    making = threading.Lock()  # the generators use torch.save and warnings filters: one at a time

    def one(item):
        case, spec = item
        case_dir = root / case
        with making:
            files = spec.made()
        project = place_case(case_dir, model, files)
        del files
        before = hostile.snapshot(case_dir)
        outcome = hostile.stage(project, step, model)
        result = (outcome, before, hostile.snapshot(case_dir))
        try:
            check_refusal(case, result, spec.expect)
        except AssertionError:
            return case, result
        shutil.rmtree(case_dir)
        return case, result

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(pool.map(one, cases.items()))


def check_refusal(case: str, result, expect: str) -> None:
    outcome, before, after = result
    where = f"{case}: stderr was\n{outcome.stderr[-3000:]}"
    assert outcome.code == 1, where
    assert "Traceback" not in outcome.stderr, where
    lines = outcome.error_lines
    assert len(lines) == 1, where
    line = lines[0]
    assert re.search(expect, line), f"{case}: {expect!r} not in {line!r}"
    assert not CONTROL.search(line), f"{case}: raw control characters in {line!r}"
    assert len(line) < 2500, f"{case}: a {len(line)}-character error line"
    assert after == before, f"{case}: files changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"


# ---- Lasagne pickles -----------------------------------------------------------------------

PICKLES = hostile.pickles()


@pytest.fixture(scope="module")
def pickle_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_cases(tmp_path_factory.mktemp("hostile_pickles"), "signet", PICKLES)


@pytest.mark.parametrize("case", list(PICKLES))
def test_hostile_pickle_is_refused(pickle_results, case: str) -> None:
    check_refusal(case, pickle_results[case], PICKLES[case].expect)


# ---- PyTorch checkpoints -------------------------------------------------------------------

CHECKPOINT_CASES = (
    "numpy-preds",
    "numpy-dtype",
    "code-global",
    "global-name-escapes",
    "memo-index",
    "huge-int",
    "complex64",
    "int32",
    "float64",
    "nan",
    "sparse",
    "mixed-keys-state",
    "mixed-keys-top",
    "deep-nesting",
    "no-model-key",
    "compressed-member",
    "duplicate-member",
    "garbage",
)


@pytest.fixture(scope="module")
def checkpoint_cases() -> dict[str, hostile.Hostile]:
    from stages.families.torch_sigver.layers import synthetic_state
    from stages.families.torch_sigver.siamese import SiameseModel

    cases = hostile.checkpoints(synthetic_state(SiameseModel(), 7))
    assert tuple(cases) == CHECKPOINT_CASES
    return cases


@pytest.fixture(scope="module")
def checkpoint_results(tmp_path_factory: pytest.TempPathFactory, checkpoint_cases) -> dict:
    return run_cases(tmp_path_factory.mktemp("hostile_checkpoints"), "siamese", checkpoint_cases)


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_hostile_checkpoint_is_refused(checkpoint_results, checkpoint_cases, case: str) -> None:
    check_refusal(case, checkpoint_results[case], checkpoint_cases[case].expect)
    if "global" in case or "numpy" in case:
        assert "weights_only" not in checkpoint_results[case][0].stderr, "never suggest turning the protection off"


# ---- SavedModel graphs ---------------------------------------------------------------------

SAVEDMODEL_CASES = (
    "write-file",
    "write-file-in-initializer",
    "py-func",
    "print",
    "string-format",
    "read-file",
    "save-in-top-level",
    "op-name-escapes",
    "missing-function",
    "checkpoint-function-called",
    "file-op-in-restore",
    "tf1-style",
    "huge-constant",
    "nested-attributes",
    "garbage",
)


def upstream_graph() -> bytes:
    if not UPSTREAM_PB.exists():
        pytest.skip(f"{UPSTREAM_PB} not available (../shared is beside the project root in CI)")
    return UPSTREAM_PB.read_bytes()


@pytest.fixture(scope="module")
def savedmodel_cases() -> dict[str, hostile.Hostile]:
    cases = hostile.savedmodel_graphs(upstream_graph())
    assert tuple(cases) == SAVEDMODEL_CASES
    return cases


@pytest.fixture(scope="module")
def savedmodel_results(tmp_path_factory: pytest.TempPathFactory, savedmodel_cases) -> dict:
    return run_cases(tmp_path_factory.mktemp("hostile_savedmodels"), "cleaning", savedmodel_cases)


@pytest.mark.parametrize("case", SAVEDMODEL_CASES)
def test_hostile_savedmodel_graph_is_refused(savedmodel_results, savedmodel_cases, case: str) -> None:
    check_refusal(case, savedmodel_results[case], savedmodel_cases[case].expect)


def test_the_real_upstream_graph_passes_the_op_check() -> None:
    from stages.families.keras_cleaning.savedmodel_ops import check_graph

    check_graph(upstream_graph(), "upstream saved_model.pb")


def test_the_minimal_schema_reads_what_tensorflow_reads() -> None:
    """The op check's own protobuf schema sees the same ops and functions as TensorFlow's."""
    pytest.importorskip("tensorflow")
    from tensorflow.core.protobuf import saved_model_pb2

    from stages.families.keras_cleaning import savedmodel_ops

    data = upstream_graph()
    full = saved_model_pb2.SavedModel()
    full.ParseFromString(data)
    mine = savedmodel_ops._CLASSES["SavedModel"]()
    mine.ParseFromString(data)

    def ops(meta) -> set[str]:
        graph = meta.graph_def
        return {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}

    assert ops(mine.meta_graphs[0]) == ops(full.meta_graphs[0])
    names = {f.signature.name for f in full.meta_graphs[0].graph_def.library.function}
    assert savedmodel_ops._object_graph_functions(mine.meta_graphs[0].object_graph_def) <= names
    again = saved_model_pb2.SavedModel()
    again.ParseFromString(mine.SerializeToString())
    assert again == full, "unknown fields are kept: an edited graph keeps everything else"


# ---- A live SavedModel: its resource initializer writes a file when TensorFlow loads it --------


@pytest.fixture(scope="module")
def live_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model folder, marker) made by TensorFlow; the control in the same process proves it live."""
    root = tmp_path_factory.mktemp("live_savedmodel")
    folder, marker = root / "model", root / "WRITTEN_BY_THE_MODEL"
    result = subprocess.run(
        [sys.executable, "-c", hostile.WRITE_FILE_MODEL, str(folder), str(marker)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("live"), "control: plain tf.saved_model.load runs the initializer"
    marker.unlink(missing_ok=True)
    return folder, marker


def test_a_live_savedmodel_is_refused_by_every_entry_point(live_savedmodel, tmp_path: Path) -> None:
    from stages.core.params import model_spec
    from stages.families import keras_cleaning

    folder, marker = live_savedmodel
    raw = tmp_path / "raw"
    (raw / "model").mkdir(parents=True)
    for name in ("saved_model.pb", "variables"):
        source = folder / name
        target = raw / "model" / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.write_bytes(source.read_bytes())
    spec = model_spec("cleaning", REPO / "params.yaml")
    for entry in (
        lambda: keras_cleaning.check_loadable(raw, spec),
        lambda: keras_cleaning.convert(raw, spec, tmp_path / "out.onnx"),
        lambda: keras_cleaning.reference(raw, spec),
    ):
        with pytest.raises(PipelineError, match=r"refused: op 'WriteFile' .* in function '__inference__initializer"):
            entry()
        assert not marker.exists()
    assert not (tmp_path / "out.onnx").exists()


def test_a_live_savedmodel_through_fetch_convert_and_validate(live_savedmodel, tmp_path: Path) -> None:
    """As processes under the memory limit: fetch (url source), convert and validate all refuse it."""
    from fake_servers import FileServer

    folder, marker = live_savedmodel
    files = {
        "model/saved_model.pb": (folder / "saved_model.pb").read_bytes(),
        "model/keras_metadata.pb": b"\x0a\x00",
        "model/variables/variables.data-00000-of-00001": (
            folder / "variables" / "variables.data-00000-of-00001"
        ).read_bytes(),
        "model/variables/variables.index": (folder / "variables" / "variables.index").read_bytes(),
    }
    project = place_case(tmp_path / "case", "cleaning", files)
    with FileServer() as server:
        params = read_params_file(project / "params.yaml")
        urls = {name: server.serve(f"/m/{name}", data) for name, data in files.items()}
        params["models"]["cleaning"]["source"].update(kind="url", urls=urls)
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        before = hostile.snapshot(tmp_path / "case")
        fetched = hostile.stage(
            project, "fetch", "cleaning", env={"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        )
    check_refusal("fetch", (fetched, before, hostile.snapshot(tmp_path / "case")), r"refused: op 'WriteFile'")
    assert not (project / "sources.lock.yaml").exists(), "a refused file is never pinned"
    for step in ("convert", "validate"):
        before = hostile.snapshot(tmp_path / "case")
        outcome = hostile.stage(project, step, "cleaning")
        check_refusal(step, (outcome, before, hostile.snapshot(tmp_path / "case")), r"refused: op 'WriteFile'")
    assert not marker.exists()


def test_the_harness_catches_a_run_over_the_memory_limit(tmp_path: Path):
    """The limits every hostile run is held to: 1.2 GiB touched fails the caller; 2.5 GiB cannot
    even be mapped; 200 MiB passes."""
    import sys

    from hostile import run_limited

    touch = "import sys; block = bytearray(int(sys.argv[1]) << 20); block[::4096] = b'x' * len(block[::4096])"
    assert run_limited([sys.executable, "-c", touch, "200"], tmp_path).code == 0
    with pytest.raises(AssertionError, match="over the 1024 MiB limit"):
        run_limited([sys.executable, "-c", touch, "1200"], tmp_path)
    assert run_limited([sys.executable, "-c", touch, "2560"], tmp_path).code != 0  # MemoryError under the cap


@pytest.mark.parametrize("preload", [warm_stages.BASE_PRELOAD, warm_stages.TORCH_PRELOAD])
def test_a_warm_stage_run_is_held_to_the_same_limits_and_runs_the_projects_code(tmp_path: Path, preload):
    """`hostile.stage` forks its runs from a warm interpreter (tests/warm_stages.py): the memory
    and address-space limits, the timeout, the exit code and both output streams hold there as in
    a new process, and the module run is the one in the project folder, not one already loaded."""
    project = tmp_path / "project"
    (project / "scratch").mkdir(parents=True)
    (project / "scratch" / "__init__.py").write_text("")
    (project / "scratch" / "touch_memory.py").write_text(
        "import sys, time\n"
        "print('out', sys.argv[1:]); print('error: named', file=sys.stderr)\n"
        "if sys.argv[1] == 'sleep':\n    time.sleep(60)\n"
        "block = bytearray(int(sys.argv[1]) << 20); block[::4096] = b'x' * len(block[::4096])\n"
        "sys.exit(3)\n"
    )
    env = hostile.limited_env({"PYTHONPATH": str(project)})

    def run(argument: str, timeout: float = 60):
        result = warm_stages.run(
            project, "scratch.touch_memory", [argument], env, preload, hostile.ADDRESS_SPACE_LIMIT, timeout
        )
        assert result is not None
        return result

    small = run("200")
    assert (small.code, small.stdout, small.stderr) == (3, "out ['200']\n", "error: named\n")
    assert 200 << 20 < small.peak < hostile.MEMORY_LIMIT
    with pytest.raises(AssertionError, match="over the 1024 MiB limit"):
        big = run("1200")
        hostile.held_to_limits("touch 1200", big.peak, big.timed_out, 60, big.stderr)
    mapped = run("2560")  # MemoryError under the address-space cap
    assert mapped.code == 1 and "MemoryError" in mapped.stderr
    slow = run("sleep", timeout=1)
    assert slow.timed_out and slow.code == -9
