"""Conversion of regular convolutions into FastDSC blocks without training.

- ``decouple``: Network Decoupling (SVD of the weight slices; numpy only).
- ``refine``: Depth-wise Decomposition (least squares on calibration activations; torch).
- ``calib``: calibration images from a dataset YAML.
- ``report``: the per-layer / network report (JSON and table).
- ``pipeline``: ``convert(...)``, what ``detector convert`` runs.
"""
from __future__ import annotations


def convert(weights, method="nd", **kwargs):
    """Convert ``weights`` (checkpoint, darknet .weights with ``cfg=``, or zoo name) with
    ``method`` nd | dd; see :func:`detector.convert.pipeline.convert`."""
    from .pipeline import convert as _convert
    return _convert(weights, method, **kwargs)
