"""Exponential moving average of the weights (``detector train --ema DECAY``).

After every optimizer step the average moves toward the model: ``avg = d * avg + (1 - d) * w``
for every floating-point tensor of the state (parameters and BN running statistics), with
``d = min(DECAY, (1 + t) / (10 + t))`` after ``t`` steps, so the first steps are not
dominated by the random initialisation. Validation, ``best.safetensors`` and
``last.safetensors`` use the average; the optimizer keeps training the raw weights. On short,
high-learning-rate runs the average is the better model (it smooths the step-to-step noise
that a decayed learning rate would otherwise have to remove). The average is part of the
training state, so ``--resume`` continues it exactly.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator

import torch


class WeightAverage:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay {decay!r}: must be in (0, 1)")
        self.decay = float(decay)
        self.updates = 0
        self.avg: Dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in model.state_dict().items()
            if v.dtype.is_floating_point}

    def rate(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.rate()
        for k, v in model.state_dict().items():
            a = self.avg.get(k)
            if a is not None:
                a.mul_(d).add_(v.detach(), alpha=1.0 - d)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Inside the block ``model`` holds the averaged weights; the raw ones come back
        after it (also on an exception)."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.avg}
        model.load_state_dict(self.avg, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(raw, strict=False)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "avg": self.avg}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        for k, v in state["avg"].items():
            if k in self.avg:
                self.avg[k].copy_(v)
