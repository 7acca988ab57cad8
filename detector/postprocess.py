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
   With a WordTree (YOLO9000, ``tree``), the class channels get one softmax per group of
   siblings, each class's probability becomes the product along its path to the root
   (darknet's ``hierarchy_predictions``), and each cell names one class, found as darknet's
   ``hierarchy_top_prediction`` walks down from the roots: the best class of a group while
   its probability times the walk's so far stays above ``hier_thresh`` (the probabilities are
   already products along the path, and the walk multiplies them again, as darknet does),
   else the parent where it stopped; that class's score is the objectness. With ``mapping``
   (darknet's ``coco9k.map``), class ``j`` of a flat dataset instead scores objectness x the
   probability of tree class ``mapping[j]``.
2. The shared rest (``detections``): scores above ``conf`` kept, per-class NMS (a box is
   suppressed by a higher-scoring box of the same class when IoU > nms_iou; nms_iou >= 1
   disables it) and the inverse letterbox to the original frame, clipped to the frame.
   ``nms="opencv"`` runs OpenCV's NMS on the clipped boxes; ``nms="darknet"`` is darknet's
   ``get_network_boxes`` + ``do_nms_sort``: boxes mapped back with darknet's offset
   ``(net - new) / 2`` (a half pixel off where that is odd), NMS on the unclipped boxes with
   darknet's float IoU and its order among equal scores, clipping last.

``postprocess`` is both, for a raw output on the host.
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np

from .detection import Detection
from .preprocess import Letterbox
from .wordtree import WordTree

NMS_MODES = ("opencv", "darknet")


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
                  classes: int, tree: Optional[WordTree] = None, hier_thresh: float = 0.5,
                  mapping: Optional[Sequence[int]] = None) -> Decoded:
    """Decode one image's raw output ``[A*(5+C), H, W]`` on the host. With a ``tree``:
    scores [A*H*W, C] with one class per cell (or [A*H*W, len(mapping)] with ``mapping``)."""
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
    # in double, rounded once to float32, as darknet's get_region_box computes them
    w = (np.exp(p[:, 2].astype(np.float64)) * anc[:, 0, None, None] / gw).astype(np.float32)
    h = (np.exp(p[:, 3].astype(np.float64)) * anc[:, 1, None, None] / gh).astype(np.float32)
    obj = _sigmoid(p[:, 4])
    boxes = np.stack([cx, cy, w, h], -1).reshape(-1, 4)
    if tree is not None:
        return Decoded(boxes, _tree_scores(p[:, 5:], obj, tree, hier_thresh, mapping))
    logits = p[:, 5:]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    scores = (obj[:, None] * prob).transpose(0, 2, 3, 1).reshape(-1, classes)
    return Decoded(boxes, scores)


# ---- WordTree decode ---------------------------------------------------------------------

def tree_softmax(logits: np.ndarray, tree: WordTree, axis: int = 1) -> np.ndarray:
    """A softmax over each group of siblings of ``logits`` (classes along ``axis``; float32),
    as darknet's ``softmax_tree``: conditional probabilities."""
    x = np.moveaxis(np.asarray(logits, np.float32), axis, 0)
    off, size = tree.group_offset, tree.group_size
    top = np.repeat(np.maximum.reduceat(x, off, axis=0), size, axis=0)
    e = np.exp(x - top)
    prob = e / np.repeat(np.add.reduceat(e, off, axis=0), size, axis=0)
    return np.moveaxis(prob, 0, axis)


def tree_probabilities(cond: np.ndarray, tree: WordTree) -> np.ndarray:
    """Conditional probabilities (classes first) -> absolute ones: each class times its
    parent's absolute probability, in file order (darknet's ``hierarchy_predictions``)."""
    prob = np.array(cond, np.float32, copy=True)
    for level in tree.levels:
        prob[level] *= prob[tree.parent[level]]
    return prob


