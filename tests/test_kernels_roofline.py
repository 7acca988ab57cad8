"""Roofline predictions for the zoo models on a TX2."""
from __future__ import annotations

import pytest

from detector.engine.plan_ops import Concat
from detector.engine.roofline import TX2, frame_ms, op_bytes, predict, summary_table, zoo_plan
from detector.models.spec_yaml import zoo_names


@pytest.mark.parametrize("name", zoo_names())
def test_roofline_per_op_and_frame(name):
    plan = zoo_plan(name, 416)
    c32, c16 = predict(plan, "fp32"), predict(plan, "fp16")
    assert len(c32) == len(plan.ops)
    assert sum(c.flops for c in c32) == plan.total_flops()
    for a, b in zip(c32, c16):
        assert a.bytes == 2 * b.bytes and a.ms >= b.ms > 0 or a.flops == a.bytes == 0
        assert a.ms * 1e-3 >= max(a.flops / TX2.fp32_flops, a.bytes / TX2.bandwidth) * 0.999
    assert 0 < frame_ms(c16) < frame_ms(c32)


def test_fastdsc_is_predicted_faster_and_concat_is_free():
    assert frame_ms(predict(zoo_plan("yolov2-voc-fastdsc"))) < frame_ms(predict(zoo_plan("yolov2-voc")))
    plan = zoo_plan("yolov2-voc")
    concat = [op for op in plan.ops if isinstance(op, Concat)]
    assert concat and op_bytes(plan, concat[0], "fp32", aliased=concat[0].srcs) == 0
    assert "yolov2-tiny-voc-fastdsc" in summary_table(["yolov2-tiny-voc-fastdsc"], 416)
