"""Versioned distribution end to end: build once, push to a remote, get the models elsewhere.

The remotes are an S3-compatible server (moto on 127.0.0.1) and a plain folder. "Another
machine" is a git clone with an empty DVC cache and no credentials but the remote's. Every
consumer must get byte-identical files (DVC checks them against dvc.lock) without running a
stage. The build is the session's shared full `dvc repro` (conftest.reproduced), never changed.

The maintainer pushes one model's whole build (cleaning, the smallest: ~33 MB) and every
model's verdict.json, not the whole build (~2.7 GB): every consumer test gets that model. "Then
everything" is checked in two parts: DVC's (a plain `dvc pull` brings every output of every
stage, from each remote kind) on a small scratch pipeline (`small_pipeline`), and the project's
(every model's build has cleaning's stages, all cached, its published bytes in dvc.lock) on the build.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import dvc, git
from remotes import (
    ACCESS_KEY,
    SECRET_KEY,
    MotoS3,
    Remote,
    add_default_remote,
    checked,
    clone,
    environment,
    release,
    stages_restored,
    stages_run,
)

from stages.core.params import read_params_file
from stages.generate_dvc_yaml import quoted

PUBLISHED = ("model.onnx", "lineage.json", "verdict.json")
# The published folder's stages: with their deps, what `stages.release` checks the remote for.
CLEANING_BUILD = ("validate@cleaning", "derive@cleaning")


@dataclass
class Publication:
    """A repository whose default remote holds cleaning's whole build with its run-cache and every
    model's verdict.json, and what its release said."""

    built: Path
    origin: Path
    remote: Remote
    refused_before_push: subprocess.CompletedProcess
    refused_after_partial_push: subprocess.CompletedProcess
    tags_before_full_push: str
    released: subprocess.CompletedProcess
    push_seconds: float


def publish(built: Path, remote: Remote, origin: Path) -> Publication:
    """The maintainer's flow: commit the remote, try to release, push, release cleaning v1.0.0.

    The full push is cleaning's whole build (CLEANING_BUILD with deps) and the run-cache, then
    every model's verdict.json (the metrics `dvc exp show` and `dvc metrics diff` load at any
    revision; a few hundred bytes each): not the other models' builds."""
    clone(built, origin, share_cache_of=built)
    add_default_remote(origin, remote)
    env = remote.env()
    version = ("cleaning", "--version", "v1.0.0", "--stage", "prod")
    refused = release(origin, *version, env=env)
    checked(dvc(origin, "push", "validate@cleaning", env=env))  # the model's files, not its whole build
    partial = release(origin, *version, env=env)
    tags = git(origin, "tag")
    start = time.perf_counter()
    checked(dvc(origin, "push", "--run-cache", *CLEANING_BUILD, "--with-deps", env=env))
    seconds = time.perf_counter() - start
    models = read_params_file(origin / "params.yaml")["models"]
    checked(dvc(origin, "push", *(f"models/{model}/verdict.json" for model in models), env=env))
    return Publication(built, origin, remote, refused, partial, tags, release(origin, *version, env=env), seconds)


@pytest.fixture(scope="module")
def moto_s3():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["s3", "folder"])
def publication(request, reproduced, tmp_path_factory) -> Publication:
    built, build = reproduced
    assert build.returncode == 0, build.stderr[-2000:]
    if request.param == "s3":
        remote = request.getfixturevalue("moto_s3").remote()
    else:
        remote = Remote("folder", str(tmp_path_factory.mktemp("shared-folder-remote")))
    return publish(built, remote, tmp_path_factory.mktemp(f"origin-{request.param}") / "origin")


def consumer(publication: Publication, target: Path) -> Path:
    """A fresh clone on "another machine": its own empty DVC cache, the remote from .dvc/config."""
    return clone(publication.origin, target)


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def graph_bytes_of(data: bytes) -> bytes:
    """The serialized graph of an ONNX file (without its metadata, doc_string and version)."""
    import onnx

    return onnx.load_from_string(data).graph.SerializeToString(deterministic=True)


def graph_bytes(path: Path) -> bytes:
    return graph_bytes_of(path.read_bytes())


