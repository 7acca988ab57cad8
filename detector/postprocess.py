"""Raw region output -> detections in frame pixels, in two stages. Numpy and OpenCV only
(used by every backend).

1. Region decode (``decode_region``, on the host; runners that decode on the device give
   the same ``Decoded`` arrays). It follows darknet's region layer
   (``get_region_detections``): for anchor ``a`` at grid cell (row, col) of a W x H grid,
   channels ``a*(5+C) + [x, y, w, h, obj, classes...]`` give

       cx = (col + sigmoid(tx)) / W          w = exp(tw) * anchor_w / W
       cy = (row + sigmoid(ty)) / H          h = exp(th) * anchor_h / H
       score[c] = sigmoid(to) * softmax(classes)[c]

   as fractions of the network input.
2. The shared rest (``detections``): scores above ``conf`` kept, per-class NMS (a box is
   suppressed by a higher-scoring box of the same class when IoU > nms_iou; nms_iou >= 1
   disables it) and the inverse letterbox to the original frame, clipped to the frame.

``postprocess`` is both, for a raw output on the host.
"""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

import cv2
import numpy as np

from .detection import Detection
from .preprocess import Letterbox


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))   # stable for large |x|


class Decoded(NamedTuple):
    """The region decode of one image: ``boxes`` [A*H*W, 4] (cx, cy, w, h as fractions of
    the network input) and ``scores`` [A*H*W, C] (objectness x class probability), float32,
    ordered anchor, row, col."""
    boxes: np.ndarray
    scores: np.ndarray

    def copy(self) -> "Decoded":
        return Decoded(self.boxes.copy(), self.scores.copy())


def decode_region(raw: np.ndarray, anchors: Sequence[Tuple[float, float]],
                  classes: int) -> Decoded:
    """Decode one image's raw output ``[A*(5+C), H, W]`` on the host."""
    a = len(anchors)
    ch, gh, gw = raw.shape
    if ch != a * (5 + classes):
        raise ValueError(f"raw output has {ch} channels, expected {a}*(5+{classes})")
    p = raw.reshape(a, 5 + classes, gh, gw).astype(np.float32, copy=False)
    col = np.arange(gw, dtype=np.float32)[None, None, :]
    row = np.arange(gh, dtype=np.float32)[None, :, None]
    anc = np.asarray(anchors, np.float32)
    cx = (col + _sigmoid(p[:, 0])) / gw
    cy = (row + _sigmoid(p[:, 1])) / gh
    w = np.exp(p[:, 2]) * anc[:, 0, None, None] / gw
    h = np.exp(p[:, 3]) * anc[:, 1, None, None] / gh
    obj = _sigmoid(p[:, 4])
    logits = p[:, 5:]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    scores = (obj[:, None] * prob).transpose(0, 2, 3, 1).reshape(-1, classes)
    boxes = np.stack([cx, cy, w, h], -1).reshape(-1, 4)
    return Decoded(boxes, scores)


def nms_per_class(boxes_xyxy: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                  iou: float) -> np.ndarray:
    """Indices kept by per-class greedy NMS (OpenCV's), highest score first.

    Arrays go to OpenCV as they are (no Python lists). Up to ``NMS_BATCHED_MAX`` candidates
    it is one ``cv2.dnn.NMSBoxesBatched`` call; beyond that (low eval thresholds), where that
    call compares every candidate with every kept box of any class, it is one call per class
    on the same class-offset boxes, which keeps exactly the same boxes."""
    order = np.argsort(-scores, kind="stable")
    if iou >= 1.0 or len(scores) == 0:
        return order
    xyxy = np.asarray(boxes_xyxy)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float64)
    s = np.ascontiguousarray(scores, np.float32)
    cls = np.ascontiguousarray(class_ids, np.int32)
    if len(s) <= NMS_BATCHED_MAX:
        keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh, s, cls, 0.0, float(iou)), np.int64)
    else:
        keep = _nms_by_class(xywh, s, cls, float(iou))
    keep = keep.reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


