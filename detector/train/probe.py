"""The first steps of a timed run, measured without changing the run.

A run with a time budget needs to know what its steps cost on this machine before it fixes
its schedule (train/budget.py) and, where the weights are pretrained, its recipe
(train/recipe.py). :func:`time_steps` times training steps (forward, loss, backward and an
optimizer step at learning rate 0) on the run's own first batches; :func:`unchanged` puts the
model's weights, BN statistics and the random generators back afterwards, so the run that
follows computes exactly what it would have computed without them.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

WARMUP_STEPS = 2        # first steps not timed (allocations, kernel selection, loader start)
MIN_STEPS = 5           # timed steps at least
MAX_SECONDS = 10.0      # timed seconds at most
BUDGET_SHARE = 0.01     # timed seconds wanted: this share of the budget, up to MAX_SECONDS
LIMIT_SHARE = 0.1       # on a machine too slow for MIN_STEPS: stop after this share of it


@dataclass(frozen=True)
class StepTiming:
    started: float              # time.time() when the first step started
    seconds_per_pixel: float    # seconds of one step per input pixel (size x size)
    steps: int                  # steps timed (after the warm-up)
    seconds: float              # their seconds

    def step_seconds(self, size: int) -> float:
        """Expected seconds of one step at input size ``size``."""
        return self.seconds_per_pixel * size * size


def time_steps(step: Callable[[], int], stop: Callable[[bool], bool],
               budget: float) -> StepTiming:
    """Time ``step()`` (one training step; returns its input size) until ``stop(enough)``
    says so (``stop`` lets the processes of a multi-process run agree), where ``enough``:
    MIN_STEPS steps and BUDGET_SHARE of the ``budget`` seconds (at most MAX_SECONDS) timed
    after the warm-up, or one step timed and LIMIT_SHARE of the budget gone."""
    wanted = min(MAX_SECONDS, BUDGET_SHARE * budget)
    started = time.time()
    seconds, pixels, timed, k = 0.0, 0, 0, 0
    while True:
        t = time.perf_counter()
        size = step()
        k += 1
        if k > WARMUP_STEPS:
            seconds += time.perf_counter() - t
            pixels, timed = pixels + size * size, timed + 1
        late = timed >= 1 and time.time() - started >= LIMIT_SHARE * budget
        if stop(late or (timed >= MIN_STEPS and seconds >= wanted)):
            break
    return StepTiming(started, seconds / max(pixels, 1), timed, seconds)


@contextmanager
def unchanged(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block the model may train; afterwards its weights, BN statistics, its
    gradients (none) and torch's random generators are those of before."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        model.load_state_dict(saved)
        for p in model.parameters():
            p.grad = None
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
