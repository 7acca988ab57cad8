"""The Python API: ``detector.load(...)`` -> ``Detector``; ``det(frame_bgr)`` -> detections.

A Detector is the per-frame path in three stages, exposed separately so the stream pipeline
can time and thread them: ``preprocess`` (letterbox) -> ``infer`` (the network, and the
region decode where the runner does it on its device) -> ``postprocess`` (decode on the
host otherwise, NMS, letterbox inverse). Where each stage runs is what the runner declares
(``Detector.runner``; ``engine.runner``), not something this facade decides.
"""
from __future__ import annotations

from typing import Optional

from .engine.detector import Detector, build_detector, check_thresholds
from .engine.model_file import LoadedModel, read_model, read_names

__all__ = ["Detector", "LoadedModel", "load", "read_model", "read_names"]


def load(weights, cfg: Optional[str] = None, names=None, backend: Optional[str] = None,
         device: Optional[str] = None, img_size: Optional[int] = None, conf: float = 0.25,
         nms_iou: float = 0.45, max_batch: int = 1, resize: Optional[str] = None,
         nms: str = "opencv", hier_thresh: float = 0.5, tree_map: bool = False,
         **backend_options) -> Detector:
    """Build a Detector.

    ``weights``: ``.safetensors`` checkpoint (spec and names embedded), a lowered plan file,
    darknet ``.weights`` with ``cfg=``, a published model by name (``"yolov2-voc-fastdsc"``,
    ``"yolov2"``, ...: downloaded or built once into the user cache), or ``"random:SPEC"``
    (a zoo spec name or spec YAML with seeded random weights).
    ``names``: class names (a list or a file, one per line; default: the model's).
    ``backend``: torch | ort | cuda | emu (default: the fastest available; on a CPU with
    native bfloat16, ORT float32 or torch bf16, whichever is faster for this model here).
    ``backend_options`` go to the runner, e.g. ``precision`` (torch: fp32 | bf16; ort: fp32 |
    int8), ``threads`` (ort). ``max_batch``: the most frames one ``Detector.infer_batch``
    call takes (several sources through one network; runtimes that cannot batch take one).
    ``resize``: ``opencv`` or ``darknet`` (darknet's own resize, bit for bit; default: what
    the weights expect: ``darknet`` for darknet files and models converted from them).
    ``nms``: ``opencv`` or ``darknet`` (darknet's box mapping and NMS on unclipped boxes, in
    its order). ``hier_thresh``, ``tree_map``: for a YOLO9000 WordTree model (``Detector``).
    """
    check_thresholds(conf, nms_iou)
    model = read_model(weights, cfg, names)
    return build_detector(model, backend, device, img_size, conf, nms_iou, max_batch, resize,
                          nms, hier_thresh, tree_map, **backend_options)
