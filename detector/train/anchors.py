"""Anchor boxes by k-means with the 1 - IoU distance (YOLOv2, ``detector anchors``).

Boxes are compared by width and height only, as if centred on each other:
``IoU = min(w) * min(h) / (w1 h1 + w2 h2 - min(w) * min(h))``. Centroids start by k-means++
(each next one drawn with probability proportional to the squared distance to the nearest
chosen one), Lloyd iterations move each to the mean of its members; the best of a few seeded
restarts (highest mean IoU) wins. Deterministic for a seed.

Units: *grid cells* of the network output at ``img_size`` (stride 32), the unit of the
``region.anchors`` of a model spec. A box of ``w x h`` image pixels is measured after the
letterbox the network sees (scale ``min(S / W, S / H)``), so anchors match what training and
inference use.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..data.dataset import default_split, load_config, open_dataset
from ..errors import ParamError, UserError
from ..models.checks import check_input_size

STRIDE = 32


def iou_wh(wh: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """``[N, k]`` IoU of boxes ``[N, 2]`` and centroids ``[k, 2]`` (both w, h), centred."""
    wh = np.asarray(wh, np.float64)[:, None, :]
    c = np.asarray(centroids, np.float64)[None, :, :]
    inter = np.minimum(wh[..., 0], c[..., 0]) * np.minimum(wh[..., 1], c[..., 1])
    return inter / (wh[..., 0] * wh[..., 1] + c[..., 0] * c[..., 1] - inter)


def _kmeans_pp(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    cent = [wh[int(rng.integers(0, len(wh)))]]
    best = 1.0 - iou_wh(wh, np.array(cent))[:, 0]
    for _ in range(1, k):
        p = best ** 2
        tot = float(p.sum())
        i = int(rng.choice(len(wh), p=p / tot)) if tot > 0 else int(rng.integers(0, len(wh)))
        cent.append(wh[i])
        best = np.minimum(best, 1.0 - iou_wh(wh, wh[i:i + 1])[:, 0])
    return np.array(cent, np.float64)


def _lloyd(wh: np.ndarray, c: np.ndarray, iters: int) -> np.ndarray:
    """Lloyd iterations from centroids ``c`` (moved in place) until no box changes cluster."""
    assign = None
    for _it in range(iters):
        iou = iou_wh(wh, c)
        new = np.argmax(iou, 1)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        for j in range(len(c)):
            m = assign == j
            if m.any():
                c[j] = wh[m].mean(0)
            else:   # empty cluster: take the box worst served by its centroid
                worst = int(np.argmin(iou[np.arange(len(wh)), assign]))
                c[j] = wh[worst]
                assign[worst] = j
    return c


def kmeans_anchors(wh, num: int = 5, seed: int = 0, iters: int = 300, restarts: int = 5
                   ) -> Tuple[np.ndarray, float]:
    """``num`` anchors ``[num, 2]`` (same unit as ``wh``) sorted by area, and the mean over
    boxes of the best IoU with an anchor."""
    wh = np.asarray(wh, np.float64).reshape(-1, 2)
    wh = wh[(wh[:, 0] > 0) & (wh[:, 1] > 0) & np.isfinite(wh).all(1)]
    if num < 1:
        raise ParamError("num", "need at least 1 anchor", value=num)
    distinct = len(np.unique(np.round(wh, 9), axis=0))
    if distinct < num:
        raise ParamError("num", f"only {distinct} distinct box sizes for {num} anchors: use at "
                         f"most {max(1, distinct)} anchors or a larger dataset", value=num)
    rng = np.random.default_rng(seed)
    best_c, best_iou = None, -1.0
    for _ in range(max(1, restarts)):
        c = _lloyd(wh, _kmeans_pp(wh, num, rng), iters)
        score = float(iou_wh(wh, c).max(1).mean())
        if score > best_iou + 1e-12:
            best_c, best_iou = c.copy(), score
    order = np.argsort(best_c[:, 0] * best_c[:, 1], kind="stable")
    return best_c[order], best_iou


def dataset_box_sizes(dataset, img_size: int = 416, include_difficult: bool = False
                      ) -> np.ndarray:
    """``[N, 2]`` box sizes in grid cells at ``img_size`` (letterboxed) of a dataset split
    (:class:`detector.data.split.DatasetSplit`, any layout; annotations only). Difficult
    objects are left out unless ``include_difficult``: training never learns from them
    (darknet's ``voc_label.py`` drops them too), so anchors fitted to them would be wasted
    on sizes no box is trained at -- and the same set fits the same anchors whether its
    layout can mark difficult objects (VOC, COCO) or only leave them out (YOLO)."""
    out = []
    for i in range(len(dataset)):
        a = dataset.annotations(i)
        if len(a.boxes) == 0:
            continue
        b = a.boxes.astype(np.float64)
        if not include_difficult:
            b = b[~a.difficult]
        scale = min(img_size / a.width, img_size / a.height) / STRIDE
        out.append(np.stack([(b[:, 2] - b[:, 0] + 1) * scale, (b[:, 3] - b[:, 1] + 1) * scale], 1))
    return np.concatenate(out) if out else np.zeros((0, 2))


def format_anchors(anchors: np.ndarray, decimals: int = 2) -> str:
    """``[[w, h], ...]`` as in a spec's ``region.anchors``."""
    return "[" + ", ".join(f"[{w:.{decimals}f}, {h:.{decimals}f}]" for w, h in anchors) + "]"


def main(data: str, num: int = 5, img_size: int = 416, split: Optional[str] = None,
         seed: int = 0) -> int:
    """``detector anchors --data D [--num 5] [--img-size 416] [--split train] [--seed 0]``:
    print the anchors as a spec YAML line (``anchors: [[w, h], ...]``) after a comment with
    the mean IoU."""
    check_input_size(img_size)
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= 100:
        raise ParamError("num", "expected an integer from 1 to 100", value=num)
    cfg = load_config(data)
    if split is None:
        split = default_split(cfg)
    ds = open_dataset(cfg, split, verify_images=False)
    wh = dataset_box_sizes(ds, img_size)
    if len(wh) == 0:
        raise UserError(f"{cfg.path}: split '{split}' has no boxes to cluster (difficult ones are "
                        "left out)")
    anchors, miou = kmeans_anchors(wh, num, seed)
    print(f"# {num} anchors (k-means, 1 - IoU) of {len(wh)} boxes (not difficult) in "
          f"{cfg.path} split '{split}', grid units at {img_size} px (stride {STRIDE}); "
          f"mean IoU {miou:.4f}")
    print(f"anchors: {format_anchors(anchors)}")
    return 0
