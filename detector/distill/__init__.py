"""Label-free distillation: a converted model learns to reproduce its original on footage.

- ``options``: ``DistillOptions`` (``detector distill``'s options as fields).
- ``loss``: ``DistillLoss``, the distance between two raw region outputs (torch).
- ``trainer``: ``Distiller`` (a ``detector.train`` training run with the teacher beside the
  student) and ``distill(options)`` (torch).
"""
from __future__ import annotations

from .options import DistillOptions

__all__ = ["DistillOptions", "distill"]


def distill(options: DistillOptions, log=print, footage=None) -> dict:
    """Run a distillation (``trainer.distill``; imports torch)."""
    from .trainer import distill as run
    return run(options, log, footage)
