"""Typed plan ops: constructors validate, the plan file format is unchanged, plan checks name
the op, and every interpreter has a handler for every op type.

``data/all-ops.plan.safetensors`` is a plan file written by the code from before the ops were
typed (the op dicts lowering made then): a conv, an asymmetric max pool, a gather, depthwise
and pointwise convs, a relu conv, a reorg and a concat. It must load into the same plan, save
back to the same metadata, and give the same structure cache key."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np
import pytest

from detector.engine import plan_ops as ops
from detector.engine.plan import PLAN_KEY, Plan, load_plan, lower, plan_structure
from detector.engine.plan_ops import (OP_TYPES, Concat, Conv, Gather, MaxPool, PlanError, Reorg,
                                      op_from_dict)
from detector.errors import UserError
from detector.host import cache_key

HERE = os.path.dirname(os.path.abspath(__file__))
OLD_PLAN = os.path.join(HERE, "data", "all-ops.plan.safetensors")
# cache_key(plan_structure(plan)) of OLD_PLAN as the code before typed ops computed it (from
# the op dicts themselves): tuned forms and CPU-runtime choices stored under it stay valid.
OLD_STRUCTURE_KEY = "62b25117c486b42dd5f72edb"


def _metadata(path: str) -> str:
    from detector.io.checkpoint import read_safetensors
    return read_safetensors(path)[1][PLAN_KEY]


def _conv(**kw) -> Conv:
    fields = dict(name="layers.0", src=0, dst=1, weight="w", bias="b", size=3, stride=1,
                  pad=1, groups=1, act="leaky")
    fields.update(kw)
    return Conv(**fields)


# ---- the plan file format ----------------------------------------------------------------------

def test_a_plan_file_written_before_typed_ops_loads_unchanged(tmp_path):
    plan = load_plan(OLD_PLAN)
    assert [type(op) for op in plan.ops] == [Conv, MaxPool, Gather, Conv, Conv, MaxPool, Conv,
                                             Conv, Reorg, Concat, Conv]
    raw = json.loads(_metadata(OLD_PLAN))
    # the same dicts, keys in the same order, and the same structure key
    assert json.dumps([op.to_dict() for op in plan.ops]) == json.dumps(raw["ops"])
    assert cache_key(plan_structure(plan)) == OLD_STRUCTURE_KEY
    gather = plan.ops[2]
    assert gather.channels == (1, 1, 1, 2, 3, 3, 4, 4, 6, 7) and gather.layer == 2
    assert plan.ops[1].pad_before == 0 and plan.ops[1].pad_after == 1
    assert plan.ops[9].srcs == (9, 7) and plan.ops[7].act == "relu"
    assert [plan.conv_kind(op) for op in plan.ops if isinstance(op, Conv)] == \
        ["regular", "depthwise", "pointwise", "regular", "pointwise", "pointwise"]
    # saved again: byte-identical metadata
    again = str(tmp_path / "again.plan.safetensors")
    plan.save(again)
    assert _metadata(again) == _metadata(OLD_PLAN)


def test_the_old_plan_runs_the_same_on_onnx_runtime_and_the_kernel_engine(tmp_path):
    pytest.importorskip("onnxruntime")
    from detector.engine.kernel_engine import KernelEngine
    from detector.engine.runners.ort import OrtRunner
    plan = load_plan(OLD_PLAN)
    x = np.random.default_rng(0).random((1, 3, 32, 32), np.float32)
    want = OrtRunner(plan, cache_dir=str(tmp_path), threads=1)(x)
    with KernelEngine(plan, "emu", "fp32") as eng:
        got = np.array(eng(x))
    assert got.shape == want.shape == (1, 6, 8, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("model", ["yolov2-voc", "yolov2-tiny-voc-fastdsc"])
def test_every_lowered_op_round_trips_through_its_dict(model):
    from detector.models.params import init_params
    from detector.models.spec_yaml import load_spec
    spec = load_spec(model)
    plan = lower(spec, init_params(spec, 0), 64)
    for op in plan.ops:
        d = op.to_dict()
        assert list(d)[:3] == ["op", "name", "layer"] and d["op"] == op.KIND
        assert op_from_dict(json.loads(json.dumps(d))) == op


def test_op_from_dict_ignores_keys_no_op_has_and_needs_the_others():
    d = _conv().to_dict()
    assert op_from_dict(dict(d, note="x")) == _conv()
    del d["act"]
    with pytest.raises(PlanError, match=r"conv layers\.0.*no 'act'"):
        op_from_dict(d)
    hand = {"op": "reorg", "name": "r", "src": 0, "dst": 1, "stride": 2}   # no layer
    assert op_from_dict(hand).layer is None and op_from_dict(hand).to_dict() == hand


# ---- constructors ------------------------------------------------------------------------------

@pytest.mark.parametrize("make,fragment", [
    (lambda: _conv(src=-1), "src = -1"),
    (lambda: _conv(dst=0, src=0), "dst = 0"),
    (lambda: _conv(size=0), "size = 0"),
    (lambda: _conv(groups=True), "groups = True"),
    (lambda: _conv(stride=1.0), "stride = 1.0"),
    (lambda: _conv(act="swish"), "act = 'swish'"),
    (lambda: _conv(weight=3), "weight = 3"),
    (lambda: _conv(src=2, dst=1), r"buffers \[2\] -> 1 out of order"),
    (lambda: _conv(name=5), "name = 5"),
    (lambda: _conv(layer=-2), "layer = -2"),
    (lambda: MaxPool(name="p", src=0, dst=1, size=2, stride=2, pad_before=-1, pad_after=0),
     "pad_before = -1"),
    (lambda: Reorg(name="r", src=0, dst=1, stride=0), "stride = 0"),
    (lambda: Concat(name="c", srcs=[], dst=3), r"srcs = \[\]"),
    (lambda: Concat(name="c", srcs=[1, 5], dst=3), r"buffers \[1, 5\] -> 3 out of order"),
    (lambda: Gather(name="g", src=0, dst=1, channels=[0, -1]), "channel index -1"),
    (lambda: Gather(name="g", src=0, dst=1, channels=None), "non-empty list"),
])
def test_an_op_with_a_bad_field_cannot_be_built(make, fragment):
    with pytest.raises(PlanError, match=fragment) as e:
        make()
    assert isinstance(e.value, UserError) and isinstance(e.value, ValueError)
    assert str(e.value).startswith("plan op (") and "\n" not in str(e.value)


def test_ops_are_immutable_hashable_values():
    op = _conv()
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.src = 3
    g = Gather(name="g", src=0, dst=1, channels=[2, np.int64(0)])
    assert g.channels == (2, 0) and type(g.channels[1]) is int
    assert len({op, _conv(), g}) == 2
    assert dataclasses.replace(op, act="relu").act == "relu"


# ---- plan checks -------------------------------------------------------------------------------

def _tiny_plan(**changes) -> Plan:
    """input 3x8x8 -> conv 3x3 -> 4x8x8 -> maxpool 2/2 -> 4x4x4."""
    tensors = {"w": np.zeros((4, 3, 3, 3), np.float32), "b": np.zeros(4, np.float32)}
    pool = MaxPool(name="layers.1", src=1, dst=2, size=2, stride=2, pad_before=0, pad_after=0)
    fields = dict(size=8, channels=3, buffers=[(3, 8, 8), (4, 8, 8), (4, 4, 4)],
                  ops=[_conv(), pool], output=2, tensors=tensors, anchors=[(1.0, 1.0)],
                  classes=1, names=["x"])
    fields.update(changes)
    return Plan(**fields)


@pytest.mark.parametrize("changes,message", [
    (dict(buffers=[(3, 8, 8), (4, 8, 8)], output=1),
     r"plan op 1 \(maxpool layers\.1\): buffers \[1\] -> 2 out of order or range"),
    (dict(buffers=[(3, 8, 8), (4, 8, 8), (4, 3, 4)], output=1),
     r"plan op 1 \(maxpool layers\.1\): output buffer 2 is \[4, 3, 4\], the op makes "
     r"\[4, 4, 4\] from \[4, 8, 8\]"),
    (dict(tensors={"w": np.zeros((4, 3, 1, 1), np.float32), "b": np.zeros(4, np.float32)}),
     r"plan op 0 \(conv layers\.0\): weight must be \(4, 3, 3, 3\) and bias \(4,\)"),
    (dict(ops=[_conv(), {"op": "maxpool"}]), r"plan op 1: dict is not a plan op"),
    (dict(size=0), r"plan: input size 0"),
])
def test_plan_check_names_the_op(changes, message):
    _tiny_plan().check()
    with pytest.raises(PlanError, match=message):
        _tiny_plan(**changes).check()


def test_reorg_and_concat_checks():
    bufs = [(8, 4, 6), (32, 2, 3), (6, 4, 6)]
    Reorg(name="r", src=0, dst=1, stride=2).check(bufs, {})
    with pytest.raises(PlanError, match=r"reorg stride 2 does not fit buffer 6x4x6"):
        Reorg(name="r", src=2, dst=3, stride=2).check(bufs + [(24, 2, 3)], {})
    Concat(name="c", srcs=[0, 2], dst=3).check(bufs + [(14, 4, 6)], {})
    with pytest.raises(PlanError, match="differ in height or width"):
        Concat(name="c", srcs=[0, 1], dst=3).check(bufs + [(40, 4, 6)], {})


# ---- corrupt plan files: one line, the file and the op -----------------------------------------

@pytest.mark.parametrize("edit,message", [
    (lambda m: m["ops"][0].pop("src"), r"corrupt plan: op 0 \(conv layers\.0\.conv\): no 'src'"),
    (lambda m: m["ops"][1].update(op="launch_missiles"), r"corrupt plan: op 1: unknown op type "
                                                         r"'launch_missiles'"),
    (lambda m: m["ops"][3].update(groups=-10), r"corrupt plan: op 3 \(conv layers\.2\.dw\): "
                                               r"groups = -10"),
    (lambda m: m["ops"][9].update(dst=999), r"corrupt plan: op 9 \(concat layers\.8\): buffers "
                                            r"\[9, 7\] -> 999 out of order or range"),
    (lambda m: m["ops"][2]["channels"].__setitem__(0, 8),
     r"corrupt plan: op 2 \(gather layers\.2\.gather\): gather channel index 8"),
    (lambda m: m["ops"][8].update(stride=3), r"corrupt plan: op 8 \(reorg layers\.7\): reorg "
                                             r"stride 3 does not fit"),
    (lambda m: m["ops"][4].update(weight="layers.0.conv.weight"),
     r"corrupt plan: op 4 \(conv layers\.2\.pw\): weight must be"),
    (lambda m: m["ops"].__setitem__(0, [1, 2]), r"corrupt plan: op 0: unknown op type None"),
    (lambda m: m["buffers"][5].__setitem__(0, 1 << 31), r"corrupt plan: buffer shape"),
])
def test_a_corrupt_plan_file_is_one_user_error_naming_the_file_and_the_op(tmp_path, edit,
                                                                           message):
    from safetensors.numpy import load_file, save_file
    m = json.loads(_metadata(OLD_PLAN))
    edit(m)
    bad = str(tmp_path / "bad.plan")
    save_file(load_file(OLD_PLAN), bad, metadata={PLAN_KEY: json.dumps(m)})
    with pytest.raises(UserError) as e:
        load_plan(bad)
    text = str(e.value)
    assert text.startswith(bad + ": ") and "\n" not in text
    assert re.search(message, text), text


# ---- the interpreters dispatch on the op type --------------------------------------------------

def test_every_interpreter_handles_every_op_type():
    from detector.engine import launch, kernel_engine, onnx_graph, roofline
    from detector.engine.runners import torch_bf16
    every = set(OP_TYPES.values())
    assert set(onnx_graph._EMITTERS) == every
    assert set(launch._LAUNCHES) == every
    assert set(torch_bf16._STEPS) == every
    assert set(roofline._BYTES) == every
    assert set(kernel_engine._DEVICE_DATA) <= every
    # every activation a Conv accepts has a kernel code (the launches do not check it again)
    from detector.models.spec import ACTIVATIONS
    assert set(launch.ACT) == set(ACTIVATIONS)
    with pytest.raises(TypeError, match="not a plan op of a known type"):
        ops.handler(launch._LAUNCHES, {"op": "conv"})
