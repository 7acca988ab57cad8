"""Adaptive threading: the picker follows the faster mode as costs change (a fake clock, no
timing), and the ORT runner's modes give identical outputs."""
from __future__ import annotations

import numpy as np
import pytest

from detector.engine import adaptive
from detector.engine.adaptive import AdaptivePicker


class FakeModes:
    """Modes whose 'latency' is set by the test; a fake clock advances by it."""

    def __init__(self, costs):
        self.costs = list(costs)
        self.now = 0.0
        self.log = []

    def clock(self):
        return self.now

    def mode(self, i):
        def run():
            self.now += self.costs[i]
            self.log.append(i)
        return run


def make(costs):
    f = FakeModes(costs)
    p = AdaptivePicker([f.mode(i) for i in range(len(costs))], [f"m{i}" for i in range(len(costs))],
                       clock=f.clock)
    return f, p


def test_warms_up_every_mode_then_runs_the_fastest():
    f, p = make([3.0, 1.0])
    for _ in range(2 * adaptive.WARMUP):
        p()
    assert f.log.count(0) == adaptive.WARMUP and f.log.count(1) == adaptive.WARMUP
    f.log.clear()
    for _ in range(100):
        p()
    assert p.current == "m1"
    assert f.log.count(0) <= 100 // adaptive.MIN_INTERVAL      # only probes
    assert f.log.count(1) >= 90


def test_probes_back_off_on_a_steady_machine():
    f, p = make([1.0, 2.0])
    for _ in range(3000):
        p()
    assert p.interval == adaptive.MAX_INTERVAL
    f.log.clear()
    for _ in range(2000):
        p()
    assert f.log.count(1) <= 2000 // adaptive.MAX_INTERVAL + 1


def test_follows_load_changes():
    f, p = make([1.0, 2.0])             # idle: the multi-threaded mode wins
    for _ in range(500):
        p()
    assert p.current == "m0"
    f.costs = [4.0, 2.0]                # busy machine: the single thread wins now
    for _ in range(3 * adaptive.MIN_INTERVAL + 2 * adaptive.WINDOW):
        p()
    assert p.current == "m1"
    f.costs = [1.0, 2.0]                # idle again
    for _ in range(4 * adaptive.MIN_INTERVAL + 2 * adaptive.WINDOW):
        p()
    assert p.current == "m0"
    stats = p.stats()
    assert stats["current"] == "m0" and set(stats["modes"]) == {"m0", "m1"}


def test_single_mode():
    f, p = make([1.0])
    for _ in range(50):
        p()
    assert f.log == [0] * 50


def test_ort_modes_identical(cache_dir):
    pytest.importorskip("onnxruntime")
    from detector.api import read_model
    from detector.engine.runners.ort import OrtRunner
    from detector.host import physical_cores
    from detector.engine.plan import lower
    model = read_model("random:yolov2-tiny-voc-fastdsc")
    plan = lower(model.spec, model.state, 64, model.names)
    r = OrtRunner(plan, cache_dir=cache_dir)
    x = np.random.default_rng(0).random((1, 3, 64, 64), np.float32)
    if physical_cores() == 1:
        assert r.picker is None
        return
    assert len(r.sessions) == 2 and r.picker is not None
    outs = [r(x).copy() for _ in range(2 * adaptive.WARMUP + 2)]   # both modes run in warm-up
    assert set(r.picker.calls) != {0}
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])
    assert OrtRunner(plan, cache_dir=cache_dir, threads=1).picker is None


def test_a_mode_that_is_barely_faster_does_not_take_over():
    # two modes within the margin: the running (first, multi-threaded) one stays and probes
    # back off; a clearly faster mode still takes over (test_follows_load_changes)
    f, p = make([1.0, 0.95])
    for _ in range(500):
        p()
    assert p.current == "m0"
    assert p.interval == adaptive.MAX_INTERVAL
    assert f.log.count(1) < 500 // adaptive.MIN_INTERVAL