def test_release_refuses_until_the_remote_holds_the_whole_build(publication: Publication):
    before = publication.refused_before_push
    assert before.returncode == 1
    assert before.stderr.count("error:") == 1 and "Traceback" not in before.stderr
    assert "nothing was tagged" in before.stderr
    # One line per cache file (patched.onnx and model.onnx are the same bytes: one file, one name).
    raw = "data/raw/cleaning/model/variables/variables.data-00000-of-00001"
    for path in (
        "models/cleaning/lineage.json",
        "models/cleaning/verdict.json",
        raw,
        "data/interim/cleaning/converted.onnx",
    ):
        assert f"\n  {path}" in before.stderr, path
    # `dvc push validate@cleaning` uploads the model's outputs but not what it was built from.
    partial = publication.refused_after_partial_push
    assert partial.returncode == 1 and f"\n  {raw}" in partial.stderr
    listed = {line.strip() for line in partial.stderr.splitlines()}
    assert "models/cleaning/lineage.json" not in listed and "models/cleaning/model.onnx" not in listed
    assert "models/cleaning/variants/fp16/model.onnx" in listed  # the folder's other stages: not pushed yet
    assert publication.tags_before_full_push == ""
    assert publication.released.returncode == 0, publication.released.stderr
    tags = set(git(publication.origin, "tag").split())
    assert {"cleaning@v1.0.0", "cleaning#prod#1"} <= tags


@pytest.mark.parametrize("publication", ["s3"], indirect=True)
def test_release_refuses_uncommitted_or_stale_registry(publication: Publication, tmp_path: Path):
    """A hand edit of dvc.yaml's generated artifacts block: refused uncommitted, then refused as out of date with params.yaml."""
    maintainer = clone(publication.origin, tmp_path / "maintainer", share_cache_of=publication.built)
    env = publication.remote.env()
    dvc_yaml = maintainer / "dvc.yaml"
    desc = yaml.safe_load(dvc_yaml.read_text())["artifacts"]["siamese"]["desc"]
    written = f"desc: {quoted(desc)}\n"  # as the generator writes it
    assert written in dvc_yaml.read_text()
    dvc_yaml.write_text(dvc_yaml.read_text().replace(written, "desc: edited by hand\n"))
    uncommitted = release(maintainer, "siamese", "--version", "v0.1.0", env=env)
    assert uncommitted.returncode == 1 and "uncommitted changes in dvc.yaml" in uncommitted.stderr
    subprocess.run(["git", "commit", "-qam", "hand-edited registry"], cwd=maintainer, check=True, env=env)
    stale = release(maintainer, "siamese", "--version", "v0.1.0", env=env)
    assert stale.returncode == 1 and stale.stderr.count("error:") == 1
    assert "out of date with params.yaml: artifacts (changed siamese)" in stale.stderr
    assert "run: python -m stages.generate_dvc_yaml" in stale.stderr  # says what to run
    assert git(maintainer, "tag", "-l", "siamese@*") == ""
    unknown = release(maintainer, "no_such_model", "--version", "v0.1.0", env=env)
    assert unknown.returncode == 1 and "no artifact publishes 'no_such_model'" in unknown.stderr


def build_files(root: Path, model: str) -> list[Path]:
    """Every file of `model`'s build under `root` (fetch .. variants outputs), relative to `root`."""
    parts = (f"data/raw/{model}", f"data/interim/{model}", f"models/{model}")
    return sorted(p.relative_to(root) for part in parts for p in (root / part).rglob("*") if p.is_file())


def test_fresh_clone_pulls_one_model_then_its_whole_build_byte_identical(publication: Publication, tmp_path: Path):
    """From each remote kind: one stage's pull brings that model's published files and nothing of
    another model; then its whole build comes, byte-identical, with no stage run and nothing left
    for `dvc status` of its stages and their deps."""
    machine = consumer(publication, tmp_path / "machine")
    env = publication.remote.env()
    checked(dvc(machine, "pull", "validate@cleaning", env=env))
    for file in PUBLISHED:
        assert same_bytes(machine / "models/cleaning" / file, publication.built / "models/cleaning" / file), file
    assert not (machine / "models/siamese/model.onnx").exists()
    pulled = checked(dvc(machine, "pull", *CLEANING_BUILD, "--with-deps", env=env))
    assert stages_run(pulled.stdout) == []
    built = build_files(publication.built, "cleaning")
    assert build_files(machine, "cleaning") == built and len(built) > 30
    for file in built:
        assert same_bytes(machine / file, publication.built / file), file
    # dvc status re-hashes every output of the model's stages and deps against dvc.lock.
    status = checked(dvc(machine, "status", *CLEANING_BUILD, "--with-deps", env=env))
    assert "Data and pipelines are up to date" in status.stdout
    assert git(machine, "status", "--porcelain") == ""