def hierarchy_top(prob: np.ndarray, tree: WordTree, thresh: float) -> np.ndarray:
    """Darknet's ``hierarchy_top_prediction`` for every column of ``prob`` ([C, N] absolute
    probabilities): the class each of the N cells names."""
    c, n = prob.shape
    off = tree.group_offset
    best = np.maximum.reduceat(prob, off, axis=0)                   # [G, N]
    index = np.arange(c)[:, None]
    hit = prob == np.repeat(best, tree.group_size, axis=0)
    first = np.minimum.reduceat(np.where(hit, index, c), off, axis=0)
    # darknet starts each group's search at max = 0, max_i = 0: a group of zeros gives class 0
    arg = np.where(best > 0, first, 0)
    best = np.maximum(best, np.float32(0))
    cells = np.arange(n)
    group = np.zeros(n, np.int64)
    p = np.ones(n, np.float32)
    out = np.full(n, -1, np.int64)
    live = np.ones(n, bool)
    while live.any():
        g, k = group[live], cells[live]
        m, i = best[g, k], arg[g, k]
        pm = p[live] * m
        go = pm > np.float32(thresh)
        leaf = go & (tree.child[i] < 0)
        stop_root = ~go & (g == 0)
        stop_up = ~go & (g != 0)
        res = np.where(leaf | stop_root, i, np.where(stop_up, tree.parent[off[g]], -1))
        out[k] = np.where(res >= 0, res, out[k])
        down = go & ~leaf
        p[k[down]] = pm[down]
        group[k[down]] = tree.child[i[down]]
        live[k[~down]] = False
    return out


def _tree_scores(logits: np.ndarray, obj: np.ndarray, tree: WordTree, hier_thresh: float,
                 mapping: Optional[Sequence[int]]) -> np.ndarray:
    """[A*H*W, C] (or [A*H*W, len(mapping)]) scores of the class channels [A, C, H, W]."""
    a, c, gh, gw = logits.shape
    cond = tree_softmax(logits.transpose(1, 0, 2, 3).reshape(c, -1), tree, axis=0)
    prob = tree_probabilities(cond, tree)                       # [C, A*H*W]
    score = obj.reshape(-1).astype(np.float32)
    if mapping is not None:
        return (score[None, :] * prob[np.asarray(mapping, np.int64)]).T.copy()
    out = np.zeros((a * gh * gw, c), np.float32)
    out[np.arange(a * gh * gw), hierarchy_top(prob, tree, hier_thresh)] = score
    return out


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
                conf: float = 0.25, nms_iou: float = 0.45, tree: Optional[WordTree] = None,
                hier_thresh: float = 0.5, mapping: Optional[Sequence[int]] = None,
                nms: str = "opencv") -> List[Detection]:
    """Raw output of one image ``[A*(5+C), H, W]`` (or with a leading batch of 1) ->
    detections in frame pixels, best first: ``decode_region``, then ``detections``."""
    if raw.ndim == 4:
        raw = raw[0]
    return detections(decode_region(raw, anchors, classes, tree, hier_thresh, mapping), lb,
                      names, conf, nms_iou, nms)


def detections(decoded: Decoded, lb: Letterbox, names: List[str], conf: float = 0.25,
               nms_iou: float = 0.45, nms: str = "opencv") -> List[Detection]:
    """Decoded boxes and scores -> detections in frame pixels, best first: threshold,
    per-class NMS, letterbox inverse (``nms``: ``opencv`` or ``darknet``, see the module)."""
    boxes, scores = decoded
    idx, cls = np.nonzero(scores > conf)
    if len(idx) == 0:
        return []
    s = scores[idx, cls]
    if nms == "darknet":
        xyxy, keep = _darknet_nms(boxes, scores, idx, cls, s, lb, conf, nms_iou)
    else:
        xyxy = to_frame(boxes[idx], lb)
        keep = nms_per_class(xyxy, s, cls, nms_iou)
    return [Detection((float(xyxy[k, 0]), float(xyxy[k, 1]), float(xyxy[k, 2]), float(xyxy[k, 3])),
                      float(s[k]), int(cls[k]), names[int(cls[k])]) for k in keep]


