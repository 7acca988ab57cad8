"""Darknet .cfg/.weights: reader/writer twins, byte-exact round trips, darknet's semantics.

The torch layers against darknet's arithmetic are in test_darknet_torch.py."""
import os

import numpy as np
import pytest

from conftest import REPO, assert_user_error, random_state, run_cli
from detector.errors import ConfigError, UserError
from detector.io.darknet_cfg import cfg_text, spec_from_cfg, write_cfg
from detector.io.darknet_weights import (DarknetHeader, expected_floats, read_weights,
                                         weights_bytes, write_weights)
from detector.models.params import init_params
from detector.models.spec_yaml import load_spec, zoo_names

DATA = os.path.join(REPO, "tests", "data")
MINI = os.path.join(DATA, "mini-yolov2.cfg")
TINY = os.path.join(DATA, "yolov2-tiny-voc.cfg")


def test_reads_darknets_own_tiny_cfg_as_the_zoo_model():
    spec = spec_from_cfg(TINY)
    zoo = load_spec("yolov2-tiny-voc")
    assert spec.layers == zoo.layers
    assert spec.region == zoo.region
    assert spec.train.steps == [-1, 100, 20000, 30000] and spec.train.scales == [.1, 10, .1, .1]
    # darknet's own file size for yolov2-tiny-voc: 15,867,885 floats after the header
    assert expected_floats(spec) == 15867885


def test_yolov2_voc_weight_count_matches_darknets_file():
    # yolov2-voc.weights is 202,704,264 bytes: a 20-byte header + 50,676,061 floats.
    assert expected_floats(load_spec("yolov2-voc")) * 4 + 20 == 202704264


@pytest.mark.parametrize("name", ["yolov2-voc", "yolov2-tiny-voc", "yolov2-voc-fastdsc",
                                  "yolov2-tiny-voc-fastdsc"])
def test_cfg_round_trip_for_every_zoo_model(tmp_path, name):
    spec = load_spec(name)
    path = str(tmp_path / "m.cfg")
    write_cfg(spec, path)
    back = spec_from_cfg(path)
    assert back.region == spec.region and back.classes == spec.classes
    assert back.shapes() == [s for s in _darknet_shapes(spec)]
    write_cfg(back, str(tmp_path / "again.cfg"))
    assert open(path).read().splitlines()[1:] == open(tmp_path / "again.cfg").read().splitlines()[1:]


def _darknet_shapes(spec):
    """Output shapes per darknet layer: a FastDSC block is two darknet convs."""
    from detector.models.params import conv_params
    from detector.models.spec import FastDSC
    out = []
    shapes = spec.shapes()
    mids = {c.layer: c for c in conv_params(spec)}
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, FastDSC):
            first = [c for c in conv_params(spec) if c.layer == i][0]
            out.append((first.cout, shapes[i][1], shapes[i][2]))
        out.append(shapes[i])
    del mids
    return out


@pytest.mark.parametrize("major,minor,header_bytes", [(0, 2, 20), (0, 1, 16), (1, 0, 20)])
def test_weights_round_trip_is_byte_identical(tmp_path, major, minor, header_bytes):
    spec = spec_from_cfg(MINI)
    state = random_state(spec)
    first = tmp_path / "a.weights"
    write_weights(str(first), spec, state, DarknetHeader(major, minor, 0, 123456))
    assert os.path.getsize(first) == header_bytes + 4 * expected_floats(spec)
    header, back = read_weights(str(first), spec)
    assert header == DarknetHeader(major, minor, 0, 123456)
    write_weights(str(tmp_path / "b.weights"), spec, back, header)
    assert first.read_bytes() == (tmp_path / "b.weights").read_bytes()


