"""params.yaml is checked on load: each mistake fails with the key path and what was expected."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_step

from stages.core.errors import PipelineError
from stages.core.params import load_params, merged_entry, model_spec, read_params_file


def good_params() -> dict:
    return read_params_file(REPO / "params.yaml")


def write(tmp_path: Path, params: dict | str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params))
    return path


def error_for(tmp_path: Path, params: dict | str) -> str:
    with pytest.raises(PipelineError) as caught:
        load_params(write(tmp_path, params))
    return str(caught.value)


def test_repository_params_load():
    params = load_params(REPO / "params.yaml")
    assert {"cleaning", "siamese"} <= set(params.models)
    assert params.models["cleaning"].source.kind == "builtin"
    assert [t.name for t in params.models["siamese"].onnx.outputs] == ["output0", "output1", "output2"]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda p: p["models"]["cleaning"].update(colour="red"),
            "models.cleaning.colour: Extra inputs are not permitted",
        ),
        # a quoted number (safe_dump quotes what YAML 1.1 reads as a float) stays a string
        (lambda p: p["models"]["cleaning"]["validation"].update(atol="1.5e-4"), "models.cleaning.validation.atol"),
        (lambda p: p["models"]["cleaning"]["validation"].update(samples=2.5), "models.cleaning.validation.samples"),
        (lambda p: p["models"]["cleaning"]["source"].update(kind="ftp"), "models.cleaning.source.kind"),
        (lambda p: p["models"]["cleaning"].pop("onnx"), "models.cleaning.onnx: missing; every entry holds"),
        (lambda p: p["models"]["cleaning"]["onnx"].update(opset=9), "models.cleaning.onnx.opset"),
        (
            lambda p: p["models"]["cleaning"]["onnx"]["inputs"][0].update(dtype="float64"),
            "models.cleaning.onnx.inputs.0.dtype",
        ),
        (lambda p: p["models"]["cleaning"].update(family="caffe"), "models.cleaning.family"),
        (lambda p: p["models"]["cleaning"].update(files=["../escape.pb"]), "models.cleaning.files"),
        (lambda p: p["models"]["siamese"]["validation"].update(decision_output="logit"), "does not declare"),
        (lambda p: p["models"]["cleaning"]["source"].update(kind="url"), "needs 'urls"),
        (lambda p: p["models"].update({"signet.pkl": p["models"]["siamese"]}), "no dots"),
        (lambda p: p["models"]["siamese"]["onnx"]["outputs"][1].update(name="output0"), "repeated"),
        (
            lambda p: p["models"]["siamese"]["source"].update(
                urls={"convnet_best_loss.pt": "https://bob:pw@host.example/f.pt"}
            ),
            "carries a user name or password",
        ),
        (
            lambda p: p["models"]["siamese"]["source"].update(
                urls={"convnet_best_loss.pt": "https://host.example/f.pt?token=abc"}
            ),
            "look like credentials",
        ),
        (
            lambda p: p["models"]["siamese"]["source"].update(urls={"convnet_best_loss.pt": "ftp://host.example/f.pt"}),
            "is not an http(s) address",
        ),
        (
            lambda p: p["models"]["cleaning"].pop("preprocessing"),
            "models.cleaning.preprocessing: missing; every entry holds",
        ),
        (
            lambda p: p["models"]["siamese"]["preprocessing"].update(style="opencv"),
            "models.siamese.preprocessing.style",
        ),
        (lambda p: p["models"]["siamese"]["preprocessing"].pop("img_size"), "style 'sigver' needs canvas and img_size"),
        (
            lambda p: p["models"]["siamese"]["preprocessing"].update(input_size=[150, 221]),
            "differs from the input input0's size [150, 220]",
        ),
        (lambda p: p["models"]["signet"]["preprocessing"].update(img_size=[140, 200]), "must fit inside img_size"),
        (
            lambda p: p["models"]["signet_pth"]["preprocessing"].update(input_divisor=256),
            "models.signet_pth.preprocessing.input_divisor",
        ),
        (lambda p: p["models"]["cleaning"]["preprocessing"].update(spp=True), "spp applies only"),
        (lambda p: p["models"]["signet"].pop("network"), "models.signet.network: Field required"),
        (
            lambda p: p["models"]["signet"]["network"].update(architecture="signet_spp"),
            "is not one of family lasagne_signet's",
        ),
        (
            lambda p: p["models"]["cleaning"]["network"].update(architecture="signet"),
            "is not one of family keras_cleaning's",
        ),
        (
            lambda p: p["models"]["signet"]["network"].update(forgery_head=True),
            "network.forgery_head does not apply to family lasagne_signet's architecture signet (its options: [])",
        ),
        (
            lambda p: p["models"]["signet_pth"]["network"].update(projection2d=True),
            "network.projection2d does not apply to family torch_sigver's architecture signet (its options: ['forgery_head'])",
        ),
        (lambda p: p["models"]["siamese"]["network"].update(projection2d="yes"), "models.siamese.network.projection2d"),
        (lambda p: p["models"]["siamese"]["network"].update(head="probs"), "models.siamese.network.head: Extra inputs"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, edit, expected: str):
    params = copy.deepcopy(good_params())
    edit(params)
    message = error_for(tmp_path, params)
    assert expected in message
    assert str(tmp_path / "params.yaml") in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda p: p.pop("families"), "families.keras_cleaning: missing; model 'cleaning' names it"),
        (lambda p: p["families"].pop("torch_sigver"), "families.torch_sigver: missing; model 'siamese' names it"),
        (lambda p: p["families"].update(caffe={}), "families.caffe: 'caffe' is not a model family"),
        (lambda p: p["models"]["signet"].pop("onnx"), "models.signet.onnx: missing; every entry holds its own onnx"),
        (lambda p: p["models"]["signet"]["onnx"].pop("opset"), "models.signet.onnx.opset: missing; each entry names"),
        (lambda p: p["models"]["signet"].update(onnx=[]), "models.signet.onnx: expected a mapping; every entry holds"),
        (
            lambda p: p["families"]["lasagne_signet"]["onnx"].update(opset=18),
            "families.lasagne_signet.onnx.opset: the opset",
        ),
        (
            lambda p: p["families"]["keras_cleaning"].pop("onnx"),
            "families.keras_cleaning.onnx: missing; every family block",
        ),
        (lambda p: p["models"].update(signet=["a list"]), "models.signet: expected a mapping of keys"),
        (lambda p: p.update(families=["lasagne_signet"]), "families: expected a mapping of family -> defaults"),
        (
            lambda p: p["families"].update(keras_cleaning=None),
            "families.keras_cleaning: expected a mapping of sections",
        ),
        (lambda p: p["families"]["lasagne_signet"].update(source={}), "families.lasagne_signet.source: a family gives"),
        (lambda p: p["families"]["lasagne_signet"].update(variants=[]), "families.lasagne_signet.variants: expected a"),
        # a bad value in the family's block is named there, not in the five entries it reaches
        (
            lambda p: p["families"]["lasagne_signet"]["validation"].update(rtol="none"),
            "  families.lasagne_signet.validation.rtol: Input should be a valid number",
        ),
        # the entry's value wins over the family's, so its own bad value is named in the entry
        (
            lambda p: p["models"]["signet"]["validation"].update(stroke_samples=-1),
            "  models.signet.validation.stroke_samples: Input should be greater than or equal to 0",
        ),
        # a rule over a section both hold names both
        (
            lambda p: p["models"]["siamese"]["preprocessing"].pop("img_size"),
            "  models.siamese.preprocessing (with families.torch_sigver.preprocessing): Value error",
        ),
    ],
)
def test_family_defaults_are_checked_and_errors_name_where_a_value_was_written(tmp_path: Path, edit, expected: str):
    params = copy.deepcopy(good_params())
    edit(params)
    assert expected in error_for(tmp_path, params)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # a list the entry wrote replaced the family's whole: the entry is named
        (
            lambda p: p["models"]["signet_spp_300dpi"]["onnx"]["inputs"][0].pop("source_name"),
            ["models.signet_spp_300dpi.onnx.inputs.0.source_name: Field required"],
        ),
        # a value only the family's block holds, reaching five models: named there, once; pydantic's
        # union alternatives (int or str) are one place with two messages
        (
            lambda p: p["families"]["lasagne_signet"]["onnx"]["outputs"][0]["shape"].__setitem__(1, 0),
            [
                "families.lasagne_signet.onnx.outputs.0.shape.1: Input should be greater than or equal to 1",
                "families.lasagne_signet.onnx.outputs.0.shape.1: Input should be a valid string",
            ],
        ),
        (
            lambda p: p["families"]["lasagne_signet"]["validation"].update(colour=1),
            ["families.lasagne_signet.validation.colour: Extra inputs are not permitted"],
        ),
        # a bad family: one line, not the sections its block would have given
        (lambda p: p["models"]["signet"].update(family=3), ["models.signet.family: 3 is not a model family"]),
        (lambda p: p["models"]["signet"].pop("family"), ["models.signet.family: None is not a model family"]),
    ],
)
def test_each_mistake_is_one_line_naming_where_it_was_written(tmp_path: Path, edit, expected: list[str]):
    params = copy.deepcopy(good_params())
    edit(params)
    header, *lines = error_for(tmp_path, params).splitlines()
    lines = [line.strip() for line in lines] or [header.split(": ", 1)[1]]  # "<path>: <key>: <what>" alone
    assert len(lines) == len(expected), lines
    for line, words in zip(lines, expected):
        assert line.startswith(words), (line, words)


def test_a_model_is_not_refused_for_another_familys_block(tmp_path: Path):
    """A stage checks its model's entry and family block only (it depends on nothing else)."""
    params = copy.deepcopy(good_params())
    params["families"]["torch_sigver"]["validation"] = []
    path = write(tmp_path, params)
    assert model_spec("signet", path).validation.samples == 8
    with pytest.raises(PipelineError, match="families.torch_sigver.validation: expected a mapping"):
        model_spec("siamese", path)