# ---- darknet's boxes and NMS ------------------------------------------------------------

def darknet_frame_boxes(boxes_cxcywh: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Network-input fractions (cx, cy, w, h) -> frame pixels (cx, cy, w, h), unclipped, as
    darknet's ``correct_region_boxes`` computes them (float32, its offset (net - new) / 2)."""
    f32, b = np.float32, np.asarray(boxes_cxcywh, np.float32)
    out = np.empty_like(b)
    for axis, net, new, frame in ((0, lb.net_w, lb.new_w, lb.frame_w),
                                  (1, lb.net_h, lb.new_h, lb.frame_h)):
        shift = (net - new) / 2.0 / net
        ratio = np.float64(f32(new) / f32(net))
        out[:, axis] = ((b[:, axis].astype(np.float64) - shift) / ratio).astype(f32) * f32(frame)
        out[:, axis + 2] = b[:, axis + 2] * (f32(net) / f32(new)) * f32(frame)
    return out


def darknet_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Darknet's ``box_iou`` (float32) of box ``a`` (cx, cy, w, h) with each row of ``b``."""
    half = np.float32(2)

    def overlap(x1, w1, x2, w2):
        left = np.maximum(x1 - w1 / half, x2 - w2 / half)
        right = np.minimum(x1 + w1 / half, x2 + w2 / half)
        return right - left
    ow = overlap(a[0], a[2], b[:, 0], b[:, 2])
    oh = overlap(a[1], a[3], b[:, 1], b[:, 3])
    inter = np.where((ow < 0) | (oh < 0), np.float32(0), ow * oh)
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def darknet_order(alive: np.ndarray) -> np.ndarray:
    """The order darknet's ``do_nms_sort`` leaves its detections in before sorting: the
    ones with objectness (``alive``) kept, each dead one swapped with the last live one."""
    idx = list(range(len(alive)))
    i, k = 0, len(idx) - 1
    while i <= k:
        if alive[idx[i]]:
            i += 1
        else:
            idx[i], idx[k] = idx[k], idx[i]
            k -= 1
    return np.asarray(idx[:k + 1], np.int64)


def _darknet_nms(boxes, scores, idx, cls, s, lb: Letterbox, conf: float, iou: float):
    """(frame boxes x1 y1 x2 y2 clipped, kept indices best first) of the candidates ``idx``,
    ``cls``, ``s``: darknet's per-class greedy NMS on the unclipped boxes."""
    pix = darknet_frame_boxes(boxes[idx], lb)
    half_w, half_h = pix[:, 2].astype(np.float64) / 2, pix[:, 3].astype(np.float64) / 2
    xyxy = np.stack([pix[:, 0] - half_w, pix[:, 1] - half_h, pix[:, 0] + half_w,
                     pix[:, 1] + half_h], 1)
    xyxy[:, [0, 2]] = xyxy[:, [0, 2]].clip(0, lb.frame_w)
    xyxy[:, [1, 3]] = xyxy[:, [1, 3]].clip(0, lb.frame_h)
    # objectness of each cell (the scores of a cell sum to it), and darknet's order of cells
    position = np.empty(len(scores), np.int64)
    order = darknet_order(scores.sum(axis=1) > conf)
    position[order] = np.arange(len(order))
    keep = []
    for c in np.unique(cls):
        mine = np.flatnonzero(cls == c)
        mine = mine[np.lexsort((position[idx[mine]], -s[mine]))]
        alive = np.ones(len(mine), bool)
        for j in range(len(mine)):
            if not alive[j] or iou >= 1.0:
                continue
            rest = np.arange(j + 1, len(mine))
            over = darknet_iou(pix[mine[j]], pix[mine[rest]]) > np.float32(iou)
            alive[rest[over]] = False
        keep.extend(mine[alive])
    keep = np.asarray(keep, np.int64)
    return xyxy, keep[np.lexsort((position[idx[keep]], -s[keep]))]
