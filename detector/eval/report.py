"""Ground truth + detections -> the eval result: VOC07 and all-point mAP, COCO mAP, per class.

::

    res = evaluate(dataset.all_annotations(), dets, dataset.names)
    res.fps = images_per_second          # the caller measures it
    print(res.table())
    res.write_json("eval.json")          # the eval JSON of DESIGN.md

The JSON (fractions in [0, 1]; ``null`` where undefined, e.g. a class without
non-difficult ground truth; ``fps`` null when not measured)::

    {"voc07_map": .., "voc_map": .., "coco_map": .., "coco_map50": ..,
     "per_class": {"<name>": {"voc07_ap": .., "ap": .., "gt": N, "dets": N}, ...},
     "images": N, "fps": ..}

:func:`evaluate_dets_dir` evaluates devkit results files or a COCO results JSON (the ``eval``
command without a network).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ..data.dataset import open_dataset
from ..io.atomic import atomic_write_json
from .coco import coco_map
from .det_files import read_detections
from .dets import Detections
from .plots import plot_pr_curves
from .voc_ap import ClassEval, eval_voc, mean_ap


@dataclass
class EvalResult:
    names: List[str]
    classes: List[ClassEval]
    voc07_map: Optional[float]
    voc_map: Optional[float]
    coco_map: Optional[float]
    coco_map50: Optional[float]
    images: int
    fps: Optional[float] = None
    extra: dict = field(default_factory=dict)

    @property
    def per_class(self) -> dict:
        return {n: {"voc07_ap": _r(c.ap07), "ap": _r(c.ap), "gt": int(c.npos),
                    "dets": int(len(c.scores))} for n, c in zip(self.names, self.classes)}

    def to_json(self) -> dict:
        d = {"voc07_map": _r(self.voc07_map), "voc_map": _r(self.voc_map),
             "coco_map": _r(self.coco_map), "coco_map50": _r(self.coco_map50),
             "per_class": self.per_class, "images": int(self.images),
             "fps": _r(self.fps, 2)}
        d.update(self.extra)
        return d

    def write_json(self, path: str) -> None:
        atomic_write_json(path, self.to_json())      # FileWriteError: one line

    def table(self) -> str:
        """A fixed-width per-class table with the means and COCO numbers."""
        w = max([5] + [len(n) for n in self.names])
        lines = [f"{'class':<{w}}  {'gt':>6}  {'dets':>7}  {'AP':>6}  {'VOC07':>6}"]
        for n, c in zip(self.names, self.classes):
            lines.append(f"{n:<{w}}  {c.npos:>6d}  {len(c.scores):>7d}  {_f(c.ap):>6}  "
                         f"{_f(c.ap07):>6}")
        lines.append(f"{'mAP':<{w}}  {'':>6}  {'':>7}  {_f(self.voc_map):>6}  "
                     f"{_f(self.voc07_map):>6}")
        tail = f"COCO mAP@[.5:.95] {_f(self.coco_map)}  mAP@.5 {_f(self.coco_map50)}  " \
               f"({self.images} images"
        tail += f", {self.fps:.1f} FPS)" if self.fps is not None else ")"
        lines.append(tail)
        return "\n".join(lines)


def _r(v, nd=6):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), nd)


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def evaluate(gts: Sequence, dets: Detections, names: Sequence[str], iou_thresh: float = 0.5,
             coco: bool = True) -> EvalResult:
    """Evaluate detections against ground truth (``detector.data.split.Annotation`` list)."""
    classes = eval_voc(gts, dets, len(names), iou_thresh)
    cm = cm50 = None
    if coco:
        cm, cm50 = coco_map(gts, dets, len(names))
    return EvalResult(list(names), classes, mean_ap(classes, True), mean_ap(classes, False),
                      cm, cm50, len(gts))


def evaluate_dets_dir(data: str, split: str, dets_dir: str, json_out: Optional[str] = None,
                      plots_dir: Optional[str] = None, verbose: bool = True) -> EvalResult:
    """Read the detections in ``dets_dir`` (a folder of devkit results files, or a COCO
    results JSON file) and evaluate them on ``split`` of the dataset YAML ``data`` (any
    layout); print the table, and write the JSON and the PR curves if asked."""
    ds = open_dataset(data, split, verify_images=False)
    dets = read_detections(dets_dir, split, ds)
    res = evaluate(ds.all_annotations(), dets, ds.names)
    if verbose:
        print(res.table())
    if json_out:
        res.write_json(json_out)
    if plots_dir:
        plot_pr_curves(res.classes, res.names, plots_dir, title=split)
    return res
