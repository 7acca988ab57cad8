"""Pick, call by call, the fastest of a few equivalent ways to run the network.

On an idle machine ONNX Runtime is fastest with one spinning thread per physical core. When
other processes want the same cores, each parallel op waits for its slowest thread and
spinning threads steal the time the others need: one thread is then up to twice as fast.
Load changes while a detector runs, so the choice is made from the latencies it sees:

- every mode runs ``WARMUP`` times first; then the mode with the lowest median latency (over
  its last ``WINDOW`` calls) runs;
- every ``interval`` calls one other mode is probed once; while probes keep losing, the
  interval doubles (up to ``MAX_INTERVAL``), so on a steady machine they cost next to nothing;
  when a probe wins, that mode takes over and the interval drops back to ``MIN_INTERVAL``;
  it drops back too when the running mode's latency moves by ``SHIFT`` (load came or went);
- another mode wins only when its median is more than ``MARGIN`` below the running mode's:
  one lucky probe against a few slow calls (another process woke up, a cache was cold) does
  not switch an idle machine to one thread for the next ``interval`` calls (without the
  margin, interleaved benchmark cases could hold a small model on one thread for whole
  rounds, well slower than on all cores).

All modes compute the same outputs (same graph, same kernels); only the threading differs.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable, List, Sequence

WARMUP = 3
WINDOW = 5
MIN_INTERVAL = 16
MAX_INTERVAL = 256
SHIFT = 0.25            # best mode's latency moving this much triggers early probes
MARGIN = 0.10           # a mode must be this much faster than the running one to take over


class AdaptivePicker:
    def __init__(self, modes: Sequence[Callable[[], None]], names: Sequence[str],
                 clock: Callable[[], float] = time.perf_counter):
        self.modes: List[Callable[[], None]] = list(modes)
        self.clock = clock
        self.names = list(names)
        self.recent = [deque(maxlen=WINDOW) for _ in self.modes]
        self.best = 0
        self.interval = MIN_INTERVAL
        self.since_probe = 0
        self.next_probe = 1
        self.calls = [0] * len(self.modes)
        self.level = 0.0                # best median when last probed

    def _median(self, i: int) -> float:
        r = self.recent[i]
        return sorted(r)[len(r) // 2] if r else float("inf")     # a few values: no numpy

    def _choose(self) -> int:
        for i in range(len(self.modes)):
            if self.calls[i] < WARMUP:
                return i
        if len(self.modes) > 1 and self.since_probe >= self.interval:
            self.since_probe = 0
            i = self.next_probe % len(self.modes)
            if i == self.best:
                i = (i + 1) % len(self.modes)
            self.next_probe = i + 1
            return i
        return self.best

    def __call__(self) -> None:
        i = self._choose()
        probe = i != self.best and self.calls[i] >= WARMUP
        t = self.clock()
        self.modes[i]()
        dt = self.clock() - t
        if probe:                      # a fresh measurement replaces what conditions were
            self.recent[i].clear()
        self.recent[i].append(dt)
        self.calls[i] += 1
        self.since_probe += 1
        best = min(range(len(self.modes)), key=self._median)
        if best != self.best and self.calls[self.best] >= WARMUP and \
                self._median(best) > (1.0 - MARGIN) * self._median(self.best):
            best = self.best                  # not clearly faster: keep the running mode
        if probe:
            self.interval = MIN_INTERVAL if best == i else min(MAX_INTERVAL, self.interval * 2)
            self.level = self._median(best)
        elif self.level and abs(self._median(best) / self.level - 1.0) > SHIFT:
            self.interval = MIN_INTERVAL      # the machine changed: look around again soon
            self.level = self._median(best)
        self.best = best

    @property
    def current(self) -> str:
        return self.names[self.best]

    def stats(self) -> dict:
        return {"current": self.current, "interval": self.interval,
                "modes": {n: {"calls": c, "median_ms": self._median(i) * 1e3}
                          for i, (n, c) in enumerate(zip(self.names, self.calls))}}