def test_hand_built_weights_file_is_read_in_darknets_order(tmp_path):
    """A file laid out by hand: conv(3->4, 3x3, BN) then conv(4->6, 1x1, bias), 32-bit seen."""
    cfg = tmp_path / "two.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
                   "[maxpool]\nsize=32\nstride=32\n"
                   "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n"
                   "[region]\nanchors=1,1\nclasses=1\nnum=1\ncoords=4\nsoftmax=1\n")
    biases1, scales1, mean1, var1 = np.arange(4) + 1, np.arange(4) + 10, np.arange(4) + 20, np.arange(4) + 30
    w1 = np.arange(4 * 3 * 9) * 0.01
    biases2, w2 = np.arange(6) + 100, np.arange(6 * 4) * -0.5
    body = np.concatenate([biases1, scales1, mean1, var1, w1, biases2, w2]).astype("<f4")
    header = np.array([0, 1, 5], "<i4").tobytes() + np.array([77], "<u4").tobytes()
    (tmp_path / "two.weights").write_bytes(header + body.tobytes())
    spec = spec_from_cfg(str(cfg))
    h, state = read_weights(str(tmp_path / "two.weights"), spec)
    assert h == DarknetHeader(0, 1, 5, 77)
    np.testing.assert_array_equal(state["layers.0.bn.bias"], biases1)
    np.testing.assert_array_equal(state["layers.0.bn.weight"], scales1)
    np.testing.assert_array_equal(state["layers.0.bn.running_mean"], mean1)
    np.testing.assert_array_equal(state["layers.0.bn.running_var"], var1)
    np.testing.assert_allclose(state["layers.0.conv.weight"], w1.reshape(4, 3, 3, 3), rtol=1e-6)
    np.testing.assert_array_equal(state["layers.2.conv.bias"], biases2)
    np.testing.assert_array_equal(state["layers.2.conv.weight"], w2.reshape(6, 4, 1, 1))


def test_weights_that_do_not_match_the_cfg_name_expected_and_actual_counts(tmp_path):
    spec = spec_from_cfg(MINI)
    data = weights_bytes(spec, random_state(spec))
    want = expected_floats(spec)
    (tmp_path / "short.weights").write_bytes(data[:-400])
    with pytest.raises(UserError, match=rf"truncated.*{want - 100} floats.*needs {want} floats"):
        read_weights(str(tmp_path / "short.weights"), spec)
    (tmp_path / "long.weights").write_bytes(data + b"\0" * 40)
    with pytest.raises(UserError, match=rf"too large.*{want + 10} floats.*needs {want}"):
        read_weights(str(tmp_path / "long.weights"), spec)
    (tmp_path / "odd.weights").write_bytes(data[:-2])
    with pytest.raises(UserError, match=r"\+ 2 bytes"):
        read_weights(str(tmp_path / "odd.weights"), spec)
    (tmp_path / "tiny.weights").write_bytes(data[:10])
    with pytest.raises(UserError, match="no header"):
        read_weights(str(tmp_path / "tiny.weights"), spec)


def test_weights_for_another_cfg_are_refused(tmp_path):
    spec = spec_from_cfg(MINI)
    write_weights(str(tmp_path / "m.weights"), spec, random_state(spec))
    other = spec_from_cfg(TINY)
    with pytest.raises(UserError, match="wrong cfg"):
        read_weights(str(tmp_path / "m.weights"), other)