def test_every_models_build_is_what_push_and_pull_carry(reproduced, tmp_path: Path):
    """The project's part of "then everything" (DVC's part: the small pipeline's test below): every
    model's build is made by the same stages as cleaning's (pulled end to end above), every output
    of every stage is cached (so `dvc push` uploads it and `dvc pull` brings it), and dvc.lock
    holds the hash of each model's built published files (what a pull checks them against)."""
    from dvc.repo import Repo

    built, build = reproduced
    assert build.returncode == 0, build.stderr[-2000:]
    project = clone(built, tmp_path / "project")
    with Repo(str(project)) as repo:
        stages = list(repo.index.stages)
    assert [f"{s.name}: {o.def_path}" for s in stages for o in s.outs if not o.use_cache] == []
    models = read_params_file(project / "params.yaml")["models"]
    steps = {model: sorted(s.name.split("@")[0] for s in stages if s.name.endswith(f"@{model}")) for model in models}
    assert "validate" in steps["cleaning"] and all(s.outs for s in stages)
    assert {model: found for model, found in steps.items() if found != steps["cleaning"]} == {}
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    for model in models:
        locked = {out["path"]: out["md5"] for out in lock[f"validate@{model}"]["outs"]}
        for file in PUBLISHED:
            path = f"models/{model}/{file}"
            assert locked[path] == hashlib.md5((built / path).read_bytes()).hexdigest(), path


# A small pipeline: two items through two foreach stages (a folder, then a file and a metric),
# each a pure function of params.yaml.
SMALL_PIPELINE = {
    "params.yaml": "items:\n  a:\n    seed: 1\n  b:\n    seed: 2\n",
    "make.py": (
        "import pathlib, random, sys\n"
        "import yaml\n"
        "key = sys.argv[1]\n"
        "seed = yaml.safe_load(open('params.yaml'))['items'][key]['seed']\n"
        "folder = pathlib.Path('data', key)\n"
        "folder.mkdir(parents=True, exist_ok=True)\n"
        "for part in range(3):\n"
        "    (folder / f'part{part}.bin').write_bytes(random.Random(seed * 10 + part).randbytes(50_000))\n"
    ),
    "publish.py": (
        "import hashlib, json, pathlib, sys\n"
        "key = sys.argv[1]\n"
        "data = b''.join(p.read_bytes() for p in sorted(pathlib.Path('data', key).iterdir()))\n"
        "out = pathlib.Path('out', key)\n"
        "out.mkdir(parents=True, exist_ok=True)\n"
        "(out / 'model.bin').write_bytes(data[::-1])\n"
        "(out / 'verdict.json').write_text(json.dumps({'sha256': hashlib.sha256(data).hexdigest()}))\n"
    ),
    "dvc.yaml": (
        "stages:\n"
        "  make:\n"
        "    foreach: ${items}\n"
        "    do:\n"
        "      cmd: python make.py ${key}\n"
        "      deps:\n"
        "        - make.py\n"
        "      params:\n"
        "        - items.${key}\n"
        "      outs:\n"
        "        - data/${key}\n"
        "  publish:\n"
        "    foreach: ${items}\n"
        "    do:\n"
        "      cmd: python publish.py ${key}\n"
        "      deps:\n"
        "        - publish.py\n"
        "        - data/${key}\n"
        "      outs:\n"
        "        - out/${key}/model.bin\n"
        "      metrics:\n"
        "        - out/${key}/verdict.json\n"
    ),
}


def commit_all(project: Path, message: str) -> None:
    git(project, "add", "-A")
    subprocess.run(["git", "commit", "-qm", message], cwd=project, check=True, env=environment())


def small_pipeline(root: Path, remote: Remote) -> Path:
    """A scratch git repository with SMALL_PIPELINE built (`dvc repro`), committed, and pushed to
    `remote` (its default, committed)."""
    root.mkdir(parents=True)
    for name, text in SMALL_PIPELINE.items():
        (root / name).write_text(text)
    git(root, "init", "-q")
    checked(dvc(root, "init", "-q"))
    commit_all(root, "small pipeline")
    assert sorted(stages_run(checked(dvc(root, "repro")).stdout)) == ["make@a", "make@b", "publish@a", "publish@b"]
    commit_all(root, "built")
    add_default_remote(root, remote)
    checked(dvc(root, "push", env=remote.env()))
    return root


