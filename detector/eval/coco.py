"""COCO-style mAP@[.5:.95] and mAP@.5 of VOC ground truth and detections, by pycocotools.

The ground truth and the detections are built in memory (no JSON files); pycocotools'
progress prints are captured, not shown.

Conventions:

* Boxes go from VOC coordinates to COCO's ``[x, y, w, h]`` in pixel coordinates:
  ``x = xmin - 1``, ``w = xmax - xmin + 1`` (see :mod:`detector.data.boxes`), so COCO's IoU
  (no +1) of the same two boxes equals the devkit's IoU.
* *Difficult objects become ``iscrowd = 1``* -- the only "ignore" pycocotools honours (its
  ``_prepare`` overwrites any ``ignore`` flag with ``iscrowd``). Like the devkit, they are not
  counted as positives and a detection matched to one is neither TP nor FP. Unlike the devkit,
  pycocotools matches crowd regions by intersection over the *detection's* area and lets
  several detections match one; that only affects detections on difficult objects.
* Standard COCO settings otherwise: IoU thresholds .50:.05:.95, 101 recall points, area
  "all", at most 100 detections per image and class.
* Categories without any non-crowd ground truth are left out of the mean (pycocotools marks
  them -1), as in ``COCOeval.summarize``.
"""
from __future__ import annotations

import contextlib
import io
from typing import Optional, Sequence, Tuple

import numpy as np

from ..data.boxes import voc_to_pixel


def coco_map(gts: Sequence, dets, num_classes: int, max_dets: int = 100
             ) -> Tuple[Optional[float], Optional[float]]:
    """``(mAP@[.5:.95], mAP@.5)``; ``(None, None)`` when there is no non-difficult ground
    truth at all; ``(0.0, 0.0)`` when there are no detections. ``gts``: Annotations;
    ``dets``: :class:`detector.eval.dets.Detections` (VOC coordinates)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    img_index = {}
    images, anns = [], []
    for a in gts:
        k = len(images) + 1
        img_index[a.image_id] = k
        images.append({"id": k, "width": int(a.width), "height": int(a.height),
                       "file_name": str(a.image_id)})
        b = voc_to_pixel(a.boxes)
        labels = np.asarray(a.labels).reshape(-1)
        diff = np.asarray(a.difficult, bool).reshape(-1)
        for j in range(len(b)):
            w, h = float(b[j, 2] - b[j, 0]), float(b[j, 3] - b[j, 1])
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": int(labels[j]) + 1,
                         "bbox": [float(b[j, 0]), float(b[j, 1]), w, h], "area": w * h,
                         "iscrowd": int(diff[j])})
    if not any(a["iscrowd"] == 0 for a in anns):
        return None, None
    if len(dets) == 0:
        return 0.0, 0.0
    ids, labels, scores, boxes = dets.image_ids, dets.labels, dets.scores, voc_to_pixel(dets.boxes)
    res = []
    for i in range(len(scores)):
        b = boxes[i]
        res.append({"image_id": img_index[ids[i]], "category_id": int(labels[i]) + 1,
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                    "score": float(scores[i])})

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
        gt.createIndex()
        dt = gt.loadRes(res)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"]            # [T, R, K, A, M]
    allp = p[:, :, :, 0, -1]
    p50 = p[0, :, :, 0, -1]

    def mean(x):
        x = x[x > -1]
        return float(np.mean(x)) if x.size else 0.0
    return mean(allp), mean(p50)
