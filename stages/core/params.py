"""`params.yaml`: one declarative entry per upstream model, checked on load.

Each entry says where the upstream bytes come from (`source`), which family module knows the
framework (`family`, a folder of stages/families/ whose `facts.py` the entry is checked against;
stages.core.family_facts), which files make up the upstream layout (`files`), how the ONNX graph is
named and shaped (`onnx`) and how strictly it must agree with its source (`validation`).
What the models of a family share is written once, under `families.<family>` (the sections
onnx, validation, preprocessing, variants); an entry holds what differs and wins key by key
(`with_family_defaults`). An unknown key, a missing key or a wrong type fails with a message
naming the key path where the value was written.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from signature_onnx.preprocessing import Preprocessing
from stages.core.errors import PipelineError
from stages.core.family_facts import MB, Architecture, family_facts, known_families
from stages.core.untrusted import is_secret_query_name

PARAMS_FILE = Path("params.yaml")
# No dots: DVC reads `models.<name>.source` in dvc.yaml as a path split on dots, so a name like
# "signet_f_lambda0.95" would break per-model parameter tracking; write it signet_f_lambda0_95.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The default size limit of one downloaded file, when params give none, is the family's
# (`MAX_BYTES` of its facts.py): the largest real upstream file of its kind (docs/MODEL_FACTS.md,
# "Upstream file sizes and download limits"; the stand-ins' weight files have the same sizes) with
# room to spare, so that a hostile server cannot fill the disk or the memory of a loader.
# A `#member` address downloads a whole zip first (signet_models.zip holds three 63 MB pickles).
DEFAULT_MAX_ARCHIVE_BYTES = 512 * MB
DEFAULT_MAX_SECONDS = 1800


def not_a_family(family: object) -> str:
    """The one message for a family name that is no folder of stages/families/."""
    return f"{family!r} is not a model family; known (the folders of stages/families/): {', '.join(known_families())}"


class _Strict(BaseModel):
    """Refuses unknown keys and silent type coercion (a quoted number stays an error)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TensorSpec(_Strict):
    """One graph input or output: its final ONNX name, its name in the converted graph, dtype, shape.

    A dimension is an int (fixed) or a string (a named dynamic axis).
    """

    name: str
    source_name: str
    dtype: Literal["float32", "uint8"]
    shape: list[Annotated[int, Field(ge=1)] | str]


