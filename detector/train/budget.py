"""A run's length fitted to a wall-clock budget (``TrainOptions.time``, minutes).

The trainer measures what a run costs on this machine before its schedule starts: seconds
per step at the training size(s) and at the final size, per validation, and per epoch end
(the files it writes). :func:`fit_budget` then finds the most steps whose run, with its
validations and epoch ends, fits in the seconds left. The last epoch may be partial. The
fit is made once and kept in the training state, so a resumed run continues the same
schedule; a run that falls behind its estimate anyway is stopped at the budget by the
trainer (:func:`past_deadline`), with its last validation and checkpoints still inside it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

VALIDATIONS = 4         # validations of a timed run when val_every is not set


@dataclass(frozen=True)
class Costs:
    """Seconds of the parts of a run, as measured on this machine."""
    step: float                 # one step at the training size(s)
    final_step: float           # one step at the final size (= step without one)
    validation: float           # one validation, with the checkpoint it writes
    epoch_end: float            # the files every epoch end writes


@dataclass(frozen=True)
class Fit:
    steps: int                  # optimizer steps of the whole run
    epochs: int                 # epochs they make (the last one possibly partial)
    val_every: int
    seconds: float              # what the run is expected to take


def epochs_of(steps: int, epoch_steps: int) -> int:
    return max(1, -(-steps // epoch_steps))


def validations(epochs: int, val_every: int) -> int:
    """Validations of a run: every ``val_every`` epochs, and after the last."""
    return epochs // val_every + (1 if epochs % val_every else 0)


def auto_val_every(epochs: int) -> int:
    return max(1, math.ceil(epochs / VALIDATIONS))


def run_seconds(steps: int, epoch_steps: int, costs: Costs, final_epochs: int = 0,
                val_every: Optional[int] = None) -> float:
    """Expected seconds of a run of ``steps`` steps."""
    epochs = epochs_of(steps, epoch_steps)
    every = val_every or auto_val_every(epochs)
    final = max(0, steps - max(0, epochs - final_epochs) * epoch_steps) if final_epochs else 0
    return ((steps - final) * costs.step + final * costs.final_step +
            validations(epochs, every) * costs.validation + epochs * costs.epoch_end)


def fit_budget(seconds: float, epoch_steps: int, costs: Costs, final_epochs: int = 0,
               val_every: Optional[int] = None) -> Optional[Fit]:
    """The longest run that is expected to end within ``seconds``, or None when not even
    one step and its validation fit."""
    if epoch_steps < 1 or costs.step <= 0:
        raise ValueError(f"epoch_steps {epoch_steps} and costs.step {costs.step}: must be > 0")

    def cost(n: int) -> float:
        return run_seconds(n, epoch_steps, costs, final_epochs, val_every)

    if cost(1) > seconds:
        return None
    lo, hi = 1, max(2, int(seconds / costs.step) + 2)   # cost(lo) fits, cost(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if cost(mid) <= seconds:
            lo = mid
        else:
            hi = mid
    epochs = epochs_of(lo, epoch_steps)
    return Fit(steps=lo, epochs=epochs, val_every=val_every or auto_val_every(epochs),
               seconds=cost(lo))


def past_deadline(elapsed: float, budget: float, costs: Costs) -> bool:
    """Whether a run ``elapsed`` seconds in must stop now to validate and write its files
    within ``budget``."""
    return elapsed + costs.validation + costs.epoch_end > budget
