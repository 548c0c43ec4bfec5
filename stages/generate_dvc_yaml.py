"""Write dvc.yaml's per-model blocks from params.yaml, so adding a model is one params entry.

    python -m stages.generate_dvc_yaml            # rewrite the generated blocks of dvc.yaml
    python -m stages.generate_dvc_yaml --check    # exit 1 with one error: line if they are stale

The stages are `foreach` over params and need nothing per model, but DVC has no `foreach` for the
top-level `plots:` and `artifacts:`: they list every model. This command writes exactly those
two blocks, each between its `# BEGIN GENERATED <block>` and `# END GENERATED <block>` marker
lines; every other byte of dvc.yaml (stages, comments) stays as it is. The output is a pure
function of params.yaml (no build, no clock, params order): the same bytes on every machine.

- plots: one entry `<model>/<output>` per ONNX output, the column `<output>_max_abs_error` of
  reports/<model>/samples.csv, template error_log;
- artifacts: one entry per model, named after it with '-' for '_' (DVC and GTO accept no '_'):
  path models/<model>, type model, desc the params description, labels (model, family, source
  kind) and meta (model, source kind). The upstream sha256s are not repeated here: each build
  records them in models/<model>/lineage.json and model.onnx's metadata, which travel with the
  folder (`signature-onnx audit`, `python -m stages.verify` check them).

This file is in .dvcignore (like stages/release.py): it builds nothing, so editing it must
not change any stage's dependencies.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml
from gto.constants import assert_name_is_valid
from gto.exceptions import GTOException
from ruamel.yaml import YAML, YAMLError

from stages.core.cli import report_errors
from stages.core.errors import PipelineError
from stages.core.params import ModelSpec, load_params
from stages.release import artifact_name

COMMAND = "python -m stages.generate_dvc_yaml"
BLOCKS = ("plots", "artifacts")


def begin_marker(block: str) -> str:
    return f"# BEGIN GENERATED {block}: written from params.yaml by `{COMMAND}`; do not edit by hand"


def end_marker(block: str) -> str:
    return f"# END GENERATED {block}"


# Written plain only when it is a name or path of these characters (and no number, bool or null
# to either YAML reader); anything else is double-quoted.
PLAIN = re.compile(r"^[a-z][a-z0-9_./-]*$")


def plain_or_quoted(text: str) -> str:
    """A name or path as a YAML scalar: plain when it is one of `PLAIN` that DVC's YAML 1.2 reader
    and PyYAML's 1.1 both read back as this very string, else `quoted`."""
    if PLAIN.match(text) and read_yaml(text) == text and yaml.safe_load(text) == text:
        return text
    return quoted(text)


def quoted(text: str) -> str:
    """Free text (a description, a title) as a double-quoted YAML scalar, ASCII only: JSON's escapes
    (valid YAML) for quotes, control and non-ASCII characters, and \\u007f for DEL, which JSON
    leaves raw and YAML refuses; every YAML reader then reads the same string."""
    return json.dumps(text, ensure_ascii=True).replace("\x7f", "\\u007f")


def read_yaml(text: str) -> object:
    """`text` as DVC reads dvc.yaml (ruamel.yaml, YAML 1.2): "1e5" is a number there, not in PyYAML."""
    return YAML(typ="safe", pure=True).load(text)


def plot_entries(models: dict[str, ModelSpec]) -> list[dict]:
    """The `plots:` list: one chart per model output (the measured error of each validation sample)."""
    return [
        {
            f"{name}/{output.name}": {
                "template": "error_log",
                "x": "sample",
                "y": {f"reports/{name}/samples.csv": f"{output.name}_max_abs_error"},
                "title": f"{name}: {output.name}, max |ONNX - reference| per validation sample",
            }
        }
        for name, spec in models.items()
        for output in spec.onnx.outputs
    ]


def checked_artifact_name(model: str) -> str:
    """The model's registry name, refused (naming the params key) where GTO would refuse it:
    params allow `cleaning_`, whose name `cleaning-` ends with a dash."""
    name = artifact_name(model)
    try:
        assert_name_is_valid(name)
    except GTOException:
        raise PipelineError(
            f"models.{model}: its artifact name {name!r} is not one DVC and GTO accept "
            "(letters, digits, '-', at least 2 characters, first and last a letter or digit); rename the model"
        ) from None
    return name


def artifact_entries(models: dict[str, ModelSpec]) -> dict[str, dict]:
    """The `artifacts:` map: one registry entry per published model folder."""
    return {
        checked_artifact_name(name): {
            "path": f"models/{name}",
            "type": "model",
            "desc": spec.description,
            "labels": [name, spec.family, spec.source.kind],
            "meta": {"model": name, "source": spec.source.kind},
        }
        for name, spec in models.items()
    }


def plots_lines(entries: list[dict]) -> list[str]:
    lines = ["plots:"]
    for entry in entries:
        ((plot_id, plot),) = entry.items()
        ((csv, column),) = plot["y"].items()
        lines += [
            f"  - {plain_or_quoted(plot_id)}:",
            f"      template: {plot['template']}",
            f"      x: {plot['x']}",
            "      y:",
            f"        {plain_or_quoted(csv)}: {plain_or_quoted(column)}",
            f"      title: {quoted(plot['title'])}",
        ]
    return lines


