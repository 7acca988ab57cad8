"""COCO results JSON: the detections of a split as ``[{"image_id", "category_id", "bbox":
[x, y, w, h], "score"}, ...]`` (what pycocotools' ``loadRes`` and ultralytics' ``save_json``
use).

``bbox`` is continuous pixels (top-left corner and size); it becomes VOC coordinates exactly
as the COCO reader's boxes do (``(x + 1, y + 1, x + w, y + h)``, see
:mod:`detector.data.boxes`), so a results file and the devkit results files of the same
detections score the same. Image and category ids are the dataset's
(:meth:`detector.data.split.DatasetSplit.coco_image_ids` and ``coco_category_ids``): a COCO
dataset's own ids; for VOC and YOLO datasets the number of an all-digit image id (else the id
itself; the id string is accepted too) and class index + 1.

Anything unusable -- not JSON, not a list of objects, a missing or non-finite field, a box of
negative size, an image or category the split does not have -- is a :class:`UserError` naming
the file and the entry (``dets.json: [12].bbox: ...``).
"""
from __future__ import annotations

import json
import math
from typing import Dict, List, Optional

from ..data.boxes import pixel_to_voc, voc_to_pixel
from ..data.coco import read_json
from ..errors import UserError
from ..io.atomic import atomic_write_bytes
from .dets import Detections

FORMAT = '[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]'


def _load(path: str):
    return read_json(path, f"; expected COCO results {FORMAT}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _entry(path: str, k: int, d, images: dict, classes: dict):
    """(image id, class index, score, [x, y, w, h]) of entry ``k``."""
    if not isinstance(d, dict):
        raise UserError(f"{path}: [{k}]: expected an object {{image_id, category_id, bbox, "
                        f"score}}, got {type(d).__name__}")
    for key in ("image_id", "category_id", "bbox", "score"):
        if key not in d:
            raise UserError(f"{path}: [{k}].{key}: missing")
    iid, cid, box, score = d["image_id"], d["category_id"], d["bbox"], d["score"]
    image = images.get(iid) if isinstance(iid, (int, str)) and not isinstance(iid, bool) else None
    if image is None:
        raise UserError(f"{path}: [{k}].image_id: {iid!r} is not an image of this split; "
                        f"wrong split or dataset?")
    c = classes.get(cid) if isinstance(cid, int) and not isinstance(cid, bool) else None
    if c is None:
        raise UserError(f"{path}: [{k}].category_id: {cid!r} is not a category of this "
                        f"dataset (ids {', '.join(map(str, sorted(classes)))[:80]})")
    if not (isinstance(box, list) and len(box) == 4 and all(_number(x) for x in box)):
        raise UserError(f"{path}: [{k}].bbox: expected [x, y, width, height] (4 finite "
                        f"numbers), got {json.dumps(box)[:60]}")
    if box[2] < 0 or box[3] < 0:
        raise UserError(f"{path}: [{k}].bbox: negative width or height: {json.dumps(box)[:60]}")
    if not _number(score):
        raise UserError(f"{path}: [{k}].score: expected a finite number, got {score!r}")
    return image, c, float(score), box


def read_coco_results(path: str, image_ids: Dict[str, object],
                      category_ids: List[Optional[int]]) -> Detections:
    """Detections of a COCO results JSON. ``image_ids``: image id -> results image id;
    ``category_ids``: class index -> results category id (None: no such category)."""
    data = _load(path)
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of detections {FORMAT}, got "
                        f"{type(data).__name__}")
    images = {str(i): i for i in image_ids}
    images.update({v: i for i, v in image_ids.items()})
    classes = {cid: c for c, cid in enumerate(category_ids) if cid is not None}
    ids, labels, scores, boxes = [], [], [], []
    for k, d in enumerate(data):
        image, c, score, (x, y, w, h) = _entry(path, k, d, images, classes)
        ids.append(image)
        labels.append(c)
        scores.append(score)
        boxes.append((x, y, x + w, y + h))
    dets = Detections()
    dets.extend_voc(ids, pixel_to_voc(boxes), scores, labels)
    return dets


def write_coco_results(path: str, dets: Detections, image_ids: Dict[str, object],
                       category_ids: List[Optional[int]]) -> int:
    """Write ``dets`` as a COCO results JSON; returns how many were written (detections of
    a class without a category id are left out)."""
    b = voc_to_pixel(dets.boxes)
    rows = []
    for iid, c, s, (x1, y1, x2, y2) in zip(dets.image_ids, dets.labels, dets.scores, b):
        cid = category_ids[int(c)] if 0 <= int(c) < len(category_ids) else None
        if cid is None:
            continue
        rows.append({"image_id": image_ids.get(iid, iid), "category_id": cid,
                     "bbox": [round(float(x1), 3), round(float(y1), 3),
                              round(float(x2 - x1), 3), round(float(y2 - y1), 3)],
                     "score": round(float(s), 6)})
    try:
        atomic_write_bytes(path, (json.dumps(rows, separators=(",", ":")) + "\n").encode())
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror}") from None
    return len(rows)
