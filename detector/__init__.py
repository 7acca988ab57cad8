"""FastDSC-YOLO: real-time YOLOv2 with FastDSC depthwise-separable convolutions.

    import detector
    det = detector.load("run/best.safetensors")   # or darknet .weights with cfg=, or a name
    for d in det(frame_bgr):                      # -> list[detector.Detection]
        print(d.box, d.score, d.class_name)

Importing this package has no side effects and does not import torch, onnxruntime or pycuda;
each is imported when a backend that needs it is used.
"""
from __future__ import annotations

from .detection import Detection

__version__ = "0.1.0"
__all__ = ["Detection", "load", "build_model", "__version__"]


def load(weights, cfg=None, **kwargs):
    """Load a detector: ``.safetensors`` checkpoint, darknet ``.weights`` + ``cfg=``, a lowered
    ``.plan`` file, a published model by name (``"yolov2-voc-fastdsc"``: fetched once), or
    ``"random:SPEC"`` (random weights). See :func:`detector.api.load`."""
    from .api import load as _load
    return _load(weights, cfg=cfg, **kwargs)


def build_model(name, **kwargs):
    """The torch ``nn.Module`` for a zoo name or spec YAML path (needs torch)."""
    from .models.yolov2 import build_model as _build
    return _build(name, **kwargs)
