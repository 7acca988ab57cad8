"""Model specs: reading (zoo names, YAML, mappings), the checks that need the whole network,
and errors that name the file and the key, or the parameter (never a command-line flag)."""
from __future__ import annotations

import copy

import pytest
import yaml

from detector.cli import flag_for
from detector.errors import ConfigError, ParamError
from detector.models.checks import MAX_SIZE, check_input_size
from detector.models.spec import Conv, FastDSC, MaxPool, Reorg, Route
from detector.models.spec_yaml import load_spec, spec_from_dict, zoo_names

MINI = {
    "name": "mini", "input": {"size": 64}, "classes": 2,
    "layers": [{"type": "conv", "filters": 8, "size": 3},
               {"type": "maxpool", "size": 2, "stride": 2},
               {"type": "fastdsc", "filters": 16},
               {"type": "reorg", "stride": 2},
               {"type": "route", "layers": [-1]},
               {"type": "conv", "filters": 14, "size": 1, "bn": False, "act": "linear"}],
    "region": {"anchors": [[1, 1], [2, 2]]},
}


def mini(**changes) -> dict:
    data = copy.deepcopy(MINI)
    data.update(changes)
    return data


def test_every_layer_type_is_read_into_its_dataclass():
    spec = spec_from_dict(mini())
    assert [type(layer) for layer in spec.layers] == [Conv, MaxPool, FastDSC, Reorg, Route, Conv]
    assert spec.layers[2].order == "dw_pw" and spec.layers[4].layers == [-1]
    assert spec.shapes()[-1] == (14, 16, 16)


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_specs_survive_their_dict_form(name):
    spec = load_spec(name)
    assert spec_from_dict(spec.to_dict()) == spec


def test_spec_yaml_files_load_like_zoo_names(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(mini()))
    assert load_spec(str(path)) == spec_from_dict(mini())


def _with_layer(i, **keys) -> dict:
    data = mini()
    data["layers"][i] = dict(data["layers"][i], **keys)
    return data


@pytest.mark.parametrize("data,where,fragment", [
    (_with_layer(0, type="deconv"), "layers[0].type", "'deconv' is not allowed"),
    (_with_layer(0, dilation=2), "layers[0].dilation", "unknown key"),
    (_with_layer(0, pad=9), "layers[0].pad", "too large"),
    (_with_layer(2, order="pw_dw", terms=[1] * 8), "layers[2].terms", "need order dw_pw"),
    (_with_layer(2, terms=[10] * 8), "layers[2].terms", "integers from 0 to 9"),
    (_with_layer(2, terms=[1] * 7), "layers[2].terms", "7 counts for 8 input channels"),
    (_with_layer(4, layers=[]), "layers[4].layers", "non-empty list"),
    (_with_layer(4, layers=[-9]), "layers[4]", "route index -9"),
    (_with_layer(5, filters=15), "layers[5]", "num*(classes+5) = 2*(2+5) = 14 filters, got 15"),
    (mini(input={"size": 100}), "input.size", "not a multiple of 32"),
    (mini(input={"size": 8192}), "input.size", "too large"),
    (mini(names=["a"]), "names", "expected 2 class names"),
    (mini(region={"anchors": [[1, -1]]}), "region.anchors", "[width, height] pairs > 0"),
    (mini(train={"steps": [1, 2], "scales": [0.1]}), "train.scales", "one scale per step"),
    (mini(layers=[]), "layers", "at least one layer"),
    (mini(colour="red"), "colour", "unknown key"),
])
def test_bad_specs_name_the_file_and_the_key(data, where, fragment):
    with pytest.raises(ConfigError) as e:
        spec_from_dict(data, "m.yaml")
    assert str(e.value).startswith(f"m.yaml: {where}: "), str(e.value)
    assert fragment in str(e.value)


def test_a_network_too_large_for_memory_is_refused_before_anything_is_allocated():
    data = mini(layers=[{"type": "conv", "filters": 65536, "size": 15}] * 3
                + [{"type": "conv", "filters": 14, "size": 1}])
    with pytest.raises(ConfigError, match="weights: more than"):
        spec_from_dict(data, "huge.yaml")


@pytest.mark.parametrize("size", [33, 0, 16, MAX_SIZE + 32, True, 416.0, None])
def test_input_size_errors_name_the_parameter_and_the_cli_renders_the_flag(size):
    with pytest.raises(ParamError) as e:
        check_input_size(size)
    assert e.value.param == "img_size" and "--" not in str(e.value)
    assert str(e.value).startswith(f"img_size={size!r}: must be a multiple of 32")
    assert e.value.render(flag_for(e.value.param)).startswith(f"--img-size {size}: ")
    with pytest.raises(ParamError) as e:
        check_input_size(size, "final_size")
    assert e.value.render(flag_for(e.value.param)).startswith(f"--final-size {size}: ")


@pytest.mark.parametrize("size", [32, 416, MAX_SIZE])
def test_valid_input_sizes_pass_through(size):
    assert check_input_size(size) == size
