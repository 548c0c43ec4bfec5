"""Shared fixtures: a scratch project where the real stages run as `python -m stages.<step>`.

The repo's own data/ and models/ are never touched by tests: each scratch project holds a copy
of params.yaml and the stages package, and the stages write relative to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import warm_stages

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STEPS = ("fetch", "convert", "validate")  # the stages up to the published model.onnx

# Two test processes share the cores (two in CI), so numpy's OpenBLAS gets one thread in each test
# process and in every process a test starts: its idle threads spin, so a second thread takes CPU
# from the other test process and saves no time (measured in docs/testing.md). Set in the
# first process of the run, before any imports numpy; xdist's workers inherit it. The shared build
# runs in the environment the suite was started with (`user_environment`), as a user's `dvc repro`.
BLAS_THREADS = "OPENBLAS_NUM_THREADS"
USER_BLAS_THREADS = f"TESTS_USER_{BLAS_THREADS}"  # the user's value ("" when unset)
if USER_BLAS_THREADS not in os.environ:
    os.environ[USER_BLAS_THREADS] = os.environ.get(BLAS_THREADS, "")
    os.environ.setdefault(BLAS_THREADS, "1")


def user_environment() -> dict[str, str]:
    """os.environ as the suite was started: without the suite's choice of one OpenBLAS thread."""
    env = {key: value for key, value in os.environ.items() if key not in (BLAS_THREADS, USER_BLAS_THREADS)}
    if os.environ[USER_BLAS_THREADS]:
        env[BLAS_THREADS] = os.environ[USER_BLAS_THREADS]
    return env


def copy_project(target: Path) -> Path:
    """Copy what the stages need (params.yaml, stages/, signature_onnx/) into `target` and return it."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "params.yaml", target / "params.yaml")
    for package in ("stages", "signature_onnx"):  # the stages use the package's preprocessing
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


# oneDNN (TensorFlow) and ATen (PyTorch) restricted to AVX2, OpenBLAS (NumPy) to Haswell kernels
# on one thread: the kernels an older CPU gets.
CAPPED_KERNELS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
}
# A rebuild on capped kernels with a hash seed of its own, compared with the shared build (this
# CPU's own kernels on every thread, random hash seeds): equal bytes prove at once that a second
# build in another process is byte identical and that the kernels do not matter.
CAPPED_REBUILD = {**CAPPED_KERNELS, "PYTHONHASHSEED": "4242"}


def run_step(
    project: Path, step: str, model: str, *extra: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run one stage in `project` exactly as dvc.yaml does, forked from a warm interpreter
    (tests/warm_stages.py); with `env` added to the environment (e.g. CAPPED_REBUILD), as a new
    process. Return the completed process."""
    command = [sys.executable, "-m", f"stages.{step}", model, *extra]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(project)}
    warm = None
    if not env:  # a run with its own environment starts a fresh process (below)
        warm = warm_stages.run(project, command[2], command[3:], full_env, warm_stages.preload_for(project, model))
    if warm is not None:
        result = subprocess.CompletedProcess(command, warm.code, warm.stdout, warm.stderr)
    else:
        result = subprocess.run(command, cwd=project, env=full_env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"stages.{step} {model} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session", autouse=True)
def no_dvc_analytics():
    """Scratch projects made by `dvc init` would start DVC's analytics daemon (the repository's
    .dvc/config turns it off, theirs do not); it leaves a report file in /tmp for each command."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DVC_NO_ANALYTICS", "1")
        yield


def link_tree(source: Path, target: Path) -> None:
    """`source`'s files hard-linked under `target`: the shared build's multi-GB outputs are on disk
    once. Safe because the stages replace an output (write then rename) rather than write into it;
    a test that changes a file works on a private copy (`shutil.copytree(...,
    copy_function=shutil.copyfile)`: linked files are the DVC cache's read-only ones)."""
    shutil.copytree(source, target, dirs_exist_ok=True, copy_function=os.link)


def link_outputs(
    build: Path, project: Path, model: str, parts: tuple[str, ...] = ("data/raw", "data/interim", "models", "reports")
) -> None:
    """Put `model`'s stage outputs from the shared build into a scratch project (`link_tree`)."""
    for part in parts:
        source = build / part / model
        if source.exists():
            link_tree(source, project / part / model)


@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory, reproduced) -> Path:
    """A scratch project holding every stage's outputs for the two Kaggle models, linked from the
    session's one build (`reproduced`) rather than built again."""
    build = built_clone(reproduced)
    project = copy_project(tmp_path_factory.mktemp("built"))
    for model in ("cleaning", "siamese"):
        link_outputs(build, project, model)
    return project