@pytest.mark.parametrize("text,fragment", [
    ("[net]\nwidth=64\nheight=64\n[yolo]\nmask=0\n", "unknown section [yolo]"),
    ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=abc\n",
     "line 5 [convolutional] filters: expected an integer"),
    ("[net]\nwidth=64\nheight=64\n[reorg]\n",
     "line 4 [reorg]: missing key 'stride': the default 1 is not supported here; allowed: >= 2"),
    ("[net]\nwidth=64\nheight=64\n[route]\nlayers=-1,x\n", "layers: expected comma-separated integers"),
    ("[net]\nwidth=64\nheight=64\n\n[convolutional]\nbinary=1\n", "line 6 [convolutional] binary: is not"),
    ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=8\nsize=3\nactivation=mish\n",
     "'mish' is not supported"),
    ("[net]\nwidth=64\nheight=48\n", "square input"),
    ("width=64\n[net]\n", "before the first [section]"),
    ("[net]\nwidth=64\nheight=64\n", "no layers after [net]"),
    ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=8\nsize=1\nactivation=linear\n"
     "[region]\nanchors=1,1\nclasses=2\nnum=1\n", "num*(classes+5) = 1*(2+5) = 7 filters, got 8"),
    ("[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
     "[region]\nanchors=1,1,2\nclasses=2\nnum=1\n", "3 values for num=1"),
    ("[net]\nwidth=64\nheight=64\n[route]\nlayers=-3\n[convolutional]\nfilters=6\nsize=1\n"
     "activation=linear\n[region]\nanchors=1,1\nclasses=1\nnum=1\n", "route index -3"),
    ("\x00\xff\xfe garbage", "not a text file"),
])
def test_bad_cfgs_are_config_errors_naming_the_line_or_key(tmp_path, text, fragment):
    p = tmp_path / "bad.cfg"
    p.write_bytes(text.encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        spec_from_cfg(str(p))
    assert fragment in str(e.value) and str(p) in str(e.value)


def test_written_cfg_is_what_darknet_expects_for_fastdsc(tmp_path):
    """A FastDSC block becomes a grouped 3x3 conv + a 1x1 conv; routes are renumbered."""
    text = cfg_text(load_spec("yolov2-voc-fastdsc"))
    sections = [s.split("]")[0] for s in text.split("\n[")[1:]]
    # [net] + 31 spec layers, 14 of them FastDSC blocks (two darknet convs each) + [region]
    assert len(sections) == 1 + 31 + 14 + 1 and sections[0] == "net" and sections[-1] == "region"
    # the route's -9 skips 5 FastDSC blocks on the way back: -14 in darknet's numbering
    assert "groups=64\nsize=3" in text and "layers=-14\n" in text
    spec = spec_from_cfg(_write(tmp_path, text))
    zoo_state = init_params(load_spec("yolov2-voc-fastdsc"))
    # the same numbers flow through darknet's layout: write with one spec, read with the other
    write_weights(str(tmp_path / "f.weights"), load_spec("yolov2-voc-fastdsc"), zoo_state)
    _, state = read_weights(str(tmp_path / "f.weights"), spec)
    assert sum(v.size for v in state.values()) == sum(v.size for v in zoo_state.values())


def _write(tmp_path, text):
    p = tmp_path / "x.cfg"
    p.write_text(text)
    return str(p)


def test_every_zoo_name_is_listed():
    assert zoo_names() == ["yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc", "yolov2-voc",
                           "yolov2-voc-fastdsc"]


def test_cli_truncated_weights_and_bad_cfg_exit_2_with_one_line(tmp_path):
    spec = spec_from_cfg(MINI)
    (tmp_path / "t.weights").write_bytes(weights_bytes(spec, random_state(spec))[:1000])
    img = tmp_path / "x.jpg"
    import cv2
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    proc = run_cli("detect", img, "--weights", tmp_path / "t.weights", "--cfg", MINI)
    assert_user_error(proc, "truncated", "t.weights")
    (tmp_path / "bad.cfg").write_text("[net]\nwidth=64\nheight=64\n[shortcut]\nfrom=-3\n")
    proc = run_cli("detect", img, "--weights", tmp_path / "t.weights", "--cfg", tmp_path / "bad.cfg")
    assert_user_error(proc, "bad.cfg", "unknown section [shortcut]")


def test_backbone_files_load_partially_at_layer_boundaries_only(tmp_path):
    """darknet19_448.conv.23-style files hold the first layers of a network."""
    from detector.models.params import conv_params
    spec = spec_from_cfg(MINI)
    state = random_state(spec)
    data = weights_bytes(spec, state)
    first_two = sum((4 if c.bn else 1) * c.cout + int(np.prod(c.weight_shape))
                    for c in conv_params(spec)[:2])
    (tmp_path / "b.weights").write_bytes(data[:20 + 4 * first_two])
    _, part = read_weights(str(tmp_path / "b.weights"), spec, partial=True)
    assert set(part) == {k for k in state if k.startswith(("layers.0.", "layers.2."))}
    np.testing.assert_array_equal(part["layers.2.conv.weight"], state["layers.2.conv.weight"])
    (tmp_path / "c.weights").write_bytes(data[:20 + 4 * (first_two + 3)])
    with pytest.raises(UserError, match="truncated"):
        read_weights(str(tmp_path / "c.weights"), spec, partial=True)
