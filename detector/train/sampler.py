"""The deterministic order of training: which images, at which size, in which batch.

Everything random in an epoch is derived from ``(seed, epoch, ...)`` alone: the shuffle,
the multi-scale size of each group of 10 steps, and (in the dataset) each image's
augmentation. So a run resumed at step k of epoch e sees exactly the batches an
uninterrupted run would, whatever happened before the kill, with any number of workers.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

MULTISCALE_EVERY = 10      # darknet redraws the input size every 10 batches


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0xD47A]).permutation(n)


def step_size(seed: int, epoch: int, step: int, sizes: Optional[Sequence[int]], base: int) -> int:
    if not sizes:
        return base
    rng = np.random.default_rng([seed, epoch, step // MULTISCALE_EVERY, 0x5CA1E])
    return int(sizes[int(rng.integers(0, len(sizes)))])


def steps_per_epoch(n: int, batch: int) -> int:
    return max(1, n // batch)


def epoch_plan(n: int, batch: int, accumulate: int, seed: int, epoch: int,
               sizes: Optional[Sequence[int]], base: int, rank: int = 0, world: int = 1,
               start_step: int = 0) -> List[List[Tuple[int, int, int]]]:
    """Micro-batches of ``(index, size, epoch)`` keys for this rank, in order, from
    ``start_step``. A step is ``accumulate`` consecutive micro-batches; the global batch of
    a step is split across ranks (rank r takes every world-th image)."""
    order = epoch_order(n, seed, epoch)
    plan = []
    for step in range(start_step, steps_per_epoch(n, batch)):
        size = step_size(seed, epoch, step, sizes, base)
        chunk = order[step * batch:(step + 1) * batch][rank::world]
        for part in np.array_split(chunk, accumulate):
            plan.append([(int(i), size, epoch) for i in part])
    return plan