SIGNET_LASAGNE = ["signet", "signet_f_lambda0_95", "signet_f_lambda0_999", "signet_spp_300dpi", "signet_spp_600dpi"]
SIGNET_PTH = ["signet_pth", "signet_f_lambda0_95_pth"]
SIGNET_MODELS = SIGNET_LASAGNE + SIGNET_PTH
SIGNET_SPP = {"signet_spp_300dpi", "signet_spp_600dpi"}
SIGNET_PUBLISHED = ["signet", "signet_spp_300dpi", "signet_pth"]  # validate stage run in the fixture


@pytest.fixture(scope="session")
def signet_project(tmp_path_factory: pytest.TempPathFactory, reproduced) -> Path:
    """A scratch project with the fetch and convert outputs of the seven SigNet models, and
    the published folders of one of each kind (SigNet, SigNet-SPP, .pth), linked from the
    session's one build (`reproduced`)."""
    build = built_clone(reproduced)
    project = copy_project(tmp_path_factory.mktemp("signet"))
    for model in SIGNET_MODELS:
        link_outputs(build, project, model, ("data/raw", "data/interim"))
    for model in SIGNET_PUBLISHED:
        link_outputs(build, project, model, ("models", "reports"))
    return project


@pytest.fixture(scope="session")
def published_project(built_project: Path, signet_project: Path) -> Path:
    """built_project (cleaning, siamese) plus signet_project's published SigNet models (one of each
    preprocessing style and input kind), linked rather than rebuilt: the package's tests."""
    for model in SIGNET_PUBLISHED:
        for part in (f"data/raw/{model}", f"data/interim/{model}", f"models/{model}", f"reports/{model}"):
            link_tree(signet_project / part, built_project / part)
    return built_project


@pytest.fixture
def server():
    """A local HTTP file server (tests/fake_servers.FileServer) for one test."""
    from fake_servers import FileServer

    with FileServer() as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    """Collects the delays a RetryPolicy would have slept (its `sleep=sleeps.append`)."""
    return []


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh scratch project with nothing built."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def step_runner() -> Callable[..., subprocess.CompletedProcess]:
    return run_step


