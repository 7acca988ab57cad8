"""Property-based tests of the darknet parsers: whatever bytes a user hands us, the cfg and
weights readers either return a valid model or raise a one-line ConfigError/UserError —
never another exception, never unbounded work."""
from __future__ import annotations

import os
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, random_state
from detector.errors import UserError
from detector.io.darknet_cfg import cfg_text, spec_from_cfg
from detector.io.darknet_weights import read_weights, weights_bytes

MINI = os.path.join(REPO, "tests", "data", "mini-yolov2.cfg")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

SECTIONS = ["[net]", "[convolutional]", "[maxpool]", "[route]", "[reorg]", "[region]",
            "[yolo]", "[conv", "[]"]
KEYS = ["width", "height", "channels", "filters", "size", "stride", "pad", "padding",
        "groups", "activation", "batch_normalize", "layers", "anchors", "classes", "num",
        "coords", "softmax", "steps", "scales", "burn_in", "binary", "reverse", "mask"]
VALUES = st.one_of(st.integers(-5, 5000).map(str), st.sampled_from(
    ["leaky", "linear", "mish", "-1,-4", "1,2,3", "", "abc", "1e9", "nan", "0.5", "-9", "3,3"]),
    st.text(max_size=8))


def _cfg_lines():
    line = st.one_of(st.sampled_from(SECTIONS),
                     st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
                     st.sampled_from(["# comment", ";x", "", "garbage line", "=", "  pad = 1 "]))
    return st.lists(line, max_size=60)


def _check(text_or_bytes):
    with tempfile.NamedTemporaryFile("wb", suffix=".cfg", delete=False) as f:
        f.write(text_or_bytes if isinstance(text_or_bytes, bytes) else text_or_bytes.encode())
    try:
        spec = spec_from_cfg(f.name)
    except UserError as e:
        msg = str(e)
        assert f.name in msg and "\n" not in msg
        return None
    finally:
        os.unlink(f.name)
    c, h, w = spec.shapes()[-1]
    # a detector's head has num*(classes+5) channels; a classifier (no region) outputs classes
    assert (c if spec.region else c * h * w) == spec.num_outputs
    return spec


@SETTINGS
@given(_cfg_lines())
def test_random_cfgs_parse_or_fail_with_one_line(lines):
    _check("\n".join(lines))


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes_as_cfg(data):
    _check(data)


@SETTINGS
@given(st.data())
def test_mutated_real_cfg(data):
    lines = open(MINI).read().splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        if "=" in lines[i]:
            k = lines[i].split("=")[0]
            lines[i] = f"{k}={data.draw(VALUES)}"
        else:
            lines[i] = data.draw(st.sampled_from(SECTIONS + ["", "x=1"]))
    spec = _check("\n".join(lines))
    if spec is not None:             # whatever parsed also writes back and re-reads the same
        again = _check(cfg_text(spec))
        assert again is not None and again.shapes() == spec.shapes()


_SPEC = spec_from_cfg(MINI)
_GOOD = weights_bytes(_SPEC, random_state(_SPEC))


@SETTINGS
@given(st.integers(0, len(_GOOD) + 64), st.binary(max_size=64),
       st.sampled_from([0, 1, 2, 1000, -1, 2 ** 31 - 1]))
def test_weights_cut_padded_or_with_odd_headers(cut, tail, major):
    data = bytearray(_GOOD[:cut] + (tail if cut >= len(_GOOD) else b""))
    if len(data) >= 4:
        data[0:4] = np.array([major], "<i4").tobytes()
    with tempfile.NamedTemporaryFile("wb", suffix=".weights", delete=False) as f:
        f.write(bytes(data))
    try:
        header, state = read_weights(f.name, _SPEC)
        assert len(data) == header.nbytes + 4 * sum(v.size for v in state.values())
    except UserError as e:
        assert f.name in str(e) and "\n" not in str(e)
    finally:
        os.unlink(f.name)


@SETTINGS
@given(st.integers(0, len(_GOOD) - 21), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_non_finite_weights_are_refused(pos, value):
    data = bytearray(_GOOD)
    at = 20 + (pos // 4) * 4
    data[at:at + 4] = np.array([value], "<f4").tobytes()
    with tempfile.NamedTemporaryFile("wb", suffix=".weights", delete=False) as f:
        f.write(bytes(data))
    try:
        try:
            read_weights(f.name, _SPEC)
            raise AssertionError("accepted NaN/inf weights")
        except UserError as e:
            assert "NaN" in str(e) or "infinity" in str(e)
    finally:
        os.unlink(f.name)
