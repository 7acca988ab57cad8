"""A benchmark case: one model at one input size, run one way, and its measured times.

A case builder (``cases.CASES``) returns a :class:`Timed` (the callable and what it is) or
raises :class:`Skip` with the reason the case cannot run here; ``cases.build_cases`` turns
it into a :class:`Case`, which the rounds fill with times.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, List, Optional

# The benchmark frame: a synthetic street scene (``engine.frames.synthetic_frame``).
FRAME_W, FRAME_H, FRAME_SEED = 640, 480, 0


def log(msg: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Skip(Exception):
    """The case cannot run here; the message says why (it goes to the JSON ``skipped``)."""


@dataclass
class Timed:
    """What a case builder returns. ``fn`` runs the case once (and returns only when the
    device is done); ``info`` gives extra row fields after the rounds; ``layers(repeat)``
    gives per-op times (``--layers``); ``device``: ``cpu`` or ``gpu``."""
    fn: Callable[[], object]
    note: str
    info: Optional[Callable[[], dict]] = None
    layers: Optional[Callable[..., List[dict]]] = None
    device: str = "cpu"


@dataclass
class Case:
    model: str
    size: int
    impl: str
    family: str                     # the regular network this model derives from
    fastdsc: bool
    gflops: float
    ours: bool
    timed: Timed = field(repr=False)
    times: List[List[float]] = field(default_factory=list, repr=False)   # seconds, per round

    @property
    def fn(self) -> Callable[[], object]:
        return self.timed.fn

    @property
    def note(self) -> str:
        return self.timed.note

    @property
    def device(self) -> str:
        return self.timed.device

    @property
    def scope(self) -> str:
        return "frame" if self.impl == "frame" else "network"

    @property
    def key(self) -> str:
        return f"{self.model}@{self.size}/{self.impl}"