def test_unknown_entry_and_deep_nesting_are_one_error_line(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"no model 'nope'"):
        merged_entry("nope", write(tmp_path, good_params()))
    assert "nested too deeply" in error_for(tmp_path, "models: " + "[" * 2000 + "]" * 2000)


def test_an_entry_wins_over_its_family_key_by_key(tmp_path: Path):
    """Maps merge, a list or a value replaces, null removes: what the merged entries hold."""
    params = copy.deepcopy(good_params())
    params["models"]["signet"]["variants"] = {"int8_dynamic": None, "fp16": {"max_abs_error": 0.5}}
    params["models"]["signet"]["validation"]["embedding_outputs"] = ["fc2"]
    models = load_params(write(tmp_path, params)).models
    signet, sibling = models["signet"], models["signet_f_lambda0_95"]
    assert signet.variants.enabled() == ["fp16"] and sibling.variants.enabled() == ["fp16", "int8_dynamic"]
    assert (signet.variants.fp16.max_abs_error, signet.variants.fp16.min_cosine) == (0.5, 0.999)
    assert signet.validation.embedding_outputs == ["fc2"] and sibling.validation.embedding_outputs == ["fc1", "fc2"]
    assert signet.validation.samples == sibling.validation.samples == 8  # from the family
    assert models["signet_spp_300dpi"].onnx.inputs[0].shape == ["batch", 1, "height", "width"]
    assert models["signet_spp_300dpi"].onnx.outputs == sibling.onnx.outputs


