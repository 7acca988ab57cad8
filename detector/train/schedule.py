"""Darknet's learning-rate policy (burn-in, then steps), measured in images seen.

``yolov2-voc.cfg`` says: batch 64, burn_in 1000 batches with power 4, steps 40000 and 60000
of max_batches 80200, scales .1 and .1. We keep those as fractions of the whole run, so a
run of any length (``--epochs``) follows the same curve: burn-in over the first
1000/80200 of the images, x0.1 after 40000/80200 of them, and so on.

``policy="cosine"`` (``detector train --schedule cosine``) keeps the burn-in and replaces the
steps by a cosine from the base rate down to the steps' final rate (base x the product of the
scales, x0.01 for yolov2-voc) at the end of the run. Runs cut short by a time budget learn
more from it: with the steps a quarter of the run trains at 1 % of the rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List


POLICIES = ("steps", "cosine")


@dataclass
class LRSchedule:
    base_lr: float
    total_images: int
    burn_in_frac: float = 0.0
    step_fracs: List[float] = None
    scales: List[float] = None
    power: float = 4.0
    policy: str = "steps"

    @classmethod
    def from_spec(cls, train, total_images: int, base_lr: float = None,
                  burn_in_frac: float = None, policy: str = "steps") -> "LRSchedule":
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: allowed values: {', '.join(POLICIES)}")
        mb = float(train.max_batches)
        return cls(base_lr=train.learning_rate if base_lr is None else base_lr,
                   total_images=total_images,
                   burn_in_frac=train.burn_in / mb if burn_in_frac is None else burn_in_frac,
                   step_fracs=[s / mb for s in train.steps], scales=list(train.scales),
                   policy=policy)

    @property
    def final_scale(self) -> float:
        return math.prod(self.scales or [1.0])

    def __call__(self, seen: int) -> float:
        """Learning rate for the batch that starts after ``seen`` images."""
        frac = seen / max(self.total_images, 1)
        if self.burn_in_frac > 0 and frac < self.burn_in_frac:
            return self.base_lr * (frac / self.burn_in_frac) ** self.power
        if self.policy == "cosine":
            p = (frac - self.burn_in_frac) / max(1.0 - self.burn_in_frac, 1e-12)
            low = self.final_scale
            return self.base_lr * (low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * min(p, 1.0))))
        lr = self.base_lr
        for step, scale in zip(self.step_fracs or [], self.scales or []):
            if step > frac:
                break
            lr *= scale
        return lr
