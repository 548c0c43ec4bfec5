"""`dvc plots show` draws one log-scale chart per model output with its tolerance, offline.

The page is rendered by a real headless browser (Debian's `chromium`) with every host name
unresolvable, so a chart that needs the network stays blank. Skipped when chromium is missing,
except in CI (env CI set), where .ci/run installs it and its absence is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO, dvc, git

from stages.core.params import load_params, read_params_file

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND"  # every DNS lookup fails: no CDN, no network


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def render(page: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, as chromium serialises it."""
    result = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            OFFLINE,
            "--virtual-time-budget=30000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


class Charts(HTMLParser):
    """Per top-level plot div: the vega marks drawn in it (SVG renderer)."""

    def __init__(self, plot_ids: set[str]) -> None:
        super().__init__()
        self.plot_ids = plot_ids
        self.current: str | None = None
        self.depth = 0
        self.marks: dict[str, list[str]] = {}  # div id -> class of each mark group holding a drawn path
        self.texts: dict[str, list[str]] = {}
        self._group: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if tag == "div" and attributes.get("id") in self.plot_ids and self.current is None:
            self.current, self.depth = attributes["id"], 0
            self.marks[self.current], self.texts[self.current] = [], []
        if self.current is None:
            return
        if tag == "div":
            self.depth += 1
        classes = attributes.get("class") or ""
        if tag == "g":  # vega draws each mark's items directly inside its `role-mark` group
            self._group = classes if "role-mark" in classes else None
        if tag == "path" and self._group and (attributes.get("d") or "").startswith("M"):
            self.marks[self.current].append(self._group)

    def handle_endtag(self, tag: str) -> None:
        if self.current is not None and tag == "div":
            self.depth -= 1
            if self.depth == 0:
                self.current = None

    def handle_data(self, data: str) -> None:
        if self.current is not None and data.strip():
            self.texts[self.current].append(data.strip())


def expected_plots() -> dict[str, str]:
    """Plot id -> HTML div id, one per output of every model in params.yaml."""
    models = {name: spec.model_dump() for name, spec in load_params(REPO / "params.yaml").models.items()}
    ids = [f"{name}/{out['name']}" for name, model in models.items() for out in model["onnx"]["outputs"]]
    return {plot: re.sub(r"[^A-Za-z0-9-]", "_", plot) for plot in ids}


@pytest.fixture(scope="module")
def plots_dir(reproduced, tmp_path_factory) -> Path:
    built, build = reproduced
    assert build.returncode == 0, build.stderr[-2000:]
    out = tmp_path_factory.mktemp("plots")
    result = dvc(built, "plots", "show", "-o", str(out / "offline"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert git(built, "status", "--porcelain") == ""
    return out


def test_plot_specs_show_each_output_on_a_log_axis_with_its_tolerance(reproduced):
    built, _ = reproduced
    shown = json.loads(dvc(built, "plots", "show", "--json").stdout)["data"]
    assert set(shown) == set(expected_plots())
    models = read_params_file(built / "params.yaml")["models"]
    for plot, (rendered,) in shown.items():
        model, output = plot.split("/")
        spec = rendered["content"]
        assert output in spec["title"]["text"] and model in spec["title"]["text"]
        transforms = json.dumps(spec["transform"])
        assert f"{output}_max_abs_error" in transforms and "'max_abs_error', 'tolerance'" in transforms
        error_layer, tolerance_layer = spec["layer"][0], spec["layer"][1]
        assert error_layer["encoding"]["y"]["scale"]["type"] == "log"
        assert tolerance_layer["encoding"]["y"]["field"] == "tolerance"
        rows = spec["data"]["values"]
        assert len(rows) == json.loads((built / "reports" / model / "validation.json").read_text())["samples"]
        atol = models[model]["validation"]["atol"]
        assert {float(row[f"{output}_tolerance"]) for row in rows} == {atol}
        assert all(0 <= float(row[f"{output}_max_abs_error"]) <= atol for row in rows)


def test_offline_page_draws_every_chart_in_chromium(plots_dir: Path, tmp_path: Path):
    page = plots_dir / "offline" / "index.html"
    assert "cdn.jsdelivr.net" not in page.read_text()
    plots = expected_plots()
    charts = Charts(set(plots.values()))
    charts.feed(render(page, tmp_path / "profile"))
    assert set(charts.marks) == set(plots.values())
    for plot, div in plots.items():
        lines = [group for group in charts.marks[div] if "mark-line" in group]
        assert len(lines) >= 2, f"{plot}: the error line and the tolerance line, got {charts.marks[div]}"
        assert "tolerance" in charts.texts[div] and any("(log)" in text for text in charts.texts[div]), plot


def test_dvc_default_page_stays_blank_offline(plots_dir: Path, reproduced, tmp_path: Path):
    """The control: DVC's own page loads vega from a CDN, so the same check finds nothing drawn."""
    from dvc_render.html import PAGE_HTML

    built, _ = reproduced
    template = tmp_path / "cdn.html"
    template.write_text(PAGE_HTML)
    result = dvc(built, "plots", "show", "--html-template", str(template), "-o", str(plots_dir / "cdn"))
    assert result.returncode == 0, result.stderr[-2000:]
    page = plots_dir / "cdn" / "index.html"
    assert "cdn.jsdelivr.net" in page.read_text()
    plots = expected_plots()
    charts = Charts(set(plots.values()))
    charts.feed(render(page, tmp_path / "profile"))
    assert all(marks == [] for marks in charts.marks.values())


def test_offline_template_inlines_the_vega_releases_dvc_render_asks_for():
    from dvc_render.vega import VegaRenderer

    wanted = set(re.findall(r"npm/(vega(?:-lite|-embed)?)@([\d.]+)", VegaRenderer.SCRIPTS))
    template = (REPO / ".dvc" / "plots" / "offline.html").read_text()
    inlined = set(re.findall(r'data-library="(vega(?:-lite|-embed)?)@([\d.]+)"', template))
    assert wanted == inlined and len(wanted) == 3
    assert "{plot_divs}" in template and "{scripts}" not in template  # no CDN script tags added
    assert "src=" not in re.sub(r"<script[^>]*>.*?</script>", "", template, flags=re.S)