def outputs(root: Path) -> list[Path]:
    """The small pipeline's output files under `root`, relative to it (not DVC's .gitignore files)."""
    found = (p for part in ("data", "out") for p in (root / part).rglob("*") if p.is_file())
    return sorted(p.relative_to(root) for p in found if p.name != ".gitignore")


@pytest.mark.parametrize("kind", ["s3", "folder"])
def test_fresh_clone_pulls_one_stage_then_everything_on_a_small_pipeline(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
):
    """DVC's part of "one model, then everything", from each remote kind: a stage's pull brings its
    outputs and no other item's; a plain `dvc pull` then every output of every stage,
    byte-identical, with no stage run and nothing left for `dvc status`."""
    if kind == "s3":
        remote = request.getfixturevalue("moto_s3").remote(f"small-{tmp_path.name}")
    else:
        remote = Remote("folder", str(tmp_path / "remote"))
    maker = small_pipeline(tmp_path / "maker", remote)
    built = outputs(maker)
    machine = clone(maker, tmp_path / "machine")
    env = remote.env()
    checked(dvc(machine, "pull", "publish@a", env=env))
    assert outputs(machine) == [
        Path("out/a/model.bin"),
        Path("out/a/verdict.json"),
    ]
    pulled = checked(dvc(machine, "pull", env=env))
    assert stages_run(pulled.stdout) == []
    assert outputs(machine) == built and len(built) == 10
    for file in built:
        assert same_bytes(machine / file, maker / file), file
    status = checked(dvc(machine, "status", env=env))
    assert "Data and pipelines are up to date" in status.stdout
    assert git(machine, "status", "--porcelain") == ""


@pytest.mark.parametrize("publication", ["s3"], indirect=True)
def test_artifacts_get_by_version_and_stage_get_and_import(publication: Publication, tmp_path: Path):
    env = publication.remote.env()
    origin, built = str(publication.origin), publication.built
    work = tmp_path / "user"
    work.mkdir()
    checked(dvc(work, "artifacts", "get", origin, "cleaning", "--rev", "v1.0.0", "-o", "by_version", env=env))
    checked(dvc(work, "artifacts", "get", origin, "cleaning", "--stage", "prod", "-o", "by_stage", env=env))
    checked(
        dvc(
            work,
            "get",
            origin,
            "models/cleaning/lineage.json",
            "--rev",
            "cleaning@v1.0.0",
            "-o",
            "lineage.json",
            env=env,
        )
    )
    # The artifact is the whole published folder (validate, vectors and variants outputs).
    published = sorted(
        p.relative_to(built / "models/cleaning") for p in (built / "models/cleaning").rglob("*") if p.is_file()
    )
    for got in (work / "by_version", work / "by_stage"):
        assert sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file()) == published
        assert all(same_bytes(got / file, built / "models/cleaning" / file) for file in published)
    assert same_bytes(work / "lineage.json", built / "models/cleaning/lineage.json")
    unreleased = dvc(work, "artifacts", "get", origin, "cleaning", "--rev", "v9.9.9", "-o", "none", env=env)
    assert unreleased.returncode != 0 and not (work / "none").exists()
    project = tmp_path / "importer"
    project.mkdir()
    git(project, "init", "-q")
    checked(dvc(project, "init", "-q"))
    checked(dvc(project, "import", origin, "models/cleaning/model.onnx", "-o", "cleaning.onnx", env=env))
    assert same_bytes(project / "cleaning.onnx", built / "models/cleaning/model.onnx")
    assert "models/cleaning/model.onnx" in (project / "cleaning.onnx.dvc").read_text()


@pytest.mark.parametrize("publication", ["s3"], indirect=True)
def test_repro_pull_fetches_instead_of_running_stages(publication: Publication, tmp_path: Path):
    machine = consumer(publication, tmp_path / "machine")
    env = publication.remote.env()
    result = checked(dvc(machine, "repro", "--pull", "validate@cleaning", env=env))
    assert stages_run(result.stdout) == [], result.stdout
    for file in PUBLISHED:
        assert same_bytes(machine / "models/cleaning" / file, publication.built / "models/cleaning" / file), file
    status = checked(dvc(machine, "status", "validate@cleaning", "--with-deps", env=env))
    assert "Data and pipelines are up to date" in status.stdout
    assert git(machine, "status", "--porcelain") == ""


