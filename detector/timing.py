"""Interleaved timing: how ``detector bench`` and the runtime choices compare callables.

Machines are noisy (other processes, frequency changes, a neighbour on the same core), so
two things are never timed one after the other. Every callable runs a few times per round,
the order of the callables is shuffled each round, and comparisons are taken round by round
as ratios (the median over rounds), so noise that hits a round hits every candidate in it.
"""
from __future__ import annotations

import random
import time
from typing import Callable, Dict, List, Mapping, Optional, Union

import numpy as np

Times = Dict[str, List[List[float]]]     # key -> rounds -> seconds per call


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def calls_per_round(fn: Callable[[], object], warmup: int, target_s: float,
                    most: int = 10) -> int:
    """Warm ``fn`` up with ``warmup`` calls (at least one) and return how many calls fill
    about ``target_s`` seconds (1 to ``most``)."""
    fastest = min(timed(fn) for _ in range(max(1, warmup)))
    return int(min(most, max(1, round(target_s / max(fastest, 1e-6)))))


def time_interleaved(fns: Mapping[str, Callable[[], object]], rounds: int = 5,
                     iters: Union[int, Mapping[str, int]] = 3, warmup: int = 2, seed: int = 0,
                     settle_s: float = 0.0,
                     between: Optional[Callable[[int, float], None]] = None) -> Times:
    """Run each callable ``iters`` times per round (an int, or one count per key), in a
    shuffled order each round; returns the seconds of every call grouped by round, so ratios
    can be taken round by round.

    ``warmup`` untimed calls of each come first. ``settle_s``: a pause before each
    callable's calls (worker threads of the previous one stop spinning). ``between(r,
    seconds)`` runs after round ``r`` (sampling the machine, logging progress)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    counts = {k: (iters[k] if isinstance(iters, Mapping) else iters) for k in fns}
    rng = random.Random(seed)
    out: Times = {k: [] for k in fns}
    for r in range(rounds):
        keys = list(fns)
        rng.shuffle(keys)
        t0 = time.perf_counter()
        for k in keys:
            if settle_s:
                time.sleep(settle_s)
            f = fns[k]
            out[k].append([timed(f) for _ in range(max(1, counts[k]))])
        if between is not None:
            between(r, time.perf_counter() - t0)
    return out


def round_ratio(a: List[List[float]], b: List[List[float]], stat=np.min) -> float:
    """Median over rounds of stat(a in the round) / stat(b in the round). The default, the
    fastest call of each round, is the estimate least disturbed by a busy machine."""
    return float(np.median([stat(x) / stat(y) for x, y in zip(a, b)]))


def round_wins(a: List[List[float]], b: List[List[float]], stat=np.min) -> float:
    """Fraction of the rounds in which ``a`` was faster than ``b``."""
    return float(np.mean([stat(x) < stat(y) for x, y in zip(a, b)]))
