"""Learning-rate policies: darknet's burn-in + steps as fractions of the run (yolov2-voc.cfg's
numbers, computed by hand) and the cosine alternative."""
from __future__ import annotations

import pytest

from detector.models.spec_yaml import load_spec
from detector.train.schedule import LRSchedule

TOTAL = 80200 * 64          # yolov2-voc.cfg: max_batches 80200 of batch 64, in images


def voc(policy="steps"):
    return LRSchedule.from_spec(load_spec("yolov2-voc").train, TOTAL, policy=policy)


def test_darknet_steps_at_the_cfg_batch_numbers():
    s = voc()
    base = 0.001                                         # yolov2-voc.cfg learning_rate
    assert s(0) == 0.0
    assert s(500 * 64) == pytest.approx(base * 0.5 ** 4)      # half-way through burn_in=1000
    assert s(1000 * 64) == pytest.approx(base)
    assert s(39999 * 64) == pytest.approx(base)
    assert s(40000 * 64) == pytest.approx(base * 0.1)         # steps=40000,60000 scales=.1,.1
    assert s(60000 * 64) == pytest.approx(base * 0.01)
    assert s(TOTAL) == pytest.approx(base * 0.01)


def test_cosine_keeps_burn_in_then_falls_smoothly_to_the_steps_final_rate():
    steps, cos = voc(), voc("cosine")
    for b in (0, 250, 999):
        assert cos(b * 64) == steps(b * 64)
    burn = 1000 * 64
    mid = burn + (TOTAL - burn) // 2
    assert cos(burn) == pytest.approx(0.001)
    assert cos(mid) == pytest.approx(0.001 * (0.01 + 0.99 * 0.5), rel=1e-4)
    assert cos(TOTAL) == pytest.approx(0.001 * 0.01)
    values = [cos(burn + i * (TOTAL - burn) // 50) for i in range(51)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    # more learning in the last quarter than the steps allow
    assert cos(70000 * 64) > steps(70000 * 64)


def test_unknown_policy_is_refused_with_the_allowed_values():
    with pytest.raises(ValueError, match="steps, cosine"):
        voc("linear")