NMS_BATCHED_MAX = 256


def _nms_by_class(xywh: np.ndarray, scores: np.ndarray, cls: np.ndarray, iou: float) -> np.ndarray:
    """``NMSBoxesBatched`` split by class. OpenCV shifts each class by ``class * (max + 1)``
    so classes never overlap; the same shifted boxes go to one ``NMSBoxes`` call per class.
    Its one cross-class effect is kept too: two empty boxes overlap fully (whatever their
    classes), so of all empty boxes only the best-scoring one survives."""
    x2y2 = xywh[:, :2] + xywh[:, 2:]
    max_coord = max(0.0, float(xywh[:, :2].max()), float(x2y2.max()))
    shifted = xywh.copy()
    shifted[:, :2] += (cls * (max_coord + 1.0))[:, None]
    valid = scores > 0.0                               # OpenCV's score_threshold 0
    empty = valid & (xywh[:, 2] * xywh[:, 3] <= 0.0)
    keep = []
    if empty.any():
        e = np.flatnonzero(empty)
        keep.append(e[np.argsort(-scores[e], kind="stable")[:1]])
    live = valid & ~empty
    for c in np.unique(cls[live]):
        idx = np.flatnonzero(live & (cls == c))
        k = cv2.dnn.NMSBoxes(shifted[idx], scores[idx], 0.0, iou)
        keep.append(idx[np.asarray(k, np.int64).reshape(-1)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def to_frame(boxes_cxcywh: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Network-input fractions (cx, cy, w, h) -> frame pixels (x1, y1, x2, y2), clipped."""
    cx = (boxes_cxcywh[:, 0] * lb.net_w - lb.left) / lb.scale_x
    cy = (boxes_cxcywh[:, 1] * lb.net_h - lb.top) / lb.scale_y
    w = boxes_cxcywh[:, 2] * lb.net_w / lb.scale_x
    h = boxes_cxcywh[:, 3] * lb.net_h / lb.scale_y
    out = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.frame_w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.frame_h)
    return out


def to_network(boxes_xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Inverse of ``to_frame`` (without clipping): frame pixels -> network-input fractions."""
    x1 = boxes_xyxy[:, 0] * lb.scale_x + lb.left
    y1 = boxes_xyxy[:, 1] * lb.scale_y + lb.top
    x2 = boxes_xyxy[:, 2] * lb.scale_x + lb.left
    y2 = boxes_xyxy[:, 3] * lb.scale_y + lb.top
    return np.stack([(x1 + x2) / 2 / lb.net_w, (y1 + y2) / 2 / lb.net_h,
                     (x2 - x1) / lb.net_w, (y2 - y1) / lb.net_h], 1)


def postprocess(raw: np.ndarray, lb: Letterbox, anchors, classes: int, names: List[str],
                conf: float = 0.25, nms_iou: float = 0.45) -> List[Detection]:
    """Raw output of one image ``[A*(5+C), H, W]`` (or with a leading batch of 1) ->
    detections in frame pixels, best first: ``decode_region``, then ``detections``."""
    if raw.ndim == 4:
        raw = raw[0]
    return detections(decode_region(raw, anchors, classes), lb, names, conf, nms_iou)


def detections(decoded: Decoded, lb: Letterbox, names: List[str], conf: float = 0.25,
               nms_iou: float = 0.45) -> List[Detection]:
    """Decoded boxes and scores -> detections in frame pixels, best first: threshold,
    per-class NMS, letterbox inverse."""
    boxes, scores = decoded
    idx, cls = np.nonzero(scores > conf)
    if len(idx) == 0:
        return []
    s = scores[idx, cls]
    xyxy = to_frame(boxes[idx], lb)
    keep = nms_per_class(xyxy, s, cls, nms_iou)
    return [Detection((float(xyxy[k, 0]), float(xyxy[k, 1]), float(xyxy[k, 2]), float(xyxy[k, 3])),
                      float(s[k]), int(cls[k]), names[int(cls[k])]) for k in keep]