@pytest.mark.parametrize("publication", ["s3"], indirect=True)
def test_s3_credentials_from_local_config_or_environment_never_committed(publication: Publication, tmp_path: Path):
    machine = consumer(publication, tmp_path / "machine")
    anonymous = dvc(machine, "pull", "validate@cleaning", env=environment())
    assert anonymous.returncode != 0 and not (machine / "models/cleaning/model.onnx").exists()
    checked(dvc(machine, "remote", "modify", "--local", "storage", "access_key_id", ACCESS_KEY))
    checked(dvc(machine, "remote", "modify", "--local", "storage", "secret_access_key", SECRET_KEY))
    checked(dvc(machine, "pull", "validate@cleaning", env=environment()))
    assert same_bytes(machine / "models/cleaning/model.onnx", publication.built / "models/cleaning/model.onnx")
    assert git(machine, "status", "--porcelain") == ""  # .dvc/config.local is ignored by git
    for repo in (machine, publication.origin):
        assert subprocess.run(["git", "grep", "-q", "-F", "-e", SECRET_KEY], cwd=repo).returncode == 1
        assert (
            subprocess.run(
                ["git", "log", "-p", "--all", "-S", SECRET_KEY, "--oneline"], cwd=repo, capture_output=True, text=True
            ).stdout
            == ""
        )


def set_atol(project: Path, model: str, atol: float) -> None:
    params = project / "params.yaml"
    text = params.read_text()
    start = text.index(f"\n  {model}:\n")
    at = text.index("\n      atol: ", start) + len("\n      ")  # the key, not the comment above it
    end = text.index("\n", at)
    params.write_text(text[:at] + f"atol: {atol:.1e}" + text[end:])  # YAML 1.1 floats need a dot


def verdict(project: Path, model: str) -> dict:
    return json.loads((project / "models" / model / "verdict.json").read_text())


