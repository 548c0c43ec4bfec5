"""Release a built model: check the remote holds its whole build, then tag it with GTO.

    python -m stages.release MODEL --version v1.0.0 [--stage prod] [--remote NAME] [--push]

It releases the build committed at HEAD (dvc.lock), read from the DVC cache, so the workspace
need not hold it. Refuses, with the list of what is wrong, when:
- dvc.yaml, dvc.lock or params.yaml differ from HEAD (the tag must name the build it releases);
- dvc.yaml's generated blocks (artifacts, plots) differ from what params.yaml gives
  (`python -m stages.generate_dvc_yaml --check`);
- the build's lineage.json is neither in the DVC cache nor in the remote, or is damaged;
- the model folder's signature (models/MODEL/model.sig and commit.json, from
  `python -m stages.sign`) differs from HEAD: the released folder carries the committed signature;
- the DVC remote lacks any cache file of the published folder's build (what `dvc push` must
  upload: the files `dvc status --cloud --with-deps validate@MODEL derive@MODEL`
  reports new or missing).
Then `gto register` makes the git tag `NAME@VERSION` and, with --stage, `gto assign` makes
`NAME#STAGE#N`; users get the model with `dvc artifacts get REPO NAME --rev VERSION` (or
`--stage STAGE`). Without --push the tags stay local: `git push origin --tags` publishes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from stages.core import paths
from stages.core.cli import report_errors
from stages.core.errors import PipelineError, first_line

MANIFEST_FILES = ("dvc.yaml", "dvc.lock", "params.yaml")
# Remote statuses that mean "the remote lacks this file" (`deleted` means remote-only: fine).
NOT_IN_REMOTE = ("new", "missing")
LISTED = 50  # missing files printed before "and N more" (a model folder's whole build is about 30)


def reason(error: BaseException | str, limit: int = 200) -> str:
    """The first line of a tool's message, shortened, with control characters escaped (it may
    quote a server's reply or a file's content, which must not drive the terminal)."""
    return first_line(error, limit)  # first_line escapes and shortens already


def artifact_name(model: str) -> str:
    """The registry name of a params key: DVC and GTO allow '-' but not '_' in artifact names."""
    return model.replace("_", "-")


def find_artifact(root: Path, model: str) -> tuple[str, dict]:
    """(name, entry) of the dvc.yaml artifact publishing `model` (a params key or artifact name)."""
    artifacts = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("artifacts") or {}
    for name, entry in artifacts.items():
        if model in (name, (entry.get("meta") or {}).get("model")):
            return name, entry
    raise PipelineError(
        f"dvc.yaml: no artifact publishes {model!r} (artifacts: {', '.join(sorted(artifacts)) or 'none'}); "
        f"add the model to params.yaml and run: python -m stages.generate_dvc_yaml (it writes the entry {artifact_name(model)!r})"
    )


def check_committed(root: Path, model: str) -> None:
    """The files that define the build (and the folder's signature) must be committed, so the tag points at this build."""
    signed = [(paths.published_dir(model) / name).as_posix() for name in ("model.sig", "commit.json")]
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", *MANIFEST_FILES, *signed],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    if changed.returncode != 0:
        raise PipelineError(f"{root}: not a git repository (git status: {reason(changed.stderr)})")
    if changed.stdout.strip():
        files = ", ".join(line[3:] for line in changed.stdout.splitlines())
        raise PipelineError(
            f"uncommitted changes in {files}: commit them first, the tag must name the build it releases"
        )


def committed_lineage(root: Path, model: str) -> dict:
    """The lineage.json of the build committed at HEAD, read through DVC (cache, else remote)."""
    import dvc.api

    path = (paths.published_dir(model) / "lineage.json").as_posix()
    try:
        return json.loads(dvc.api.read(path, repo=str(root), rev="HEAD"))
    except ValueError:
        raise PipelineError(f"{path}: not valid JSON; rebuild it: dvc repro -f validate@{model}") from None
    except Exception as exc:  # DVC raises many types (not in cache, no remote, path missing)
        raise PipelineError(
            f"{path} of HEAD's build is neither in the DVC cache nor in the remote ({reason(exc)}); build it (dvc repro) or pull it"
        ) from None


def check_signature_current(root: Path, model: str, built: dict) -> None:
    """A committed signature must be of this build: HEAD's commit.json names HEAD's model.onnx."""
    path = (paths.published_dir(model) / "commit.json").as_posix()
    shown = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True, text=True, check=False)
    if shown.returncode != 0:
        return  # an unsigned release
    try:
        named = json.loads(shown.stdout)["model_sha256"]
    except (ValueError, KeyError, TypeError):
        raise PipelineError(f"{path} at HEAD is damaged; sign again: python -m stages.sign {model}") from None
    if named != (built.get("onnx") or {}).get("sha256"):
        raise PipelineError(
            f"{path} at HEAD signs another build of {model} (model.onnx sha256 {reason(str(named), 70)}); "
            f"sign this one and commit it: python -m stages.sign {model} && git add models/{model}/model.sig {path}"
        )