def artifacts_lines(entries: dict[str, dict]) -> list[str]:
    lines = ["artifacts:"]
    for name, entry in entries.items():
        lines += [
            f"  {plain_or_quoted(name)}:",
            f"    path: {plain_or_quoted(entry['path'])}",
            f"    type: {entry['type']}",
            f"    desc: {quoted(entry['desc'])}",
            f"    labels: [{', '.join(plain_or_quoted(label) for label in entry['labels'])}]",
            "    meta:",
            *(f"      {key}: {plain_or_quoted(value)}" for key, value in entry["meta"].items()),
        ]
    return lines


def render(block: str, models: dict[str, ModelSpec]) -> tuple[list | dict, str]:
    """(the block's data, its text between the markers); the text is checked to read back as the data."""
    if block == "plots":
        data: list | dict = plot_entries(models)
        lines = plots_lines(data)
    else:
        data = artifact_entries(models)
        lines = artifacts_lines(data)
    text = "".join(f"{line}\n" for line in lines)
    if read_yaml(text) != {block: data}:  # a value the writer does not escape: a bug, never a silent change
        raise PipelineError(f"the generated {block} block does not read back as written; report it with params.yaml")
    return data, text


def block_span(text: str, block: str, where: str) -> tuple[int, int]:
    """(start, end) offsets of what lies between the block's marker lines of dvc.yaml."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin_marker(block)]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end_marker(block)]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise PipelineError(
            f"{where}: needs exactly one line {begin_marker(block)!r} followed by one line {end_marker(block)!r} "
            f"around the top-level {block}: block (found {len(begins)} and {len(ends)}); put them back and run {COMMAND}"
        )
    start = sum(len(line) for line in lines[: begins[0] + 1])
    return start, start + sum(len(line) for line in lines[begins[0] + 1 : ends[0]])


def regenerated(text: str, models: dict[str, ModelSpec], where: str) -> str:
    """dvc.yaml's text with every generated block rewritten from `models`, the rest byte-identical."""
    for block in BLOCKS:
        start, end = block_span(text, block, where)
        text = text[:start] + render(block, models)[1] + text[end:]
    return text


def entry_names(block: str, data: object) -> dict[str, object]:
    """The block's entries by name (plots: `<model>/<output>`, artifacts: the artifact name)."""
    if block == "plots":
        return {key: value for entry in data or [] if isinstance(entry, dict) for key, value in entry.items()}
    return dict(data) if isinstance(data, dict) else {}


def staleness(text: str, models: dict[str, ModelSpec], where: str) -> str | None:
    """None when dvc.yaml's generated blocks are what params.yaml gives, else what differs, in one line."""
    if regenerated(text, models, where) == text:
        return None
    differences = []
    for block in BLOCKS:
        start, end = block_span(text, block, where)
        wanted, written = render(block, models)
        if written == text[start:end]:
            continue
        try:
            found = entry_names(block, (read_yaml(text[start:end]) or {}).get(block))
        except (YAMLError, AttributeError):
            found = {}
        expected = entry_names(block, wanted)
        missing = [name for name in expected if name not in found]
        extra = [name for name in found if name not in expected]
        changed = [name for name in expected if name in found and found[name] != expected[name]]
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (("missing", missing), ("not in params", extra), ("changed", changed))
            if names
        ]
        differences.append(f"{block} ({'; '.join(parts) or 'layout differs'})")
    return f"{where}: the generated blocks are out of date with params.yaml: {'; '.join(differences)}; run: {COMMAND}"


def generate(args: argparse.Namespace) -> None:
    repo = Path(args.repo)
    models = load_params(repo / "params.yaml").models
    manifest = repo / "dvc.yaml"
    where = str(manifest) if args.repo != "." else "dvc.yaml"
    text = manifest.read_text(encoding="utf-8")
    if args.check:
        stale = staleness(text, models, where)
        if stale:
            raise PipelineError(stale)
        print(
            f"{where}: the generated blocks ({', '.join(BLOCKS)}) match params.yaml ({len(models)} models)",
            file=sys.stderr,
        )
        return
    updated = regenerated(text, models, where)
    if updated == text:
        print(f"{where}: already up to date ({len(models)} models)", file=sys.stderr)
        return
    manifest.write_text(updated, encoding="utf-8")
    print(f"{where}: rewrote the generated blocks ({', '.join(BLOCKS)}) for {len(models)} models", file=sys.stderr)


EXAMPLES = f"""examples:
  {COMMAND}            # after adding or editing a model in params.yaml
  {COMMAND} --check    # exit 1, one error: line, when dvc.yaml is out of date
Only the lines between '# BEGIN GENERATED <block>' and '# END GENERATED <block>' of dvc.yaml
are rewritten (blocks: {", ".join(BLOCKS)}); everything else stays byte for byte."""


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog=COMMAND,
        description="Rewrite dvc.yaml's per-model blocks (plots: one chart per model output; artifacts: one registry "
        "entry per model) from params.yaml.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines
    )
    result.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with one error: line if dvc.yaml is out of date"
    )
    result.add_argument(
        "--repo", default=".", help="project root holding params.yaml and dvc.yaml (default: the current folder)"
    )
    return result


def main() -> None:
    args = parser().parse_args()
    sys.exit(report_errors(lambda: generate(args)))


if __name__ == "__main__":
    main()
