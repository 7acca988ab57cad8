"""Darknet's YOLOv2 region loss, with its parts exposed for logging.

Written as a loss whose gradients are exactly darknet's deltas (``forward_region_layer``):

- every prediction: no-object loss ``noobject_scale * (0 - sigmoid(obj))``, except where the
  predicted box already overlaps some ground truth by more than ``thresh`` (ignored);
- for the first 12800 images (warm-up): every prediction is pulled toward its anchor
  (x, y -> cell centre, w, h -> anchor) with scale .01;
- each ground truth is assigned to the cell holding its centre and, among that cell's
  anchors, the one whose shape (w, h at the origin) overlaps it best (``bias_match``); that
  prediction gets the coordinate loss with scale ``coord_scale * (2 - w*h)``, the object loss
  toward 1 (or toward the IoU of its box with the truth, ``rescore``) with ``object_scale``,
  and the class loss (softmax cross-entropy) with ``class_scale``;
- with ``iou_thresh`` < 1 (darknet's [yolo] layer option, not the region layer's), the
  cell's other anchors whose shape overlaps the truth's by more than ``iou_thresh`` get the
  same three losses too (before the best anchor's, which wins where two truths meet): more
  predictions learn from each image (the fast training recipe, train/recipe.py).

With a WordTree (YOLO9000, ``tree``) the class loss is darknet's tree loss: a softmax
cross-entropy in each group of siblings along the truth's path to the root (the truth class
in its group, its parent in the parent's group, ...), so a truth labelled "dog" also teaches
"animal"; darknet's deltas are exactly these gradients. A dataset's class ``k`` is tree class
``mapping[k]`` (the region's ``map``).

Squared terms are ``0.5 * scale * (target - output)^2`` so the gradient is darknet's delta;
the sum over the batch is divided by the batch size (darknet divides the learning rate).

The parts, each usable alone: :meth:`RegionLoss.predictions` (the activated network output
and its boxes), :meth:`RegionLoss.build_targets` (targets and weights of every prediction,
from the ground truth) and :meth:`RegionLoss.loss_terms` (the five sums).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from ..wordtree import WordTree

WARMUP_IMAGES = 12800


@dataclass
class RegionLossParts:
    """Loss parts (per image) and matching statistics of one batch."""
    total: torch.Tensor
    coord: float
    obj: float
    noobj: float
    cls: float
    prior: float
    avg_iou: float
    recall50: float
    count: int

    def as_dict(self) -> Dict[str, float]:
        return {"loss": float(self.total.detach()), "coord": self.coord, "obj": self.obj,
                "noobj": self.noobj, "cls": self.cls, "prior": self.prior,
                "avg_iou": self.avg_iou, "recall50": self.recall50}


def box_iou_cxcywh(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (cx, cy, w, h) broadcast over leading dims: a [..., 4], b [..., 4]."""
    ax1, ay1 = a[..., 0] - a[..., 2] / 2, a[..., 1] - a[..., 3] / 2
    ax2, ay2 = a[..., 0] + a[..., 2] / 2, a[..., 1] + a[..., 3] / 2
    bx1, by1 = b[..., 0] - b[..., 2] / 2, b[..., 1] - b[..., 3] / 2
    bx2, by2 = b[..., 0] + b[..., 2] / 2, b[..., 1] + b[..., 3] / 2
    iw = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(min=0)
    ih = (torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(min=0)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union.clamp(min=1e-12)


class Predictions(NamedTuple):
    """The network output as the loss takes it; every tensor is ``[N, A, H, W]`` (batch,
    anchor, grid row, grid column) with a last axis where noted."""
    sx: torch.Tensor        # sigmoid of the x offset in the cell
    sy: torch.Tensor        # sigmoid of the y offset in the cell
    tw: torch.Tensor        # raw log-scale of the width against the anchor
    th: torch.Tensor        # raw log-scale of the height against the anchor
    obj: torch.Tensor       # sigmoid of the objectness
    logits: torch.Tensor    # [..., C] class logits
    boxes: torch.Tensor     # [..., 4] predicted boxes (cx, cy, w, h), fractions; no gradient


@dataclass
class RegionTargets:
    """What each prediction is pulled toward, and how hard (all ``[N, A, H, W]``), with the
    matching statistics of the ground truth."""
    tx: torch.Tensor
    ty: torch.Tensor
    tw: torch.Tensor
    th: torch.Tensor
    coord_w: torch.Tensor   # weight of the coordinate terms of assigned predictions
    prior_w: torch.Tensor   # weight of the warm-up pull toward the anchor of the others
    obj: torch.Tensor       # objectness target
    obj_w: torch.Tensor     # its weight: object_scale, noobject_scale, or 0 (ignored)
    cls: torch.Tensor       # long class target; -1 where no truth is assigned
    iou_sum: float = 0.0    # sum over truths of the IoU of their prediction
    hit50: int = 0          # truths whose prediction overlaps them by more than 0.5
    count: int = 0          # truths assigned

    @classmethod
    def background(cls, obj: torch.Tensor, noobj_w: torch.Tensor, seen: int) -> "RegionTargets":
        """No truth assigned: objectness toward 0 with weight ``noobj_w``; during the warm-up
        every box toward its anchor (x, y -> cell centre, w, h -> anchor)."""
        prior_w = torch.full_like(obj, 0.01 if seen < WARMUP_IMAGES else 0.0)
        return cls(tx=torch.full_like(obj, 0.5), ty=torch.full_like(obj, 0.5),
                   tw=torch.zeros_like(obj), th=torch.zeros_like(obj), coord_w=prior_w.clone(),
                   prior_w=prior_w, obj=torch.zeros_like(obj), obj_w=noobj_w,
                   cls=torch.full(obj.shape, -1, dtype=torch.long, device=obj.device))


class LossTerms(NamedTuple):
    """The five sums of the loss over a batch (not yet divided by the batch size)."""
    coord: torch.Tensor
    prior: torch.Tensor
    obj: torch.Tensor
    noobj: torch.Tensor
    cls: torch.Tensor


def pad_truths(targets: List[torch.Tensor], n: int, device) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Ground truth of ``n`` images padded to ``[N, M, 5]`` (at least one row; w or h 0 is
    padding), the mask of real boxes ``[N, M]``, and M, the most boxes of an image."""
    m = max((len(t) for t in targets), default=0)
    gt = torch.zeros(n, max(m, 1), 5, device=device)
    for b, t in enumerate(targets):
        if len(t):
            gt[b, :len(t)] = t.to(device, torch.float32)
    return gt, (gt[..., 3] > 0) & (gt[..., 4] > 0), m


class RegionLoss(torch.nn.Module):
    def __init__(self, anchors: Sequence[Tuple[float, float]], classes: int,
                 object_scale: float = 5.0, noobject_scale: float = 1.0,
                 class_scale: float = 1.0, coord_scale: float = 1.0, thresh: float = 0.6,
                 rescore: bool = True, bias_match: bool = True, tree: Optional[WordTree] = None,
                 mapping: Optional[Sequence[int]] = None, iou_thresh: float = 1.0):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))
        self.classes = classes
        self.object_scale, self.noobject_scale = object_scale, noobject_scale
        self.class_scale, self.coord_scale = class_scale, coord_scale
        self.thresh, self.rescore, self.bias_match = thresh, rescore, bias_match
        self.iou_thresh = iou_thresh
        self.tree_loss = TreeLoss(tree) if tree is not None else None
        self.register_buffer("mapping", None if mapping is None else
                             torch.tensor(list(mapping), dtype=torch.long))

    @classmethod
    def from_spec(cls, spec, iou_thresh: float = 1.0) -> "RegionLoss":
        r = spec.region
        return cls(r.anchors, spec.classes, r.object_scale, r.noobject_scale, r.class_scale,
                   r.coord_scale, r.thresh, r.rescore, r.bias_match, r.tree, r.map, iou_thresh)

    def forward(self, raw: torch.Tensor, targets: List[torch.Tensor],
                seen: int = WARMUP_IMAGES) -> RegionLossParts:
        """``raw`` [N, A*(5+C), H, W]; ``targets[b]`` [n_b, 5] rows (class, cx, cy, w, h) as
        fractions of the network input; ``seen`` = images trained on before this batch."""
        n = raw.shape[0]
        pred = self.predictions(raw)
        t = self.build_targets(pred, targets, seen)
        terms = self.loss_terms(pred, t)
        total = (terms.coord + terms.prior + terms.obj + terms.noobj + terms.cls) / n
        f = lambda v: float(v.detach()) / n
        return RegionLossParts(total, f(terms.coord), f(terms.obj), f(terms.noobj),
                               f(terms.cls), f(terms.prior), t.iou_sum / max(t.count, 1),
                               t.hit50 / max(t.count, 1), t.count)

    def predictions(self, raw: torch.Tensor) -> Predictions:
        """The raw output ``[N, A*(5+C), H, W]`` split per anchor, activated, and decoded
        into boxes."""
        n, _, gh, gw = raw.shape
        a, c = len(self.anchors), self.classes
        p = raw.float().view(n, a, 5 + c, gh, gw).permute(0, 1, 3, 4, 2)   # N A H W 5+C
        sx, sy = torch.sigmoid(p[..., 0]), torch.sigmoid(p[..., 1])
        tw, th = p[..., 2], p[..., 3]
        col = torch.arange(gw, device=raw.device, dtype=torch.float32).view(1, 1, 1, gw)
        row = torch.arange(gh, device=raw.device, dtype=torch.float32).view(1, 1, gh, 1)
        aw = self.anchors[:, 0].view(1, a, 1, 1)
        ah = self.anchors[:, 1].view(1, a, 1, 1)
        with torch.no_grad():
            boxes = torch.stack([(col + sx) / gw, (row + sy) / gh,
                                 torch.exp(tw) * aw / gw, torch.exp(th) * ah / gh], -1)
        return Predictions(sx, sy, tw, th, torch.sigmoid(p[..., 4]), p[..., 5:], boxes)

    def build_targets(self, pred: Predictions, targets: List[torch.Tensor],
                      seen: int = WARMUP_IMAGES) -> RegionTargets:
        """Targets and weights of every prediction for ground truth ``targets`` (as in
        :meth:`forward`): the no-object background, then each truth on its prediction."""
        n = pred.obj.shape[0]
        gt, valid, m = pad_truths(targets, n, pred.obj.device)
        noobj_mask = self.ignore_mask(pred, gt, valid, m)
        t = RegionTargets.background(pred.obj, self.noobject_scale * noobj_mask, seen)
        if m and valid.any():
            self.assign(pred, gt, valid, t)
        return t

    @torch.no_grad()
    def ignore_mask(self, pred: Predictions, gt: torch.Tensor, valid: torch.Tensor,
                    m: int) -> torch.Tensor:
        """1.0 where the no-object loss applies: the predicted box overlaps no truth by more
        than ``thresh``; else 0.0."""
        if m:
            n, a, gh, gw = pred.obj.shape
            ious = box_iou_cxcywh(pred.boxes.view(n, -1, 1, 4), gt[:, None, :, 1:5])
            ious = ious.masked_fill(~valid[:, None, :], 0)
            best = ious.max(-1).values.view(n, a, gh, gw)
        else:
            best = torch.zeros_like(pred.obj)
        return (best <= self.thresh).float()

    def assign(self, pred: Predictions, gt: torch.Tensor, valid: torch.Tensor,
               t: RegionTargets) -> None:
        """Each truth -> the cell holding its centre and that cell's best anchor
        (:meth:`best_anchor`), and with ``iou_thresh`` < 1 the cell's other anchors of
        :meth:`extra_anchors`: coordinate, object and class targets there (in ``t``). The
        matching statistics count each truth once, on its best anchor."""
        _, _, gh, gw = pred.obj.shape
        bi, mi = torch.nonzero(valid, as_tuple=True)
        tr = gt[bi, mi]
        cls_id = tr[:, 0].long()
        if self.mapping is not None:           # dataset class -> tree class
            cls_id = self.mapping[cls_id.clamp(0, len(self.mapping) - 1)]
        cls_id = cls_id.clamp(0, self.classes - 1)
        ci = (tr[:, 1] * gw).long().clamp(0, gw - 1)
        cj = (tr[:, 2] * gh).long().clamp(0, gh - 1)
        shape_iou = self.shape_ious(tr, gw, gh)
        an = self.best_anchor(pred, tr, bi, ci, cj, shape_iou)
        extra = self.extra_anchors(shape_iou, an)
        if extra is not None:                  # the others first: the best anchor wins a tie
            k, ak = extra
            self._set_targets(pred, t, tr[k], cls_id[k], (bi[k], ak, cj[k], ci[k]), gw, gh)
        hit_iou = self._set_targets(pred, t, tr, cls_id, (bi, an, cj, ci), gw, gh)
        t.iou_sum = float(hit_iou.sum())
        t.hit50 = int((hit_iou > 0.5).sum())
        t.count = int(len(bi))

    def _set_targets(self, pred: Predictions, t: RegionTargets, tr: torch.Tensor,
                     cls_id: torch.Tensor, at, gw: int, gh: int) -> torch.Tensor:
        """Coordinate, object and class targets of truths ``tr`` on predictions ``at``
        (image, anchor, row, column); returns the IoU of each prediction with its truth."""
        an, cj, ci = at[1], at[2], at[3]
        cx, cy, w, h = tr[:, 1], tr[:, 2], tr[:, 3], tr[:, 4]
        with torch.no_grad():
            hit_iou = box_iou_cxcywh(pred.boxes[at], tr[:, 1:5])
        t.tx[at] = cx * gw - ci.float()
        t.ty[at] = cy * gh - cj.float()
        t.tw[at] = torch.log(w * gw / self.anchors[an, 0])
        t.th[at] = torch.log(h * gh / self.anchors[an, 1])
        t.coord_w[at] = self.coord_scale * (2 - w * h)
        t.prior_w[at] = 0.0
        t.obj[at] = hit_iou if self.rescore else 1.0
        t.obj_w[at] = self.object_scale
        t.cls[at] = cls_id
        return hit_iou

    def shape_ious(self, tr: torch.Tensor, gw: int, gh: int) -> torch.Tensor:
        """IoU of the shape of each truth ``tr`` [T, 5] with that of each anchor, both at
        the origin: [T, A]."""
        a = len(self.anchors)
        w, h = tr[:, 3], tr[:, 4]
        zeros = torch.zeros(a, device=tr.device)
        shape_truth = torch.stack([torch.zeros_like(w), torch.zeros_like(h), w, h], -1)
        shape_anchor = torch.stack([zeros, zeros, self.anchors[:, 0] / gw,
                                    self.anchors[:, 1] / gh], -1)
        return box_iou_cxcywh(shape_truth[:, None], shape_anchor[None])

    def extra_anchors(self, shape_iou: torch.Tensor, best: torch.Tensor
                      ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        """Darknet's ``iou_thresh`` (its [yolo] layer): besides its best anchor, a truth is
        also assigned to every anchor of its cell whose shape overlaps its own by more than
        ``iou_thresh`` (``shape_iou`` [T, A], :meth:`shape_ious`). (truth index, anchor)
        pairs, or None when there are none."""
        if self.iou_thresh >= 1.0:
            return None
        over = shape_iou > self.iou_thresh
        over[torch.arange(len(best), device=best.device), best] = False
        k, ak = torch.nonzero(over, as_tuple=True)
        return (k, ak) if len(k) else None

    def best_anchor(self, pred: Predictions, tr: torch.Tensor, bi: torch.Tensor,
                    ci: torch.Tensor, cj: torch.Tensor, shape_iou: torch.Tensor) -> torch.Tensor:
        """For truths ``tr`` [T, 5] in cells (``cj``, ``ci``) of images ``bi``: the anchor whose
        shape overlaps the truth's best (``bias_match``; ``shape_iou`` of :meth:`shape_ious`),
        else the one whose predicted box overlaps it best."""
        if self.bias_match:
            return shape_iou.argmax(1)
        cand = pred.boxes[bi, :, cj, ci]                         # [T, A, 4]
        return box_iou_cxcywh(cand, tr[:, None, 1:5]).argmax(1)

    def loss_terms(self, pred: Predictions, t: RegionTargets) -> LossTerms:
        """The squared coordinate, warm-up prior, object and no-object terms and the class
        cross-entropy, each summed over the batch."""
        is_obj = t.cls >= 0                              # predictions assigned a truth
        coord_sq = ((t.tx - pred.sx) ** 2 + (t.ty - pred.sy) ** 2 + (t.tw - pred.tw) ** 2
                    + (t.th - pred.th) ** 2)
        coord = 0.5 * (t.coord_w * coord_sq * is_obj).sum()
        prior = 0.5 * (t.prior_w * coord_sq * ~is_obj).sum()
        obj_sq = 0.5 * t.obj_w * (t.obj - pred.obj) ** 2
        if is_obj.any() and self.tree_loss is not None:
            cls_loss = self.class_scale * self.tree_loss(pred.logits[is_obj], t.cls[is_obj])
        elif is_obj.any():
            cls_loss = self.class_scale * F.cross_entropy(pred.logits[is_obj], t.cls[is_obj],
                                                          reduction="sum")
        else:
            cls_loss = pred.logits.sum() * 0.0
        return LossTerms(coord, prior, (obj_sq * is_obj).sum(), (obj_sq * ~is_obj).sum(),
                         cls_loss)


class TreeLoss(torch.nn.Module):
    """Darknet's WordTree class loss: for logits ``[K, C]`` and tree classes ``[K]``, the sum
    over the K truths of ``-log p(node | parent)`` for every node on the truth's path, each
    ``p`` a softmax over the node's group of siblings."""

    def __init__(self, tree: WordTree):
        super().__init__()
        self.groups = tree.groups
        self.register_buffer("group", torch.as_tensor(tree.group, dtype=torch.long))
        paths = [tree.path(c) for c in range(tree.size)]
        depth = max(len(p) for p in paths)
        table = torch.full((tree.size, depth), -1, dtype=torch.long)
        for c, p in enumerate(paths):
            table[c, :len(p)] = torch.tensor(p)
        self.register_buffer("paths", table)

    def log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """Log of the conditional probabilities (a log-softmax per group), ``[K, C]``."""
        k = logits.shape[0]
        index = self.group.expand(k, -1)
        top = torch.full((k, self.groups), float("-inf"), device=logits.device,
                         dtype=logits.dtype).scatter_reduce(1, index, logits, "amax")
        shifted = logits - top.detach().gather(1, index)
        sums = torch.zeros(k, self.groups, device=logits.device, dtype=logits.dtype)
        sums = sums.scatter_add(1, index, shifted.exp())
        return shifted - sums.log().gather(1, index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = self.log_probs(logits.float())
        path = self.paths[target]                                  # [K, D], -1 padded
        picked = logp.gather(1, path.clamp(min=0))
        return -(picked * (path >= 0)).sum()
