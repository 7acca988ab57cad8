"""What the int8 graph costs in accuracy: its raw output and its detections against fp32."""
from __future__ import annotations

import numpy as np

from ..engine.frames import synthetic_frame
from ..postprocess import postprocess
from ..preprocess import letterbox
from .case import FRAME_H, FRAME_W


def int8_accuracy(model, fp32_runner, int8_runner, size: int, frames: int = 8,
                  conf: float = 0.005, top: int = 100) -> dict:
    """Raw-output error and detection agreement with fp32 on synthetic frames that were not
    used for calibration (seeds 0..frames-1). Detections are compared at the VOC evaluation
    threshold (``conf``), best ``top`` per frame: F1 of one-to-one matches (same class, IoU
    >= 0.5), so the check also works for untrained (zoo) weights."""
    rel, matched, n32, n8 = [], 0, 0, 0
    anchors, classes = list(model.spec.region.anchors), model.spec.classes
    for i in range(frames):
        blob, lb = letterbox(synthetic_frame(FRAME_W, FRAME_H, i), size)
        a = fp32_runner(blob)
        b = int8_runner(blob)
        rel.append(float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-12)))
        da = postprocess(a, lb, anchors, classes, model.names, conf)[:top]
        db = postprocess(b, lb, anchors, classes, model.names, conf)[:top]
        n32, n8 = n32 + len(da), n8 + len(db)
        matched += matches(da, db)
    f1 = 2.0 * matched / (n32 + n8) if n32 + n8 else None
    return {"frames": frames, "conf": conf, "top": top, "raw_rel_error": float(np.mean(rel)),
            "fp32_detections": n32, "int8_detections": n8, "matched": matched,
            "detection_f1_vs_fp32": f1}


def matches(a, b, iou: float = 0.5) -> int:
    """Greedy one-to-one matches (same class, IoU >= iou) between two detection lists."""
    used, m = set(), 0
    for d in a:
        for j, e in enumerate(b):
            if j in used or e.class_id != d.class_id:
                continue
            if box_iou(d.box, e.box) >= iou:
                used.add(j)
                m += 1
                break
    return m


def box_iou(p, q) -> float:
    iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0