def timed(project: Path, *args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = checked(dvc(project, *args, env=env))
    return result, time.perf_counter() - start


@pytest.mark.parametrize("publication", ["s3"], indirect=True)
def test_run_cache_restores_reverted_params_experiments_and_other_machines_runs(
    publication: Publication, tmp_path: Path
):
    machine = consumer(publication, tmp_path / "machine")
    env = publication.remote.env()
    main_atol = read_params_file(machine / "params.yaml")["models"]["cleaning"]["validation"]["atol"]
    assert main_atol != 0.0002
    checked(dvc(machine, "pull", "--run-cache", "validate@cleaning", "--with-deps", env=env))
    original = (machine / "models/cleaning/model.onnx").read_bytes()
    ran, ran_s = timed(
        machine,
        "exp",
        "run",
        "-n",
        "loose",
        "validate@cleaning",
        "-S",
        "models.cleaning.validation.atol=0.0002",
        env=env,
    )
    assert stages_run(ran.stdout) == ["validate@cleaning"]
    assert verdict(machine, "cleaning")["tolerance"]["atol"] == 0.0002
    git(machine, "checkout", "params.yaml")  # the param reverted: the run of main's value is cached
    back, back_s = timed(machine, "repro", "validate@cleaning", env=env)
    assert stages_run(back.stdout) == [] and stages_restored(back.stdout) == ["validate@cleaning"]
    assert verdict(machine, "cleaning")["tolerance"]["atol"] == main_atol
    again, again_s = timed(
        machine,
        "exp",
        "run",
        "-n",
        "again",
        "validate@cleaning",
        "-S",
        "models.cleaning.validation.atol=0.0002",
        env=env,
    )
    assert stages_run(again.stdout) == [] and stages_restored(again.stdout) == ["validate@cleaning"]
    # The tolerance is part of the file's lineage metadata (issue 11), so the bytes change with it;
    # the graph, weights included, does not.
    assert graph_bytes(machine / "models/cleaning/model.onnx") == graph_bytes_of(original)
    print(
        f"\nvalidate@cleaning: run {ran_s:.1f} s, reverted param restored {back_s:.1f} s, experiment again {again_s:.1f} s"
    )
    # `dvc exp show` reads verdict.json of main and of each experiment (from the cache).
    shown = json.loads(checked(dvc(machine, "exp", "show", "--json", env=env)).stdout)
    key = "models/cleaning/verdict.json"
    baseline = next(row for row in shown if row["rev"] != "workspace")
    assert baseline["data"]["metrics"][key]["data"]["tolerance"]["atol"] == main_atol
    experiments = {
        e["name"]: e["revs"][0]["data"]["metrics"][key]["data"] for e in baseline["experiments"] if e.get("name")
    }
    assert set(experiments) == {"loose", "again"}
    assert experiments["loose"]["tolerance"]["atol"] == 0.0002 and experiments["loose"]["verdict"] == "pass"
    assert experiments["again"]["tolerance"]["atol"] == 0.0002
    diff = json.loads(checked(dvc(machine, "metrics", "diff", "HEAD", "loose", "--json", env=env)).stdout)
    assert diff[key]["tolerance.atol"] == {"old": main_atol, "new": 0.0002, "diff": pytest.approx(0.0002 - main_atol)}
    # Against an older commit: every metric is a DVC-tracked verdict.json, so none fails to load.
    older = checked(dvc(machine, "metrics", "diff", "HEAD~1", "loose", env=env))
    assert "WARNING" not in older.stderr + older.stdout and "failed" not in older.stderr.lower()
    # Another machine with the same change restores the run pushed with the run-cache: `dvc pull
    # --run-cache` brings the run records, `dvc repro --pull` the outputs they name.
    checked(dvc(machine, "push", "--run-cache", "validate@cleaning", env=env))  # every run record, the run's outputs
    other = consumer(publication, tmp_path / "other")
    checked(dvc(other, "pull", "--run-cache", "validate@cleaning", "--with-deps", env=env))
    set_atol(other, "cleaning", 0.0002)
    restored, restored_s = timed(other, "repro", "--pull", "validate@cleaning", env=env)
    assert stages_run(restored.stdout) == [], restored.stdout
    assert stages_restored(restored.stdout) == ["validate@cleaning"]
    for file in PUBLISHED:
        assert same_bytes(other / "models/cleaning" / file, machine / "models/cleaning" / file), file
    assert (other / "dvc.lock").read_text() == (machine / "dvc.lock").read_text()
    print(f"validate@cleaning restored on another machine from the pushed run-cache: {restored_s:.1f} s")


def test_failed_run_loses_no_good_artifact(reproduced, tmp_path: Path):
    """DVC deletes a stage's outputs before running it; a failed run never records them, so the
    previous build stays in dvc.lock and in the cache, and `dvc checkout` puts it back."""
    built, _ = reproduced
    machine = clone(built, tmp_path / "machine", share_cache_of=built)
    env = environment()
    checked(dvc(machine, "checkout", "validate@cleaning", "--with-deps", env=env))
    lock = (machine / "dvc.lock").read_bytes()
    set_atol(machine, "cleaning", 1e-12)  # no float32 network matches its reference that closely
    failed = dvc(machine, "repro", "validate@cleaning", env=env)
    assert failed.returncode != 0
    assert "error: output 'output" in failed.stderr and "Traceback" not in failed.stderr
    assert (machine / "dvc.lock").read_bytes() == lock
    assert not (machine / "models/cleaning/verdict.json").exists()  # no verdict for a failed check
    git(machine, "checkout", "params.yaml")
    checked(dvc(machine, "checkout", "validate@cleaning", env=env))
    for file in PUBLISHED:
        assert same_bytes(machine / "models/cleaning" / file, built / "models/cleaning" / file), file
    status = checked(dvc(machine, "status", "validate@cleaning", "--with-deps", env=env))
    assert "Data and pipelines are up to date" in status.stdout


def test_exp_show_reads_every_models_verdict_on_main(reproduced):
    built, _ = reproduced
    shown = json.loads(checked(dvc(built, "exp", "show", "--json")).stdout)
    metrics = shown[0]["data"]["metrics"]
    for model in read_params_file(built / "params.yaml")["models"]:
        record = metrics[f"models/{model}/verdict.json"]["data"]
        assert record["verdict"] == "pass" and record["samples"] > 0 and record["tolerance"]["atol"] > 0, model
    # and `dvc metrics show` (every model's verdict, one line each) fits a 200-column terminal
    table = checked(dvc(built, "metrics", "show")).stdout.splitlines()
    assert len(table) == 1 + len(metrics) and max(map(len, table)) <= 200, max(map(len, table))
    assert git(built, "status", "--porcelain") == ""


def test_lineage_names_the_upstream_bytes_of_each_published_model(reproduced):
    """The registry does not repeat the upstream sha256s (dvc.yaml is generated from params.yaml
    alone): each published folder's lineage.json records exactly the params' files."""
    built, _ = reproduced
    for model, entry in read_params_file(built / "params.yaml")["models"].items():
        lineage = json.loads((built / "models" / model / "lineage.json").read_text())
        recorded = {file: info["sha256"] for file, info in lineage["upstream_files"].items()}
        assert set(recorded) == set(entry["files"]) and all(len(digest) == 64 for digest in recorded.values()), model
