"""The documentation stays usable: README.md is short, every relative link in it and in docs/
resolves (anchors included), every project command shown in a code block exists, and every
file or module of the project that code, comments or docs name by its path exists.

No build: each command is run with `--help` only, from the repository root with
PYTHONPATH=root, as a reader would type it there. Options the command shows (`--model`) must
appear in its help too, so a renamed option is caught as well as a renamed command.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 250
HELP_SECONDS = 60  # a benchmark's --help imports torch: a few seconds, more on a loaded machine

FENCE = re.compile(r"^ *(```|~~~)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:: not a file
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
OPTION = re.compile(r"^--[a-z][a-z0-9-]*")


def split_page(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code-block lines) of a Markdown page."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            prose.append(line)
    return prose, code


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for line in split_page(page.read_text())[0]:
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    """Link targets outside code, without web addresses."""
    prose = "\n".join(split_page(page.read_text())[0])
    return [t for t in LINK.findall(INLINE_CODE.sub("", prose)) if not SCHEME.match(t)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    return broken


def help_command(words: list[str]) -> tuple[str, ...] | None:
    """The `--help` call that proves a shown command exists, or None for any other command."""
    while words and ENV_ASSIGNMENT.match(words[0]):  # MODEL_SIGNING_KEY=... python -m stages.sign
        words = words[1:]
    if words[:1] == ["signature-onnx"]:
        words = ["python", "-m", "signature_onnx", *words[1:]]
    if len(words) < 2 or words[0] != "python":
        return None
    if words[1] == "-m" and len(words) > 2:
        module = words[2]
        if module.startswith("stages."):
            return ("-m", module)
        if module == "signature_onnx":  # its subcommand has its own --help
            sub = words[3] if len(words) > 3 and not words[3].startswith("-") else None
            return ("-m", module, sub) if sub else ("-m", module)
        return None
    if re.fullmatch(r"(benchmarks|examples)/[^/]+\.py", words[1]):
        return (words[1],)
    return None


def shown_commands() -> dict[tuple[str, ...], set[str]]:
    """Every project command in the code blocks of README.md and docs/, deduplicated: its --help
    call -> the options shown with it."""
    commands: dict[tuple[str, ...], set[str]] = {}
    for page in PAGES:
        for line in split_page(page.read_text())[1]:
            line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0]  # a shell comment
            for part in re.split(r"&&|\|\||;|\|", line):
                try:
                    words = shlex.split(part)
                except ValueError:  # an unbalanced quote in an output sample
                    words = part.split()
                call = help_command(words)
                if call is not None:
                    options = {OPTION.match(w.strip("[]")).group() for w in words if OPTION.match(w.strip("[]"))}
                    commands.setdefault(call, set()).update(options)
    return commands


COMMANDS = shown_commands()


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines, at most {MAX_README_LINES}: move text into docs/"


def test_readme_keeps_the_build_and_test_commands():
    """.ci/run runs exactly the README's test command."""
    code = split_page(README.read_text())[1]
    assert "pip install -r requirements.txt && dvc repro" in code
    assert "pip install -r requirements.txt && python -m pytest -q tests" in code
    assert "pip install -r requirements.txt && python -m pytest -q tests" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(page: Path):
    assert broken_links(page) == []


def test_the_commands_are_found():
    """Guards the extractor: a parser that found nothing would make every command test pass."""
    assert ("-m", "stages.verify") in COMMANDS and ("-m", "signature_onnx", "audit") in COMMANDS
    assert ("benchmarks/bench_repro.py",) in COMMANDS and ("examples/signet_parity.py",) in COMMANDS


@pytest.mark.parametrize("call", sorted(COMMANDS, key=" ".join), ids=" ".join)
def test_shown_command_exists(call: tuple[str, ...]):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, *call, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=HELP_SECONDS,
    )
    assert result.returncode == 0, f"{' '.join(call)} --help exited {result.returncode}:\n{result.stderr[-1500:]}"
    unknown = sorted(option for option in COMMANDS[call] if not re.search(rf"{re.escape(option)}\b", result.stdout))
    assert unknown == [], f"{' '.join(call)}: the docs show options its --help does not list: {unknown}"


# A project path as text names it: "stages/publish/lineage.py", "signature_onnx/folder.py".
NAMED_PATH = re.compile(r"(?<![\w/.<-])((?:stages|signature_onnx|benchmarks|examples)/[\w/.-]*\w)")
# A dotted module: "stages.publish.lineage", "signature_onnx.preprocessing.sigver.luminance"; not a
# call, which is code using a variable of that name (`stages.get(...)` in a benchmark).
NAMED_MODULE = re.compile(r"(?<![\w.])((?:stages|signature_onnx)(?:\.\w+)+)(?![\w(])")  # not a call: stages.get(...)
# Placeholders in examples of how to name a file, not files: `stages/core/x.py`.
EXAMPLE_PATHS = {"stages/core/x.py"}


def named_paths(text: str) -> set[str]:
    """The project paths and dotted modules `text` names (after stripping a trailing dot)."""
    paths = {match.rstrip(".") for match in NAMED_PATH.findall(text)}
    return paths | {match.rstrip(".") for match in NAMED_MODULE.findall(text)}


def exists(name: str) -> bool:
    """A path that exists (a `.py` may be left off), or a dotted name whose longest module prefix
    exists and defines or imports the next name (a function, class or constant of that module)."""
    if "/" in name:
        return (REPO / name).exists() or (REPO / f"{name}.py").exists() or name in EXAMPLE_PATHS
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        base = REPO.joinpath(*parts[:k])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            return (
                k == len(parts)
                or re.search(rf"\b{re.escape(parts[k])}\b", module.read_text(encoding="utf-8")) is not None
            )
    return False


def stale_pointers(files: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}: {name}"
        for path in files
        for name in sorted(named_paths(path.read_text(encoding="utf-8")))
        if not exists(name)
    ]


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in listed.stdout.split()]


def test_every_named_project_file_exists():
    """A docstring, comment or page pointing at a file that moved sends a reader nowhere."""
    assert stale_pointers(tracked("*.py", "*.md", "*.yaml", "*.mjs")) == []


def test_a_moved_file_is_found(tmp_path: Path):
    page = tmp_path / "page.md"
    moved = "stages/" + "lineage.py", "stages." + "lineage"  # split: this file is scanned too
    page.write_text(f"See {moved[0]} and {moved[1]}, unlike stages/publish/lineage.py and stages.publish.lineage.\n")
    assert stale_pointers([page]) == [f"page.md: {moved[1]}", f"page.md: {moved[0]}"]