@pytest.mark.parametrize(
    ("query", "refused"),
    [
        ("token=abc", True),
        ("api_key=abc", True),
        ("X-Amz-Signature=abc", True),
        ("access_token=x", True),
        ("id=1AbC&export=download", False),
        ("resourcekey=0-abc", False),
    ],
)
def test_secret_looking_url_queries_are_refused(tmp_path: Path, query: str, refused: bool):
    params = copy.deepcopy(good_params())
    params["models"]["siamese"]["source"].update(urls={"convnet_best_loss.pt": f"https://host.example/f.pt?{query}"})
    if refused:
        assert "look like credentials" in error_for(tmp_path, params)
    else:
        load_params(write(tmp_path, params))


def test_not_yaml_and_not_mapping(tmp_path: Path):
    assert "not valid YAML" in error_for(tmp_path, "models: [unclosed")
    assert "expected a mapping" in error_for(tmp_path, "- just a list")


def test_unknown_model_lists_known(tmp_path: Path):
    with pytest.raises(PipelineError, match=r"no model 'nope'.*cleaning"):
        model_spec("nope", write(tmp_path, good_params()))


def test_stage_reports_bad_params_in_one_line_without_traceback(project: Path):
    params = good_params()
    params["models"]["cleaning"]["validation"]["atol"] = "tight"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    result = run_step(project, "fetch", "cleaning", check=False)
    assert result.returncode == 1
    assert "models.cleaning.validation.atol" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data").exists()


def test_help_describes_the_stage():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "stages.validate", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    assert "model" in out.stdout and "--params" in out.stdout and "ONNX Runtime" in out.stdout
