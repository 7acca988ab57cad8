"""Darknet's other YOLOv2-era sections: [dropout] (identity at inference), [avgpool],
[softmax] and [cost], read, run, written and read back; darknet's Darknet-19 classifier cfgs
load, and their weights seed a detector's backbone. The darknet binary's own outputs for
these layers are checked in test_darknet_reference.py."""
import os

import numpy as np
import pytest

from conftest import random_state
from darknet_binary import DARKNET_DATA
from detector.errors import ConfigError, UserError
from detector.io.darknet_cfg import cfg_text, spec_from_cfg, write_cfg
from detector.io.darknet_weights import expected_floats, read_weights, write_weights
from detector.models.spec import AvgPool, Conv, Cost, Dropout, MaxPool, ModelSpec, Softmax
from detector.models.spec_yaml import load_spec, spec_from_dict

DARKNET_CFG = os.path.join(os.path.dirname(DARKNET_DATA), "cfg")
needs_darknet_cfgs = pytest.mark.skipif(
    not os.path.isdir(DARKNET_CFG), reason="darknet's cfgs are not here (apt-get install darknet)")


def classifier(size=64):
    return ModelSpec("cls", [Conv(8, 3), MaxPool(2, 2), Dropout(0.25), Conv(10, 1, bn=False,
                                                                         act="linear"),
                             AvgPool(), Softmax(groups=2, temperature=2.0), Cost("sse", 2.0)],
                     None, 10, size=size)


def test_sections_write_and_read_back(tmp_path):
    spec = classifier()
    text = cfg_text(spec)
    for section in ("[dropout]\nprobability=0.25", "[avgpool]", "[softmax]\ngroups=2\n"
                    "temperature=2", "[cost]\ntype=sse\nscale=2"):
        assert section in text, section
    assert "[region]" not in text
    write_cfg(spec, str(tmp_path / "c.cfg"))
    back = spec_from_cfg(str(tmp_path / "c.cfg"))
    assert back.layers == spec.layers and back.region is None and back.classes == 10
    write_cfg(back, str(tmp_path / "d.cfg"))
    assert (tmp_path / "c.cfg").read_text().splitlines()[1:] == \
        (tmp_path / "d.cfg").read_text().splitlines()[1:]
    again = spec_from_dict(spec.to_dict())
    assert again.layers == spec.layers and again.region is None


def test_layers_have_no_weights_and_keep_the_file_byte_identical(tmp_path):
    spec = classifier()
    with_out = ModelSpec("c2", [Conv(8, 3), MaxPool(2, 2), Conv(10, 1, bn=False, act="linear")],
                         None, 10, size=64)
    assert expected_floats(spec) == expected_floats(with_out)
    state = random_state(spec)
    write_weights(str(tmp_path / "a.weights"), spec, state)
    _, back = read_weights(str(tmp_path / "a.weights"), spec)
    write_weights(str(tmp_path / "b.weights"), spec, back)
    assert (tmp_path / "a.weights").read_bytes() == (tmp_path / "b.weights").read_bytes()


@pytest.mark.parametrize("text,fragment", [
    ("[dropout]\nprobability=1.5\n", "[dropout] probability: 1.5 is too large"),
    ("[softmax]\ntree=x.tree\n", "softmax layer over a tree"),
    ("[softmax]\ngroups=3\n", "groups=3 must divide"),
    ("[cost]\ntype=hinge\n", "'hinge' is not allowed"),
    ("[dropout]\ndropblock=1\n", "DropBlock"),
])
def test_bad_sections_name_the_line_and_key(tmp_path, text, fragment):
    p = tmp_path / "bad.cfg"
    p.write_text("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=10\nsize=1\n"
                 "activation=linear\n[avgpool]\n" + text)
    with pytest.raises(ConfigError, match=None) as e:
        spec_from_cfg(str(p))
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_torch_runs_the_sections_as_darknet_defines_them():
    torch = pytest.importorskip("torch")
    from detector.models.yolov2 import YOLOv2, load_state
    spec = classifier()
    state = random_state(spec)
    model = load_state(YOLOv2(spec), state).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        feat = model.layers[3](model.layers[2](model.layers[1](model.layers[0](x))))
    assert out.shape == (2, 10, 1, 1)
    pooled = feat.mean(dim=(2, 3)).reshape(2, 2, 5) / 2.0       # avgpool, then /temperature
    want = torch.softmax(pooled, dim=2).reshape(2, 10, 1, 1)      # a softmax per group
    torch.testing.assert_close(out, want)
    model.train()                                    # dropout only acts in training
    assert not torch.equal(model.layers[2](torch.ones(1, 8, 4, 4)), torch.ones(1, 8, 4, 4))


def test_a_detector_with_dropout_lowers_to_the_same_plan_as_without(tmp_path):
    from detector.engine.plan import lower
    base = load_spec("yolov2-tiny-voc").replace(size=96)
    layers = list(base.layers)
    with_dropout = base.replace(layers=layers[:-1] + [Dropout(0.5)] + layers[-1:])
    state = random_state(base)
    renamed = {k.replace(f"layers.{len(layers) - 1}.", f"layers.{len(layers)}."): v
               for k, v in state.items()}
    a, b = lower(base, state), lower(with_dropout, renamed)
    assert [op.KIND for op in a.ops] == [op.KIND for op in b.ops]
    assert a.buffers == b.buffers
    with pytest.raises(UserError, match="classifier"):
        lower(classifier(), random_state(classifier()))


@needs_darknet_cfgs
@pytest.mark.parametrize("name,size,floats", [("darknet19.cfg", 256, 20856776),
                                              ("darknet19_448.cfg", 448, 20856776)])
def test_darknet19_classifier_cfgs_load(name, size, floats):
    # floats: darknet19_448.conv.23's 19,831,776 (its first 18 convolutions) + the
    # 1024 -> 1000 classifier convolution's 1,025,000
    spec = spec_from_cfg(os.path.join(DARKNET_CFG, name))
    assert spec.region is None and spec.classes == 1000 and spec.size == size
    assert [layer.type for layer in spec.layers[-3:]] == ["conv", "avgpool", "softmax"]
    assert expected_floats(spec) == floats


@needs_darknet_cfgs
def test_darknet19_weights_seed_a_detectors_backbone(tmp_path):
    """darknet19_448's weights (written by our writer) with its cfg start yolov2-voc's
    training: its first 23 layers (18 convolutions) load, the head starts random."""
    pytest.importorskip("torch")
    from detector.train.initial import initial_model
    from detector.train.options import TrainOptions
    cfg = os.path.join(DARKNET_CFG, "darknet19_448.cfg")
    spec = spec_from_cfg(cfg)
    state = random_state(spec)
    write_weights(str(tmp_path / "d19.weights"), spec, state)
    opts = TrainOptions(data="unused", out=str(tmp_path / "run"), model="yolov2-voc",
                        weights=str(tmp_path / "d19.weights"), cfg=cfg, img_size=128)
    det_spec, model, note, start = initial_model(opts, ["a", "b", "c"])
    assert start == "backbone" and det_spec.classes == 3
    got = model.state_dict()
    for i in (0, 2, 22):
        key = f"layers.{i}.conv.weight"
        if key in state:
            np.testing.assert_array_equal(got[key].numpy(), state[key])
    assert not np.array_equal(got["layers.23.conv.weight"].numpy().shape,
                              state["layers.23.conv.weight"].shape)
    with pytest.raises(Exception, match="classifier"):
        initial_model(TrainOptions(data="unused", out=str(tmp_path / "r2"),
                                   weights=str(tmp_path / "d19.weights"), cfg=cfg), ["a"])
