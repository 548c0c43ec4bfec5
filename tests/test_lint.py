"""The code passes the project's lint and format (`ruff check .`, `ruff format --check .`, the rules
and line length of pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ruff(*args: str, cwd: Path = REPO, command: str = "check") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", command, "--no-cache", *args], cwd=cwd, capture_output=True, text=True
    )


def test_the_code_passes_ruff():
    result = ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_with_the_projects_rules_catches_an_unused_import_and_import_order(tmp_path: Path):
    module = tmp_path / "module.py"
    module.write_text("import sys\nimport os\n\nprint(os.sep)\n")
    result = ruff("--config", str(REPO / "pyproject.toml"), "--output-format", "concise", str(module))
    assert result.returncode == 1
    assert "F401" in result.stdout and "I001" in result.stdout


def test_the_code_is_formatted():
    result = ruff("--check", ".", command="format")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_format_check_catches_a_misformatted_file(tmp_path: Path):
    module = tmp_path / "module.py"
    module.write_text("x = { 'a':1 }\n")
    result = ruff("--config", str(REPO / "pyproject.toml"), "--check", str(module), command="format")
    assert result.returncode == 1 and "module.py" in result.stdout