def ort_session(model: bytes | Path, threads: int | None = None, *, quiet: bool = False, optimization=None):
    """An ONNX Runtime CPU session for a test, its idle worker threads not spinning between runs: two
    test processes share the cores, and spinning threads take CPU from the other one (docs/testing.md).

    threads: intra-op threads (None: ORT's default); quiet: no ORT log lines (tests that expect a
    node to fail); optimization: a `GraphOptimizationLevel` (None: ORT's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if quiet:
        options.log_severity_level = 4
    if optimization is not None:
        options.graph_optimization_level = optimization
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def shared_fixture(*parts: str) -> Path:
    """A path under ../shared/fixtures, or skip when that folder is not beside the repo."""
    path = SHARED.joinpath("fixtures", *parts)
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is beside the project root in CI)")
    return path


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def fresh_clone(target: Path) -> Path:
    """A new repository holding the files git tracks here, as they are in the work tree."""
    target.mkdir(parents=True)
    for relative in git(REPO, "ls-files", "-z").split("\0"):
        if relative and (REPO / relative).exists():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target / relative)
    git(target, "init", "-q")
    git(target, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "add", "-A")
    git(target, "-c", "user.email=ci@example.com", "-c", "user.name=ci", "commit", "-qm", "clone")
    return target


def dvc(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True, env=env)


IMPORT_TRACER = REPO / "tests" / "import_trace"


# Fixtures that stand on the session's one build: a test using any of them waits for it.
BUILD_FIXTURES = frozenset({"reproduced", "built_project", "signet_project", "published_project"})
BUILD_HOURS = 1  # a build still running after this is a failure, not a wait


def uses_build(item: pytest.Item) -> bool:
    return bool(BUILD_FIXTURES & set(getattr(item, "fixturenames", ())))


# Local work: `REUSE_BUILD=DIR` keeps the shared build in DIR: the first run builds there, later
# runs use it instead of building again (refused once the files the build depends on change).
REUSE_BUILD = "REUSE_BUILD"
BUILD_INPUTS = ("params.yaml", "dvc.yaml", "dvc.lock", "sources.lock.yaml", ".dvcignore", "stages", "signature_onnx")


def shared_build_root(config: pytest.Config) -> Path:
    """Where the session's one build lives: in the run's temporary folder, beside the xdist workers'
    own (`popen-gwN`), so every worker of one run finds the same build; or `REUSE_BUILD`."""
    if os.environ.get(REUSE_BUILD):
        return Path(os.environ[REUSE_BUILD]).resolve()
    base = config._tmp_path_factory.getbasetemp()  # what the tmp_path_factory fixture returns
    return (base.parent if hasattr(config, "workerinput") else base) / "shared-build"


def stale_build_inputs(clone: Path) -> list[str]:
    """The tracked files the build depends on that differ between this work tree and `clone`."""
    stale = []
    for relative in git(REPO, "ls-files", "-z", "--", *BUILD_INPUTS).split("\0"):
        if relative and ((REPO / relative).read_bytes() if (REPO / relative).exists() else None) != (
            (clone / relative).read_bytes() if (clone / relative).exists() else None
        ):
            stale.append(relative)
    return stale


def start_shared_build(root: Path) -> None:
    """Start, once per run, `dvc repro` of every model in a fresh clone under `root`, in the
    background (its own process group, `root/pid`): tests that do not need it run meanwhile. The
    first caller (of any xdist worker) starts it; `root/done` gets its exit code when it ends
    (a failure to start it writes 99 and the reason to `root/stderr`, so no test waits in vain).

    Every stage process runs under the import tracer (tests/import_trace), which writes the
    modules it loaded to `traced_imports(clone)` and changes nothing else. The clone links its
    outputs to its DVC cache (cache.type hardlink, in its local config): the build is on disk once."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(root / "started", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    try:
        clone = fresh_clone(root / "clone")
        (root / "imports").mkdir()
        linked = dvc(clone, "config", "--local", "cache.type", "hardlink")
        if linked.returncode != 0:
            raise RuntimeError(f"dvc config cache.type hardlink failed: {linked.stderr}")
        env = {**user_environment(), "PYTHONPATH": str(IMPORT_TRACER), "STAGE_IMPORT_TRACE": str(root / "imports")}
        script = "dvc repro > ../stdout 2> ../stderr; echo $? > ../done.tmp && mv ../done.tmp ../done"
        build = subprocess.Popen(
            ["bash", "-c", script], cwd=clone, env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        (root / "pid").write_text(str(build.pid))
    except BaseException as exc:
        (root / "stdout").write_text("")
        (root / "stderr").write_text(f"the shared build could not start: {exc!r}\n")
        (root / "done").write_text("99")  # every test that needs it fails, saying why


def stop_shared_build(root: Path) -> None:
    """Stop the shared build if it still runs (an interrupted run, or one that ended early)."""
    if (root / "pid").exists() and not (root / "done").exists():
        try:
            os.killpg(int((root / "pid").read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass


# Modules whose tests need no shared build yet run whole pipelines or many memory-limited processes.
NOT_QUICK = frozenset(
    {
        "test_verify.py",
        "test_hostile_files.py",
        "test_network_variants.py",  # whole pipelines, memory-limited runs
        "test_signet_pickle.py",
        "test_signet_spp.py",
        "test_sources_fetch.py",  # stand-ins rebuilt, 2000x3000 oracles
        "test_generate_dvc_yaml.py",  # its last test builds one added model (its file-only tests are marked quick)
    }
)


# Modules whose module-scoped fixtures cost many seconds (a scratch build, a rebuilt variant set,
# npm's onnxruntime-node, dozens of hostile files run through a stage): each stays on one test
# process, else both processes build the same fixture (measured: test_verify's two builds set up
# twice, 50 s each). Each is a group of its own, so two of them still run side by side.
ONE_PROCESS_MODULES = (
    "test_distribution.py",  # its remotes (moto S3, a folder), each filled once
    "test_verify.py",
    "test_variants.py",
    "test_vectors.py",
    "test_hostile_files.py",
    "test_signet_family.py",
    "test_signet_spp.py",
    "test_signet_pickle.py",
    "test_network_variants.py",
    "test_package_models.py",
    "test_package_hostile.py",
    "test_registry.py",
)
# pytest-xdist groups (`--dist loadgroup` runs a group on one process): the modules above, and
# modules that must not run at the same time as each other: kagglesdk's fake API is always on
# port 7777, and DVC commands run inside the shared build's clone take its repository lock
# (test_distribution works in clones of it, each with its own lock).
XDIST_GROUPS = {
    "kaggle-port-7777": (
        "test_sources_kaggle.py",
        "test_sources_fetch.py",
        "test_sources_e2e.py",
        "test_hostile_sources.py",
    ),
    "shared-build-clone": ("test_end_to_end.py", "test_plots_render.py"),
    **{module.removesuffix(".py"): (module,) for module in ONE_PROCESS_MODULES},
}


def pytest_itemcollected(item: pytest.Item) -> None:
    """`pytest -m quick`: every test that needs no build, is not in a NOT_QUICK module and is not
    marked `slow` (under two minutes on two cores; for local work; the whole suite before a
    commit). Marked as collected, before `-m` deselects. Also each test's XDIST_GROUPS group."""
    if not uses_build(item) and item.path.name not in NOT_QUICK and item.get_closest_marker("slow") is None:
        item.add_marker(pytest.mark.quick)
    for group, modules in XDIST_GROUPS.items():
        if item.path.name in modules:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def second_process_waits_for_the_build(request: pytest.FixtureRequest) -> None:
    """With two test processes on two cores, the second (xdist's `gw1`) starts testing once the
    shared build is done: three busy processes on two cores would slow the build every end-to-end
    test waits for, and starve tests that keep time. Without a build running, nothing waits."""
    if getattr(request.config, "workerinput", {}).get("workerid") != "gw1":
        return
    root = shared_build_root(request.config)
    deadline = time.monotonic() + BUILD_HOURS * 3600
    while (root / "started").exists() and not (root / "done").exists() and time.monotonic() < deadline:
        time.sleep(1)


@pytest.hookimpl(trylast=True)  # after `-k`/`-m` deselection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need no build run first (with xdist, on every worker) while the build runs."""
    items.sort(key=uses_build)  # stable: each group keeps the files' order


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the shared build once the selection is final, when a selected test needs it (never
    for --collect-only)."""
    if not session.config.option.collectonly and any(uses_build(item) for item in session.items):
        start_shared_build(shared_build_root(session.config))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The run (serial, or the xdist controller once every worker is done) leaves nothing working."""
    if not hasattr(session.config, "workerinput"):
        stop_shared_build(shared_build_root(session.config))


@pytest.fixture(scope="session")
def reproduced(request: pytest.FixtureRequest) -> Iterator[tuple[Path, subprocess.CompletedProcess]]:
    """A fresh clone after a full `dvc repro` of every model (`start_shared_build`), built once per
    test run: the one build every end-to-end test shares (the scratch projects above link to it).
    Tests that share it must leave it as they found it (git status clean, dvc.lock unchanged):
    tests that change things work in a `git clone` of it that uses its DVC cache, or in a copy;
    at the end every output file must be as built (`output_stamps`)."""
    root = shared_build_root(request.config)
    start_shared_build(root)
    deadline = time.monotonic() + BUILD_HOURS * 3600
    while not (root / "done").exists():
        assert time.monotonic() < deadline, f"the shared build in {root} did not end within {BUILD_HOURS} h"
        time.sleep(1)
    code = int((root / "done").read_text())
    if os.environ.get(REUSE_BUILD) and (stale := stale_build_inputs(root / "clone")):
        pytest.fail(f"{REUSE_BUILD}={root} was built from other files: {', '.join(stale[:5])}; unset it")
    result = subprocess.CompletedProcess(
        ["dvc", "repro"], code, (root / "stdout").read_text(), (root / "stderr").read_text()
    )
    before = output_stamps(root / "clone")
    yield root / "clone", result
    changed = sorted(path for path, stamp in output_stamps(root / "clone").items() if before.get(path, stamp) != stamp)
    assert not changed, f"a test wrote into the shared build's outputs (write to a private copy instead): {changed[:5]}"


def output_stamps(clone: Path) -> dict[str, tuple[int, int, int]]:
    """Inode, size and modification time of every output file of the shared build: the scratch
    projects hard-link them, so a test that wrote into a linked file changed the build's."""
    return {
        str(path): (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        for part in ("data", "models")
        for path in (clone / part).rglob("*")
        if path.is_file() and not path.is_symlink() and (stat := path.stat())
    }


def built_clone(reproduced: tuple[Path, subprocess.CompletedProcess]) -> Path:
    """The shared build's clone, after checking that the build succeeded."""
    clone, build = reproduced
    assert build.returncode == 0, (
        f"dvc repro of the shared build failed:\n{build.stdout[-2000:]}\n{build.stderr[-2000:]}"
    )
    return clone


def traced_imports(clone: Path) -> Path:
    """The folder where the shared build's stage processes recorded their imports."""
    return clone.parent / "imports"
