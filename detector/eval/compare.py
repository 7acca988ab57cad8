"""Agreement of one model with another on any footage, without labels (``detector compare``).

Model A's detections with score >= ``conf`` (0.25, the detect default) are taken as the
ground truth; model B's detections down to ``EVAL_CONF`` are scored against them as
detections are scored against labels:

* ``agreement``: all-point mAP@0.5 (``voc_ap``: VOC's best-overlap matching, IoU > 0.5) over
  the classes A detects on the footage;
* ``mean_iou``: the mean IoU of the matched pairs at B's operating point (B's detections with
  score >= ``conf``, each matched to the unmatched A box of its class it overlaps most, when
  IoU > 0.5), with the ``recall`` (A's boxes matched) and ``precision`` (B's boxes matched)
  there;
* per class: AP, A's and B's box counts, matched pairs, their mean IoU.

A converted or distilled model that reproduces its original scores 1.0 in every figure. When A
detects nothing on the footage the agreement is undefined (None).

``agreement`` scores detections already made (one list of ``Detection`` per frame per
model); ``compare`` runs two models over footage; ``torch_detections`` runs a torch model in
batches (distillation's validation, the convert report).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..detection import Detection
from ..errors import UserError
from ..io.atomic import atomic_write_json
from .dets import Detections
from .evaluate import EVAL_CONF, eval_runtime
from .voc_ap import eval_class, mean_ap

REFERENCE_CONF = 0.25
MATCH_IOU = 0.5

FrameDetections = Sequence[Sequence[Detection]]     # one list per frame


@dataclass
class Agreement:
    """How far model B reproduces model A (see the module docstring); fractions in [0, 1],
    None where undefined."""
    agreement: Optional[float]
    mean_iou: Optional[float]
    recall: Optional[float]
    precision: Optional[float]
    reference_boxes: int
    candidate_boxes: int
    matched: int
    frames: int
    conf: float = REFERENCE_CONF
    per_class: Dict[str, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in ("agreement", "mean_iou", "recall", "precision",
                                           "reference_boxes", "candidate_boxes", "matched",
                                           "frames", "conf")}
        d = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}
        d["per_class"] = self.per_class
        d.update(self.extra)
        return d

    def write_json(self, path: str) -> None:
        atomic_write_json(path, self.to_json())      # FileWriteError: one line

    def line(self) -> str:
        """One line: agreement, mean IoU, recall and precision at ``conf``."""
        return (f"agreement (mAP@0.5 vs A's boxes >= {self.conf:g}) {_f(self.agreement)}, "
                f"mean IoU {_f(self.mean_iou)}, recall {_f(self.recall)}, precision "
                f"{_f(self.precision)} ({self.reference_boxes} boxes of A, "
                f"{self.candidate_boxes} of B, {self.frames} frames)")

    def table(self) -> str:
        w = max([5] + [len(n) for n in self.per_class])
        lines = [f"{'class':<{w}}  {'A':>6}  {'B':>6}  {'matched':>7}  {'AP':>6}  {'IoU':>6}"]
        for n, c in self.per_class.items():
            lines.append(f"{n:<{w}}  {c['reference']:>6d}  {c['candidate']:>6d}  "
                         f"{c['matched']:>7d}  {_f(c['ap']):>6}  {_f(c['mean_iou']):>6}")
        lines.append(self.line())
        return "\n".join(lines)


def _f(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.4f}"


def _iou(box, boxes: np.ndarray) -> np.ndarray:
    """IoU of a pixel box with pixel boxes ``[M, 4]`` (continuous coordinates)."""
    b = np.asarray(box, np.float64)
    iw = np.clip(np.minimum(b[2], boxes[:, 2]) - np.maximum(b[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[3], boxes[:, 3]) - np.maximum(b[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (b[2] - b[0]) * (b[3] - b[1]) + (boxes[:, 2] - boxes[:, 0]) * \
        (boxes[:, 3] - boxes[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _operating_matches(ref: Sequence[Detection], cand: Sequence[Detection], conf: float):
    """(class ids of A's boxes, class ids of B's boxes >= conf, [(class, IoU)] of matched
    pairs) of one frame: B's boxes best first, each to the unmatched A box of its class it
    overlaps most, when IoU > MATCH_IOU."""
    cand = sorted((d for d in cand if d.score >= conf), key=lambda d: -d.score)
    boxes = np.array([d.box for d in ref], np.float64).reshape(-1, 4)
    labels = np.array([d.class_id for d in ref], np.int64)
    used = np.zeros(len(ref), bool)
    pairs = []
    for d in cand:
        m = (labels == d.class_id) & ~used
        if not m.any():
            continue
        ov = np.where(m, _iou(d.box, boxes), -1.0)
        j = int(np.argmax(ov))
        if ov[j] > MATCH_IOU:
            used[j] = True
            pairs.append((d.class_id, float(ov[j])))
    return labels, [d.class_id for d in cand], pairs


def agreement(reference: FrameDetections, candidate: FrameDetections, names: Sequence[str],
              conf: float = REFERENCE_CONF) -> Agreement:
    """Agreement of ``candidate`` (B) with ``reference`` (A): per frame, A's detections
    with score >= ``conf`` are the ground truth; all of B's given detections are scored."""
    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} frames of A, {len(candidate)} of B")
    refs = [[d for d in frame if d.score >= conf] for frame in reference]
    ids = [str(i) for i in range(len(refs))]
    stats = {c: {"reference": 0, "candidate": 0, "ious": []} for c in range(len(names))}
    for r, c in zip(refs, candidate):
        labels, cand_labels, pairs = _operating_matches(r, c, conf)
        for k in labels:
            stats[int(k)]["reference"] += 1
        for k in cand_labels:
            stats[int(k)]["candidate"] += 1
        for k, iou in pairs:
            stats[int(k)]["ious"].append(iou)
    dets = Detections()
    for i, frame in zip(ids, candidate):
        dets.add_detections(i, frame)
    results = []
    per_class = {}
    for c, name in enumerate(names):
        gt = {i: (_voc([d.box for d in r if d.class_id == c]),
                  np.zeros(sum(d.class_id == c for d in r), bool)) for i, r in zip(ids, refs)}
        res = eval_class(gt, *dets.for_class(c), iou_thresh=MATCH_IOU)
        results.append(res)
        s = stats[c]
        if s["reference"] or s["candidate"]:
            per_class[name] = {"ap": None if res.ap is None else round(res.ap, 6),
                               "reference": s["reference"], "candidate": s["candidate"],
                               "matched": len(s["ious"]),
                               "mean_iou": round(float(np.mean(s["ious"])), 6)
                               if s["ious"] else None}
    ious = [v for s in stats.values() for v in s["ious"]]
    n_ref = sum(s["reference"] for s in stats.values())
    n_cand = sum(s["candidate"] for s in stats.values())
    return Agreement(mean_ap(results), float(np.mean(ious)) if ious else None,
                     len(ious) / n_ref if n_ref else None,
                     len(ious) / n_cand if n_cand else None, n_ref, n_cand, len(ious),
                     len(refs), conf, per_class)


