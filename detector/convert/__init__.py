"""Conversion of regular convolutions into FastDSC blocks without training.

- ``options``: ``ConvertOptions``, what a conversion is asked to do (``detector convert``'s
  options as fields).
- ``pipeline``: ``convert(options)``, what ``detector convert`` runs.
- ``decouple``: Network Decoupling (SVD of the weight slices; numpy only).
- ``refine``: Depth-wise Decomposition (least squares on calibration activations; torch).
- ``calib``: calibration images from a dataset YAML.
- ``measure``: CPU latency and mAP before/after.
- ``report``: the per-layer / network report (JSON and table).
"""
from __future__ import annotations

from .options import ConvertOptions
from .pipeline import ConvertResult, convert

__all__ = ["ConvertOptions", "ConvertResult", "convert"]