def check_registry_generated(root: Path) -> None:
    """dvc.yaml's artifacts (and plots) must be what params.yaml gives: a tag must not publish a stale
    description or labels."""
    from stages.core.params import load_params
    from stages.generate_dvc_yaml import staleness  # it imports this module's artifact_name

    stale = staleness(
        (root / "dvc.yaml").read_text(encoding="utf-8"), load_params(root / "params.yaml").models, "dvc.yaml"
    )
    if stale:
        raise PipelineError(stale)


def check_build_record(root: Path, model: str) -> None:
    """HEAD's build must be readable (its lineage.json, which records the upstream bytes it converted)
    and the folder's committed signature, if any, must be of that build."""
    lineage = committed_lineage(root, model)
    if not isinstance(lineage, dict) or not isinstance(lineage.get("upstream_files"), dict):
        raise PipelineError(
            f"models/{model}/lineage.json: lacks upstream_files; rebuild it: dvc repro -f validate@{model}"
        )
    check_signature_current(root, model, lineage)


def missing_from_remote(root: Path, model: str, remote: str | None) -> list[str]:
    """Cache files of the published folder's whole build (fetch .. derive) that the remote does not hold."""
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            status = repo.status(targets=list(published_stages(model)), with_deps=True, cloud=True, remote=remote)
    except Exception as exc:  # no remote, unreachable server, refused credentials: DVC's or the client's types
        raise PipelineError(f"cannot compare the build of {model} with the DVC remote: {reason(exc, 300)}") from None
    return sorted(path for path, state in status.items() if state in NOT_IN_REMOTE)


def published_stages(model: str) -> tuple[str, ...]:
    """The stages whose outputs make up models/<model>/ (the artifact's path)."""
    return tuple(f"{stage}@{model}" for stage in paths.PUBLISHING_STAGES)


def check_remote(root: Path, model: str, remote: str | None) -> None:
    missing = missing_from_remote(root, model, remote)
    if missing:
        shown = "".join(f"\n  {path}" for path in missing[:LISTED])
        more = f"\n  ... and {len(missing) - LISTED} more" if len(missing) > LISTED else ""
        push = f"dvc push -r {remote}" if remote else "dvc push"
        raise PipelineError(
            f"the DVC remote lacks {len(missing)} cache file(s) of the build of {model}; nothing was tagged. "
            f"Run `{push} {' '.join(published_stages(model))} --with-deps` (and check it reports no failure), then release again:{shown}{more}"
        )


def tag(root: Path, name: str, version: str, stage: str | None, push: bool) -> list[str]:
    """`gto register` (and `gto assign`); returns the tags made."""
    from gto import api
    from gto.exceptions import GTOException

    made = []
    try:
        api.register(str(root), name, ref="HEAD", version=version, push=push)
        made.append(f"{name}@{version}")
        if stage:
            api.assign(str(root), name, stage, version=version, push=push)
            made.append(f"{name}#{stage}#N (stage {stage})")
    except GTOException as exc:
        raise PipelineError(f"gto refused to tag {name} {version}: {reason(exc, 300)}") from None
    return made


def release(args: argparse.Namespace) -> None:
    root = Path(args.repo).resolve()
    name, entry = find_artifact(root, args.model)
    model = (entry.get("meta") or {}).get("model", args.model)
    print(f"[release {name}] checking the build is committed", file=sys.stderr)
    check_committed(root, model)
    check_registry_generated(root)
    check_build_record(root, model)
    print(f"[release {name}] checking the DVC remote holds every cache file of the build", file=sys.stderr)
    check_remote(root, model, args.remote)
    if args.check_only:
        print(f"[release {name}] ready to release: the remote holds the whole build", file=sys.stderr)
        return
    made = tag(root, name, args.version, args.stage, args.push)
    print(
        f"[release {name}] tagged {', '.join(made)}" + ("" if args.push else "; publish with: git push origin --tags"),
        file=sys.stderr,
    )


EXAMPLES = """examples:
  dvc push --run-cache && python -m stages.release signet --version v1.0.0 --check-only
  python -m stages.release signet --version v1.0.0 --stage prod --push
  gto show    # lists signet, latest v1.0.0, #prod v1.0.0
before any release, gto show prints "Nothing found in the current workspace" (no tags yet)."""


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m stages.release",
        description="Tag a model version (GTO) after checking the DVC remote holds its whole build.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines
    )
    result.add_argument("model", help="a params.yaml model key (signet_pth) or its artifact name (signet-pth)")
    result.add_argument("--version", required=True, help="semantic version to register, e.g. v1.0.0")
    result.add_argument("--stage", help="also assign this stage (e.g. dev, staging, prod) to the version")
    result.add_argument("--remote", help="DVC remote to check (default: the repository's default remote)")
    result.add_argument("--push", action="store_true", help="push the tags to the git remote 'origin'")
    result.add_argument("--check-only", action="store_true", help="only run the checks, tag nothing")
    result.add_argument("--repo", default=".", help="repository root (default: the current folder)")
    return result


def main() -> None:
    args = parser().parse_args()
    sys.exit(report_errors(lambda: release(args)))


if __name__ == "__main__":
    main()
