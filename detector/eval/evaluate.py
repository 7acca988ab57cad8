"""Run a network over a dataset split and score it (VOC07, all-point, COCO).

``evaluate_detector`` runs any ``detector.Detector`` (every backend, one frame at a time, as
in deployment) and measures frames per second; ``evaluate_torch_model`` runs a torch model
in batches (validation during training). Detections are kept down to score 0.005, as
darknet's ``valid`` does, so precision-recall curves reach high recall.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

EVAL_CONF = 0.005


def _progress(total: int, desc: str, enabled: bool = True):
    import sys
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def evaluate_detector(det, dataset, max_images: Optional[int] = None, progress: bool = True,
                      save_dets: Optional[str] = None, split: str = "val"):
    """(EvalResult, frames per second) of ``det`` on ``dataset`` (a VOCDataset)."""
    from .dets import Detections
    from .report import evaluate
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    dets, gts, busy = Detections(), [], 0.0
    bar = _progress(n, "eval", progress)
    for i in range(n):
        s = dataset[i]
        t = time.perf_counter()
        found = det(s.image)
        busy += time.perf_counter() - t
        dets.add_detections(s.image_id, found)
        gts.append(dataset.annotations(i))
        bar.update(1)
    bar.close()
    if save_dets:
        from .results import write_results
        write_results(save_dets, split, dataset.names, dets)
    res = evaluate(gts, dets, dataset.names)
    return res, n / busy if busy > 0 else 0.0


def evaluate_torch_model(model, spec, dataset, device: str = "cpu",
                         max_images: Optional[int] = None, batch: int = 8,
                         progress: bool = False):
    """EvalResult of a torch YOLOv2 on ``dataset`` at ``spec.size`` (model left in eval mode)."""
    import torch
    from ..postprocess import postprocess
    from ..preprocess import letterbox
    from .dets import Detections
    from .report import evaluate
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    names = dataset.names
    anchors = spec.region.anchors
    dets, gts = Detections(), []
    model.eval()
    bar = _progress(n, "val", progress)
    with torch.inference_mode():
        for start in range(0, n, batch):
            items = [dataset[i] for i in range(start, min(n, start + batch))]
            boxes = [letterbox(s.image, spec.size) for s in items]
            x = torch.from_numpy(np.concatenate([b[0] for b in boxes])).to(device)
            raw = model(x).float().cpu().numpy()
            for k, s in enumerate(items):
                found = postprocess(raw[k], boxes[k][1], anchors, spec.classes, names,
                                    conf=EVAL_CONF, nms_iou=0.45)
                dets.add_detections(s.image_id, found)
                gts.append(dataset.annotations(start + k))
            bar.update(len(items))
    bar.close()
    return evaluate(gts, dets, names, coco=False)


def fps_line(res, fps: float) -> str:
    out = f"VOC07 mAP {res.voc07_map:.4f}  all-point mAP {res.voc_map:.4f}"
    if res.coco_map is not None:
        out += f"  COCO mAP {res.coco_map:.4f}  mAP@.5 {res.coco_map50:.4f}"
    return out + f"  ({res.images} images, {fps:.1f} FPS)"