class OnnxSpec(_Strict):
    opset: Annotated[int, Field(ge=13, le=21)]
    inputs: Annotated[list[TensorSpec], Field(min_length=1)]
    outputs: Annotated[list[TensorSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> "OnnxSpec":
        names = [t.name for t in (*self.inputs, *self.outputs)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tensor names must be unique, repeated: {duplicates}")
        return self


class KaggleSource(_Strict):
    """A Kaggle notebook whose output files hold the upstream artifact."""

    kernel: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+/[A-Za-z0-9_.-]+$")]


class SourceSpec(_Strict):
    """Where the upstream bytes come from; `kind` picks one, the others stay declared for a switch."""

    kind: Literal["builtin", "kaggle", "url"]
    seed: Annotated[int, Field(ge=0)]
    kaggle: KaggleSource | None = None
    urls: dict[str, str] = {}
    # Per downloaded file; None: MAX_BYTES of the model's family facts (ModelSpec fills it in).
    max_bytes: Annotated[int, Field(ge=1)] | None = None
    # A `#member` address's whole archive.
    max_archive_bytes: Annotated[int, Field(ge=1)] = DEFAULT_MAX_ARCHIVE_BYTES
    # Total time one file may take to download, all attempts included.
    max_seconds: Annotated[int, Field(ge=1)] = DEFAULT_MAX_SECONDS

    @model_validator(mode="after")
    def _kind_has_details(self) -> "SourceSpec":
        if self.kind == "kaggle" and self.kaggle is None:
            raise ValueError("kind 'kaggle' needs a 'kaggle: {kernel: owner/slug}' entry")
        if self.kind == "url" and not self.urls:
            raise ValueError("kind 'url' needs 'urls: {file: https://...}' for every file")
        for file, url in self.urls.items():
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ValueError(f"urls.{file}: {url!r} is not an http(s) address")
            # params.yaml values are copied into dvc.lock: a secret here would be published.
            if parts.username or parts.password:
                raise ValueError(
                    f"urls.{file}: the address carries a user name or password; params must hold no credentials"
                )
            secret = [k for k, _v in parse_qsl(parts.query) if is_secret_query_name(k)]
            if secret:
                raise ValueError(
                    f"urls.{file}: query parameter(s) {secret} look like credentials; params must hold none"
                )
        return self


class PreprocessGraphSpec(_Strict):
    """Targets for preprocess.onnx against the package's Python preprocessing (stages/preprocess_graph/check.py)."""

    min_exact_fraction: Annotated[float, Field(gt=0, le=1)] = 0.99  # accepted pages whose network input is bit-equal
    max_gray_levels: Annotated[int, Field(ge=0, le=255)] = 1  # largest difference on any page
    min_cosine: Annotated[float, Field(gt=0, le=1)] = 0.99999  # pipeline.onnx vs the network on the Python input


class ValidationSpec(_Strict):
    """Tolerances for ONNX Runtime against the source framework, element-wise as numpy.allclose."""

    samples: Annotated[int, Field(ge=1, le=256)]
    # Signature strokes drawn straight at the network's input size, small and centred or over
    # the whole field, so every spatial position of every feature map sees ink on some input.
    stroke_samples: Annotated[int, Field(ge=0, le=64)] = 0
    atol: Annotated[float, Field(gt=0)]
    rtol: Annotated[float, Field(ge=0)]
    min_cosine: Annotated[float, Field(gt=0, le=1)] = 0.9999
    embedding_outputs: list[str] = []
    decision_output: str | None = None
    image_dirs: list[str] = []
    preprocess_graph: PreprocessGraphSpec = PreprocessGraphSpec()


Size = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2, max_length=2)]


class PreprocessingSpec(_Strict):
    """How the model's input is made from an image; published as `models/<name>/preprocessing.json`.

    The package `signature_onnx` reads that file, so users never choose these by hand. Styles:
    `wiwd` (sigver_wiwd's code, the Lasagne pickles), `sigver` (sigver's scikit-image code, the
    .pth SigNets and the Siamese notebook), `rgb` (the cleaning model's resized RGB page).
    """

    style: Literal["wiwd", "sigver", "rgb"]
    input_size: Size  # (rows, cols) of the network input; for SPP the smallest accepted image
    canvas: Size | None = None  # the canvas the signature is centered on (signature styles)
    img_size: Size | None = None  # the canvas is resized to this before the center crop
    input_divisor: Literal[1, 255] = 1  # the 0..255 image is divided by it (float inputs)
    spp: bool = False  # SigNet-SPP: 255 - remove_background at the image's own size

    def package_form(self) -> Preprocessing:
        """The same description as the package reads it from `preprocessing.json`."""
        return Preprocessing.from_dict(self.model_dump(exclude_none=True), "params preprocessing")

    @model_validator(mode="after")
    def _sizes_fit_the_style(self) -> "PreprocessingSpec":
        centered = self.style != "rgb" and not self.spp
        if centered and (self.canvas is None or self.img_size is None):
            raise ValueError(f"style {self.style!r} needs canvas and img_size")
        if not centered and (self.canvas is not None or self.img_size is not None):
            raise ValueError("canvas and img_size apply only to a centered signature style (not rgb, not spp)")
        if self.style == "rgb" and self.spp:
            raise ValueError("spp applies only to the signature styles wiwd and sigver")
        if centered and any(i > m for i, m in zip(self.input_size, self.img_size)):
            raise ValueError(f"input_size {self.input_size} must fit inside img_size {self.img_size}")
        return self


class NetworkSpec(_Strict):
    """What the upstream file holds (docs/MODEL_FACTS.md): declared, never guessed from a file name.

    The boolean fields are options of one architecture: each applies only where the family's
    facts list it (`Architecture.options`), beside what it means for that upstream file.
    """

    # One of the family's facts' ARCHITECTURES.
    architecture: str
    # The checkpoint holds a trained forgery head (SigNet-F), not the empty stub's.
    forgery_head: bool = False
    # The outputs are 2-d projections, not the embeddings.
    projection2d: bool = False

    def options(self) -> list[str]:
        """The boolean fields set to true."""
        return [name for name, value in self if value is True]


class VariantTolerance(_Strict):
    """How far a faster variant may be from the fp32 model (ONNX Runtime) on the validation inputs.

    min_cosine: per row of an embedding output (per sample for other outputs);
    max_abs_error: any element of any output; decision_agreement: share of decision logits whose
    sign agrees (only for a model with a `validation.decision_output`).
    """

    min_cosine: Annotated[float, Field(gt=0, le=1)]
    # at most 100: the variant's test vectors allow this plus the model's atol, and the package's
    # check-vectors refuses more (signature_onnx.vectors.MAX_VARIANT_ERROR)
    max_abs_error: Annotated[float, Field(gt=0, le=100)]
    decision_agreement: Annotated[float, Field(ge=0, le=1)] | None = None


class Int8DynamicSpec(VariantTolerance):
    op_types: Annotated[list[Literal["Conv", "MatMul", "Gemm"]], Field(min_length=1)] = ["MatMul", "Gemm"]
    per_channel: bool = False


class Int8StaticSpec(VariantTolerance):
    calibration_samples: Annotated[int, Field(ge=1, le=64)] = 8  # drawn signatures the ranges come from
    range_bits: Annotated[int, Field(ge=1, le=12)] = 4  # significant bits each range is rounded outward to
    per_channel: bool = True


class VariantsSpec(_Strict):
    """The faster variants to build (stage `derive`); a variant left out is not built."""

    optimized: VariantTolerance | None = None
    fp16: VariantTolerance | None = None
    int8_dynamic: Int8DynamicSpec | None = None
    int8_static: Int8StaticSpec | None = None

    def enabled(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class ModelSpec(_Strict):
    description: str
    # The ONNX file's model_version: raise it when a rebuild is meant to replace what users have.
    version: Annotated[int, Field(ge=1)] = 1
    family: str  # a folder of stages/families/ (known_families)
    network: NetworkSpec
    files: Annotated[list[str], Field(min_length=1)]
    source: SourceSpec
    onnx: OnnxSpec
    validation: ValidationSpec
    preprocessing: PreprocessingSpec
    variants: VariantsSpec = VariantsSpec()

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in known_families():
            raise ValueError(not_a_family(family))
        return family

    @field_validator("files")
    @classmethod
    def _relative_files(cls, files: list[str]) -> list[str]:
        for name in files:
            parts = PurePosixPath(name).parts
            if name.startswith("/") or "\\" in name or ".." in parts or not parts:
                raise ValueError(f"{name!r} must be a relative path inside the model folder")
        return files

    @model_validator(mode="before")
    @classmethod
    def _default_size_limit(cls, data: object) -> object:
        """A source without `max_bytes` gets its family's default (`MAX_BYTES` of its facts).

        Runs before the fields are checked: an unknown family is left to the `family` check."""
        if isinstance(data, dict) and isinstance(data.get("source"), dict) and data.get("family") in known_families():
            source = data["source"]
            if source.get("max_bytes") is None:
                data = {**data, "source": {**source, "max_bytes": family_facts(data["family"]).MAX_BYTES}}
        return data

    @property
    def architecture_facts(self) -> Architecture:
        """What the family's facts say of this entry's architecture (task, upstream, options)."""
        return family_facts(self.family).ARCHITECTURES[self.network.architecture]

    @property
    def task(self) -> str:
        """What the published model does for the `signature_onnx` package: clean, verify or embed."""
        return self.architecture_facts.task

    @model_validator(mode="after")
    def _architecture_of_family(self) -> "ModelSpec":
        known, network = family_facts(self.family).ARCHITECTURES, self.network
        if network.architecture not in known:
            raise ValueError(
                f"network.architecture {network.architecture!r} is not one of family {self.family}'s: {list(known)}"
            )
        allowed = known[network.architecture].options
        for option in network.options():
            if option not in allowed:
                raise ValueError(
                    f"network.{option} does not apply to family {self.family}'s architecture {network.architecture} "
                    f"(its options: {list(allowed)})"
                )
        return self

    @model_validator(mode="after")
    def _cross_references(self) -> "ModelSpec":
        outputs = {t.name for t in self.onnx.outputs}
        named = [*self.validation.embedding_outputs]
        if self.validation.decision_output:
            named.append(self.validation.decision_output)
        unknown = [n for n in named if n not in outputs]
        if unknown:
            raise ValueError(f"validation names outputs {unknown} that onnx.outputs does not declare")
        size = self.preprocessing.input_size
        first = self.onnx.inputs[0].shape
        fixed = first[1:3] if self.preprocessing.style == "rgb" else first[-2:]
        if not self.preprocessing.spp and all(isinstance(d, int) for d in fixed) and list(fixed) != list(size):
            raise ValueError(
                f"preprocessing.input_size {size} differs from the input {self.onnx.inputs[0].name}'s size {list(fixed)}"
            )
        for variant in self.variants.enabled():
            if getattr(self.variants, variant).decision_agreement is not None and not self.validation.decision_output:
                raise ValueError(f"variants.{variant}.decision_agreement: the model has no validation.decision_output")
        if self.source.kind == "url":
            missing = [f for f in self.files if f not in self.source.urls]
            if missing:
                raise ValueError(f"source.urls has no address for {missing}")
        return self


class Params(_Strict):
    models: dict[str, ModelSpec]

    @field_validator("models")
    @classmethod
    def _model_names(cls, models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
        for name in models:
            if not MODEL_NAME.match(name):
                raise ValueError(
                    f"model name {name!r} must match {MODEL_NAME.pattern} (lower case, digits, '_'; "
                    "no dots, which DVC reads as nesting in params paths)"
                )
        return models


# The sections of an entry a family block may give defaults for.
FAMILY_SECTIONS = ("onnx", "validation", "preprocessing", "variants")
# The sections every entry holds, even when the family's block gives the rest of them: the convert
# stage depends on exactly these keys of the entry (dvc.yaml), and DVC refuses a missing one.
ENTRY_SECTIONS = ("onnx", "preprocessing")


def deep_merge(defaults: object, entry: object) -> object:
    """`entry` over `defaults`: mappings merge key by key, anything else (a list, a number, null)
    in `entry` replaces the default; so `null` in an entry removes a default (e.g. a variant)."""
    if isinstance(defaults, dict) and isinstance(entry, dict):
        return {**defaults, **{key: deep_merge(defaults.get(key), value) for key, value in entry.items()}}
    return entry


def _checked_families(raw: dict, path: Path) -> dict[str, dict]:
    """The `families` block: known family -> mapping of FAMILY_SECTIONS, each a mapping, holding at
    least ENTRY_SECTIONS (the convert stage depends on them) and no opset (each entry's)."""
    families = raw.get("families", {})
    if not isinstance(families, dict):
        raise PipelineError(f"{path}: families: expected a mapping of family -> defaults")
    known = known_families()
    for family, block in families.items():
        if family not in known:
            raise PipelineError(f"{path}: families.{family}: {not_a_family(family)}")
        if not isinstance(block, dict):
            raise PipelineError(f"{path}: families.{family}: expected a mapping of sections")
        for section, value in block.items():
            if section not in FAMILY_SECTIONS:
                raise PipelineError(
                    f"{path}: families.{family}.{section}: a family gives defaults only for {', '.join(FAMILY_SECTIONS)}"
                )
            if not isinstance(value, dict):
                raise PipelineError(f"{path}: families.{family}.{section}: expected a mapping")
        for section in ENTRY_SECTIONS:
            if section not in block:
                raise PipelineError(
                    f"{path}: families.{family}.{section}: missing; every family block holds "
                    f"{' and '.join(ENTRY_SECTIONS)} (`{{}}` if empty), which the convert stage depends on (dvc.yaml)"
                )
        if "opset" in block["onnx"]:
            raise PipelineError(
                f"{path}: families.{family}.onnx.opset: the opset is each entry's (models.<name>.onnx.opset), "
                "never a family default"
            )
    return families


def _checked_entry(name: str, entry: object, path: Path) -> str:
    """The entry's family, after the checks the merge needs (one error line each)."""
    if not isinstance(entry, dict):
        raise PipelineError(f"{path}: models.{name}: expected a mapping of keys")
    family = entry.get("family")
    if not isinstance(family, str) or family not in known_families():
        raise PipelineError(f"{path}: models.{name}.family: {not_a_family(family)}")
    for section in ENTRY_SECTIONS:
        if not isinstance(entry.get(section), dict):
            state = "missing" if section not in entry else "expected a mapping"
            raise PipelineError(
                f"{path}: models.{name}.{section}: {state}; every entry holds its own "
                f"{' and '.join(ENTRY_SECTIONS)} (at least `onnx: {{opset: 17}}`), which the convert stage depends on "
                "(dvc.yaml); the rest may come from the family's block"
            )
    if "opset" not in entry["onnx"]:
        raise PipelineError(f"{path}: models.{name}.onnx.opset: missing; each entry names its opset")
    return family


def with_family_defaults(raw: dict, path: Path) -> dict:
    """The params with `families` folded into each model entry (deep_merge), ready for the schema.

    Every family a model names needs a block: the model's stages depend on `families.<family>`
    (dvc.yaml), which DVC refuses to read when it is missing.
    """
    families = _checked_families(raw, path)
    models = raw.get("models")
    if not isinstance(models, dict):
        return {key: value for key, value in raw.items() if key != "families"}
    merged = {}
    for name, entry in models.items():
        family = _checked_entry(name, entry, path)
        if family not in families:
            raise PipelineError(
                f"{path}: families.{family}: missing; model {name!r} names it and its stages depend on it "
                "(dvc.yaml): add the block, `{onnx: {}, preprocessing: {}}` if the family has no defaults"
            )
        merged[name] = deep_merge(families[family], entry)
    return {**{key: value for key, value in raw.items() if key != "families"}, "models": merged}


def _node(tree: object, parts: tuple) -> tuple[bool, object]:
    """(found, value) of the path `parts` in nested mappings and lists."""
    for part in parts:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and 0 <= part < len(tree):
            tree = tree[part]
        else:
            return False, None
    return True, tree


def _existing(merged: dict, location: tuple) -> tuple:
    """`location` cut to its longest prefix that exists in the merged params: pydantic appends the
    names of a union's alternatives (`constrained-int`, `str`), which are no keys."""
    for end in range(len(location), 0, -1):
        if _node(merged, location[:end])[0]:
            return location[:end]
    return location


def _written_at(raw: dict, location: tuple) -> str:
    """Where the value at `location` (a pydantic loc in the merged params) was written: the entry
    when it holds the path or replaced a list or value on it; else the family's block when only it
    holds the value; a map both hold is named in the entry, `with` the family's."""
    key = ".".join(str(part) for part in location) or "(top level)"
    if len(location) < 3 or location[0] != "models" or not isinstance(raw.get("models"), dict):
        return key
    entry = raw["models"].get(location[1])
    family = entry.get("family") if isinstance(entry, dict) else None
    families = raw.get("families")
    defaults = families.get(family) if isinstance(families, dict) and isinstance(family, str) else None
    in_defaults, default_value = _node(defaults, location[2:])
    if not in_defaults:
        return key
    family_key = ".".join(str(part) for part in ("families", family, *location[2:]))
    for end in range(3, len(location) + 1):
        found, value = _node(entry, location[2:end])
        if not found:  # the entry stops short: the family's block gave the rest
            return f"{key} (from {family_key})" if isinstance(default_value, dict) else family_key
        if not isinstance(value, dict):  # the entry's own value, or its list/value replacing the family's
            return key
    return f"{key} (with {family_key})" if isinstance(default_value, dict) else key  # a map both hold


def _describe(error: ValidationError, source: Path, raw: dict, merged: dict) -> str:
    """One line per place and message: an error in a family's block is one line, not one per model."""
    lines = [f"{source}: invalid parameters:"]
    for item in error.errors():
        location = tuple(item["loc"]) if item["type"] == "missing" else _existing(merged, tuple(item["loc"]))
        line = f"  {_written_at(raw, location)}: {item['msg']}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines)


# YAML 1.2's core schema, as ruamel.yaml (DVC's parser) resolves it: a float needs no dot and no
# exponent sign (`1e-07`, what DVC writes for `-S x=1e-7`), and only true/false are booleans
# (DVC writes `-S x=yes` as `yes`, the string "yes" in dvc.lock). Plain decimal ints read alike
# in 1.1 and 1.2, so PyYAML's int rule stays.
YAML_1_2_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
YAML_1_2_FLOAT = re.compile(
    r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def _yaml_1_2_resolvers() -> dict[str | None, list[tuple[str, re.Pattern[str]]]]:
    """PyYAML's safe implicit resolvers (first character -> rules) with 1.2's bool and float."""
    replaced = {
        "tag:yaml.org,2002:bool": (YAML_1_2_BOOL, "tTfF"),
        "tag:yaml.org,2002:float": (YAML_1_2_FLOAT, "-+0123456789."),
    }
    resolvers = {
        first: [(tag, rule) for tag, rule in rules if tag not in replaced]
        for first, rules in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    for tag, (rule, firsts) in replaced.items():
        for first in firsts:
            resolvers.setdefault(first, []).append((tag, rule))
    return resolvers


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading values as DVC does, so the schema checks what dvc.lock records."""

    yaml_implicit_resolvers = _yaml_1_2_resolvers()


def read_params_file(path: Path = PARAMS_FILE) -> dict:
    """The params file as parsed YAML, unchecked: the one reader of params.yaml."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=ParamsLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise PipelineError(f"{path}: not found; run from the project root") from None
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise PipelineError(f"{path}: nested too deeply to read (params are a few levels deep)") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping with a 'models' key")
    return raw


def merged_entry(name: str, path: Path = PARAMS_FILE) -> dict:
    """Model `name`'s raw entry with its family's defaults merged in, unchecked (for a caller that
    edits it before `ModelSpec.model_validate`)."""
    path = Path(path)
    return with_family_defaults(_one_model(read_params_file(path), name, path), path)["models"][name]


def _checked(raw: dict, path: Path) -> Params:
    """`raw` with its family defaults, checked against the schema; PipelineError naming every bad key."""
    merged = with_family_defaults(raw, path)
    try:
        return Params.model_validate(merged)
    except ValidationError as exc:
        raise PipelineError(_describe(exc, path, raw, merged)) from None


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Read and check the whole params file (every model, with each one's family facts); raise
    PipelineError naming the bad key."""
    path = Path(path)
    return _checked(read_params_file(path), path)


def model_spec(name: str, path: Path = PARAMS_FILE) -> ModelSpec:
    """The checked entry of one model; an unknown name lists the known ones.

    Only this entry is checked, so only its family's facts are loaded: a stage depends on its own
    params entry and its own family folder (dvc.yaml), never on another model's.
    """
    path = Path(path)
    return _checked(_one_model(read_params_file(path), name, path), path).models[name]


def _one_model(raw: dict, name: str, path: Path) -> dict:
    """The params reduced to model `name` and its family's block (another model's or family's
    mistake is not this model's stages' concern); an unknown name lists the known ones."""
    models = raw.get("models")
    if not isinstance(models, dict):
        return raw
    if name not in models:
        known = ", ".join(sorted(str(key) for key in models))
        raise PipelineError(f"{path}: no model {name!r} under 'models' (known: {known})")
    entry, families = models[name], raw.get("families")
    family = entry.get("family") if isinstance(entry, dict) else None
    if isinstance(families, dict) and isinstance(family, str) and family in families:
        raw = {**raw, "families": {family: families[family]}}
    return {**raw, "models": {name: entry}}
