"""Average precision exactly as the PASCAL VOC devkit computes it (``VOCevaldet.m``).

Per class:

* Detections of all images are sorted by score, highest first (a stable sort, so equal
  scores keep their input order, as MATLAB's ``sort`` does).
* Each detection is compared with the ground-truth boxes of its image by IoU with the +1
  pixel convention (VOC coordinates: ``area = (x2 - x1 + 1) * (y2 - y1 + 1)``, intersection
  width ``min(x2) - max(x1) + 1``, only positive overlaps count).
* It is assigned to the ground truth with the *highest* IoU (the first one on ties). If that
  IoU is > 0.5 (``iou_thresh``): a *difficult* ground truth makes the detection neither TP
  nor FP; otherwise it is a TP if that ground truth is not yet matched (which it then is),
  and a FP (duplicate) if it is -- even when another, unmatched ground truth also overlaps
  by more than 0.5: the devkit does not fall back to the second best. IoU <= 0.5: FP.
* ``npos`` counts the non-difficult ground truths; recall = TP / npos, precision =
  TP / (TP + FP), both cumulative over the sorted detections.
* VOC2007 11-point AP: the mean over ``t = 0, 0.1, ..., 1`` of the highest precision at
  recall >= t (0 if none). Recall thresholds are compared with a 1e-9 tolerance, so a recall
  of exactly 3/10 reaches ``t = 0.3`` (a plain ``np.arange(0, 1.1, 0.1)`` makes ``t`` =
  0.30000000000000004 and misses it).
* All-point AP (VOC2010+): area under the precision envelope (precision made monotonically
  decreasing from the right), summed where recall changes.

The devkit's MATLAB code accepts IoU >= 0.5 while the widely used Python port
(py-faster-rcnn ``voc_eval.py``) and this project's contract use IoU > 0.5; both only differ
for an IoU of exactly one half.

A class without non-difficult ground truth has no AP (``None``) and is left out of the mean.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError


def voc_iou(box, gts) -> np.ndarray:
    """IoU of one VOC box ``[4]`` with VOC boxes ``[M, 4]``, +1 pixel convention; 0 where
    they do not overlap."""
    b = np.asarray(box, np.float64)
    g = np.asarray(gts, np.float64).reshape(-1, 4)
    iw = np.minimum(b[2], g[:, 2]) - np.maximum(b[0], g[:, 0]) + 1.0
    ih = np.minimum(b[3], g[:, 3]) - np.maximum(b[1], g[:, 1]) + 1.0
    ok = (iw > 0) & (ih > 0)
    inter = np.where(ok, iw * ih, 0.0)
    union = (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0) + \
        (g[:, 2] - g[:, 0] + 1.0) * (g[:, 3] - g[:, 1] + 1.0) - inter
    return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def voc_ap(recall, precision, use_07_metric: bool = False) -> float:
    """AP from cumulative recall/precision arrays (sorted by descending score)."""
    rec = np.asarray(recall, np.float64)
    prec = np.asarray(precision, np.float64)
    if use_07_metric:
        ap = 0.0
        for k in range(11):
            m = rec >= k / 10.0 - 1e-9
            ap += (float(prec[m].max()) if m.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


class ClassEval(NamedTuple):
    """The per-class outcome. ``tp``/``fp`` are per detection in score order (ignored
    detections -- on difficult objects -- have both 0); ``recall``/``precision`` cumulative."""
    npos: int
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    ap: Optional[float]
    ap07: Optional[float]


GroundTruth = Dict[str, Tuple[np.ndarray, np.ndarray]]   # image_id -> (boxes [M,4], difficult [M])


def eval_class(gt: GroundTruth, image_ids: Sequence[str], scores, boxes,
               iou_thresh: float = 0.5) -> ClassEval:
    """Devkit evaluation of one class. ``gt`` maps every image id of the split to that
    class's ground truth (VOC boxes, difficult flags; empty arrays for none); detections are
    parallel sequences with VOC boxes. A detection on an image not in ``gt`` is a
    ``KeyError``."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    npos = int(sum(int((~np.asarray(d, bool)).sum()) for _, d in gt.values()))
    order = np.argsort(-scores, kind="stable")
    nd = len(order)
    tp = np.zeros(nd)
    fp = np.zeros(nd)
    matched = {}
    for r, d in enumerate(order):
        iid = image_ids[d]
        gboxes, gdiff = gt[iid]
        if len(gboxes) == 0:
            fp[r] = 1
            continue
        ov = voc_iou(boxes[d], gboxes)
        j = int(np.argmax(ov))
        if ov[j] > iou_thresh:
            if gdiff[j]:
                continue
            used = matched.setdefault(iid, np.zeros(len(gboxes), bool))
            if not used[j]:
                tp[r] = 1
                used[j] = True
            else:
                fp[r] = 1
        else:
            fp[r] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
    if npos > 0:
        rec = ctp / npos
        ap, ap07 = voc_ap(rec, prec, False), voc_ap(rec, prec, True)
    else:
        rec, ap, ap07 = np.zeros(nd), None, None
    return ClassEval(npos, scores[order], tp, fp, rec, prec, ap, ap07)


def eval_voc(gts: Sequence, dets, num_classes: int, iou_thresh: float = 0.5) -> List[ClassEval]:
    """Every class: ``gts`` are :class:`detector.data.voc.Annotation` (or anything with
    ``image_id``, ``boxes``, ``labels``, ``difficult``), ``dets`` a
    :class:`detector.eval.dets.Detections`. A detection on an image that is not in ``gts``
    is a :class:`UserError` (the devkit refuses those too)."""
    known = {a.image_id for a in gts}
    for iid in dets.distinct_image_ids():
        if iid not in known:
            raise UserError(f"detections for image {iid!r}, which is not in the ground truth "
                            f"of this split ({len(known)} images); wrong split or dataset?")
    out = []
    for c in range(num_classes):
        gt: GroundTruth = {}
        for a in gts:
            m = np.asarray(a.labels) == c
            gt[a.image_id] = (np.asarray(a.boxes, np.float64).reshape(-1, 4)[m],
                              np.asarray(a.difficult, bool)[m])
        ids, sc, bx = dets.for_class(c)
        out.append(eval_class(gt, ids, sc, bx, iou_thresh))
    return out


def mean_ap(results: Sequence[ClassEval], use_07_metric: bool = False) -> Optional[float]:
    """Mean over the classes that have ground truth; None if none has."""
    v = [r.ap07 if use_07_metric else r.ap for r in results]
    v = [x for x in v if x is not None]
    return float(np.mean(v)) if v else None
