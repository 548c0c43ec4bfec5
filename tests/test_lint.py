"""The code passes the project's lint (`ruff check .` with the rules of pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ruff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=cwd, capture_output=True, text=True)


def test_the_code_passes_ruff():
    result = ruff(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_with_the_projects_rules_catches_an_unused_import_and_import_order(tmp_path: Path):
    module = tmp_path / "module.py"
    module.write_text("import sys\nimport os\n\nprint(os.sep)\n")
    result = ruff("--config", str(REPO / "pyproject.toml"), "--output-format", "concise", str(module))
    assert result.returncode == 1
    assert "F401" in result.stdout and "I001" in result.stdout
