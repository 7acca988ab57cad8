"""Run a network over a dataset split and score it (VOC07, all-point, COCO).

``evaluate_model`` is the in-process evaluation of weights (or a model already read) on a
dataset split: what ``detector eval --weights`` runs and what ``detector convert`` measures
before and after conversion. ``evaluate_detector`` runs any ``Detector`` (every backend, one
frame at a time, as in deployment) and measures frames per second; ``evaluate_torch_model``
runs a torch model in batches (validation during training). Detections are kept down to
score 0.005, as darknet's ``valid`` does, so precision-recall curves reach high recall.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ParamError, UserError

EVAL_CONF = 0.005
PRECISION_BACKENDS = {"bf16": "torch", "int8": "ort"}     # the one backend of each precision


def _progress(total: int, desc: str, enabled: bool = True):
    import sys
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, file=sys.stderr,
                mininterval=1.0, dynamic_ncols=True)


def evaluate_detector(det, dataset, max_images: Optional[int] = None, progress: bool = True,
                      save_dets: Optional[str] = None, split: str = "val"):
    """(EvalResult, frames per second) of ``det`` on ``dataset`` (a dataset split, any
    layout). ``save_dets``: write the detections there (a COCO results JSON when it ends in
    ``.json``, else devkit results files in that folder)."""
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
        from .det_files import write_detections
        write_detections(save_dets, split, dataset, dets)
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
            boxes = [letterbox(s.image, spec.size, spec.resize) for s in items]
            x = torch.from_numpy(np.concatenate([b[0] for b in boxes])).to(device)
            raw = model(x).float().cpu().numpy()
            for k, s in enumerate(items):
                found = postprocess(raw[k], boxes[k][1], anchors, spec.classes, names,
                                    conf=EVAL_CONF, nms_iou=0.45, tree=spec.tree,
                                    mapping=spec.region.map if spec.tree else None)
                dets.add_detections(s.image_id, found)
                gts.append(dataset.annotations(start + k))
            bar.update(len(items))
    bar.close()
    return evaluate(gts, dets, names, coco=False)


def eval_runtime(precision: str = "fp32", backend: Optional[str] = None
                 ) -> Tuple[Optional[str], Dict[str, str]]:
    """(backend, runner options) that evaluate at ``precision``: bf16 on the torch backend,
    int8 on ort; fp32 is asked for explicitly where a backend could pick another precision."""
    if precision != "fp32":
        need = PRECISION_BACKENDS.get(precision)
        if need is None:
            raise ParamError("precision", "allowed values: fp32, " +
                             ", ".join(PRECISION_BACKENDS), value=precision)
        if backend not in (None, need):
            raise ParamError("precision", f"runs on the {need} backend only, not on {backend}",
                             value=precision)
        return need, {"precision": precision}
    if backend in (None, "ort", "torch"):
        return backend, {"precision": "fp32"}
    return backend, {}


def evaluate_model(model, data: str, split: str = "val", *, cfg: Optional[str] = None,
                   names=None, backend: Optional[str] = None, device: Optional[str] = None,
                   img_size: Optional[int] = None, precision: str = "fp32",
                   max_images: Optional[int] = None, save_dets: Optional[str] = None,
                   progress: bool = True, resize: Optional[str] = None, nms: str = "opencv",
                   hier_thresh: float = 0.5):
    """The EvalResult (``fps`` set) of a network on split ``split`` of the dataset YAML
    ``data``. ``resize``, ``nms``, ``hier_thresh``: as for ``build_detector``; a WordTree
    model is scored on the classes its region ``map`` maps into the tree.

    ``model``: weights as ``read_model`` takes them (with ``cfg``), or a model already read
    (``LoadedModel``). Detections are named by the dataset's classes unless ``names`` (a list
    or a file) is given. ``backend``/``device``/``img_size`` as for ``build_detector``;
    ``precision`` (fp32, bf16, int8) picks the runtime (``eval_runtime``); ``save_dets``
    writes the detections there (devkit result files, or a COCO results JSON for a ``.json``
    name)."""
    from ..data.dataset import open_dataset
    from ..engine.detector import build_detector
    backend, options = eval_runtime(precision, backend)
    dataset = open_dataset(data, split)
    loaded = _with_names(model, cfg, names or list(dataset.names))
    tree = loaded.spec.tree is not None
    det = build_detector(loaded, backend, device, img_size, EVAL_CONF, resize=resize, nms=nms,
                         hier_thresh=hier_thresh, tree_map=tree, **options)
    res, fps = evaluate_detector(det, dataset, max_images, progress=progress,
                                 save_dets=save_dets, split=split)
    res.fps = fps
    return res


def _with_names(model, cfg: Optional[str], names):
    """``model`` read (when it is weights) with class ``names``."""
    from ..engine.model_file import LoadedModel, read_model, read_names
    if not isinstance(model, LoadedModel):
        model = read_model(model, cfg)
    if isinstance(names, str):
        names = read_names(names)
    if model.spec.tree is not None:       # a tree's names stay; the region map picks classes
        if model.spec.region.map is None or len(model.spec.region.map) != len(names):
            raise UserError(f"{model.source} predicts a tree of {model.spec.classes} classes; "
                            f"scoring it on {len(names)} dataset classes needs a region map "
                            f"of {len(names)} tree classes")
        return model
    if len(names) != model.spec.classes:
        raise UserError(f"{len(names)} class names for {model.source}, which has "
                        f"{model.spec.classes} classes")
    return dataclasses.replace(model, names=list(names))


def fps_line(res, fps: float) -> str:
    out = f"VOC07 mAP {res.voc07_map:.4f}  all-point mAP {res.voc_map:.4f}"
    if res.coco_map is not None:
        out += f"  COCO mAP {res.coco_map:.4f}  mAP@.5 {res.coco_map50:.4f}"
    return out + f"  ({res.images} images, {fps:.1f} FPS)"