def _progress(total: int, desc: str, enabled: bool):
    import sys
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def _voc(boxes) -> np.ndarray:
    from ..data.boxes import pixel_to_voc
    return pixel_to_voc(np.asarray(boxes, np.float64).reshape(-1, 4))


# ---- running models ------------------------------------------------------------------------

def detector_detections(det, footage, progress: bool = True, desc: str = "detect"
                        ) -> List[List[Detection]]:
    """A Detector's detections on every frame of ``footage`` (``Footage``)."""
    out = []
    bar = _progress(len(footage), desc, progress)
    for i in range(len(footage)):
        out.append(list(det(footage.image(i))))
        bar.update(1)
    bar.close()
    return out


def torch_detections(model, spec, footage, size: int, device: str = "cpu",
                     conf: float = EVAL_CONF, batch: int = 8, progress: bool = False
                     ) -> List[List[Detection]]:
    """A torch YOLOv2's detections on every frame of ``footage`` at ``size`` pixels (the
    model is left in eval mode)."""
    import torch
    from ..postprocess import postprocess
    from ..preprocess import letterbox
    names = spec.class_names()
    out: List[List[Detection]] = []
    model.eval()
    bar = _progress(len(footage), "agreement", progress)
    with torch.inference_mode():
        for start in range(0, len(footage), batch):
            boxed = [letterbox(footage.image(i), size)
                     for i in range(start, min(len(footage), start + batch))]
            x = torch.from_numpy(np.concatenate([b[0] for b in boxed])).to(device)
            raw = model(x).float().cpu().numpy()
            for k, (_, lb) in enumerate(boxed):
                out.append(postprocess(raw[k], lb, spec.region.anchors, spec.classes, names,
                                       conf=conf, nms_iou=0.45))
            bar.update(len(boxed))
    bar.close()
    return out


def compare_files(a: str, b: str, data, cfg_a: Optional[str] = None,
                  cfg_b: Optional[str] = None, names=None, frames: int = 200,
                  split: Optional[str] = None, seed: int = 0, **options) -> Agreement:
    """``compare`` of two weights arguments (as ``read_model`` takes them) on up to
    ``frames`` frames of each FOOTAGE text ``data`` (``detector.stream.footage``);
    ``options`` as for ``compare``."""
    from ..engine.model_file import read_model
    from ..stream.footage import read_footage
    ma, mb = read_model(a, cfg_a, names), read_model(b, cfg_b, names)
    footage = read_footage(data, frames, split, seed)
    return compare(ma, mb, footage, **options)


def compare(a, b, footage, img_size: Optional[int] = None, backend: Optional[str] = None,
            device: Optional[str] = None, conf: float = REFERENCE_CONF,
            progress: bool = True) -> Agreement:
    """Agreement of model ``b`` with model ``a`` (``LoadedModel``s, the same classes) on
    ``footage`` (a ``Footage``), each run by a Detector at ``img_size`` (default: A's size)
    in fp32 on ``backend``."""
    from ..engine.detector import build_detector
    if a.spec.classes != b.spec.classes:
        raise UserError(f"{a.source} has {a.spec.classes} classes, {b.source} "
                        f"{b.spec.classes}: their detections cannot be compared")
    backend, options = eval_runtime("fp32", backend)
    size = img_size or a.spec.size
    found = []
    for tag, model in (("A", a), ("B", b)):
        det = build_detector(model, backend, device, size, EVAL_CONF, **options)
        try:
            found.append(detector_detections(det, footage, progress, f"model {tag}"))
        finally:
            det.runner.close()
    res = agreement(found[0], found[1], list(a.names), conf)
    res.extra.update(a=a.source, b=b.source, img_size=size, footage=footage.describe())
    return res
