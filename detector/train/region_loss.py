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
  and the class loss (softmax cross-entropy) with ``class_scale``.

Squared terms are ``0.5 * scale * (target - output)^2`` so the gradient is darknet's delta;
the sum over the batch is divided by the batch size (darknet divides the learning rate).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

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


class RegionLoss(torch.nn.Module):
    def __init__(self, anchors: Sequence[Tuple[float, float]], classes: int,
                 object_scale: float = 5.0, noobject_scale: float = 1.0,
                 class_scale: float = 1.0, coord_scale: float = 1.0, thresh: float = 0.6,
                 rescore: bool = True, bias_match: bool = True):
        super().__init__()
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))
        self.classes = classes
        self.object_scale, self.noobject_scale = object_scale, noobject_scale
        self.class_scale, self.coord_scale = class_scale, coord_scale
        self.thresh, self.rescore, self.bias_match = thresh, rescore, bias_match

    @classmethod
    def from_spec(cls, spec) -> "RegionLoss":
        r = spec.region
        return cls(r.anchors, spec.classes, r.object_scale, r.noobject_scale, r.class_scale,
                   r.coord_scale, r.thresh, r.rescore, r.bias_match)

    def forward(self, raw: torch.Tensor, targets: List[torch.Tensor],
                seen: int = WARMUP_IMAGES) -> RegionLossParts:
        """``raw`` [N, A*(5+C), H, W]; ``targets[b]`` [n_b, 5] rows (class, cx, cy, w, h) as
        fractions of the network input; ``seen`` = images trained on before this batch."""
        n, _, gh, gw = raw.shape
        a, c = len(self.anchors), self.classes
        p = raw.float().view(n, a, 5 + c, gh, gw).permute(0, 1, 3, 4, 2)   # N A H W 5+C
        sx, sy = torch.sigmoid(p[..., 0]), torch.sigmoid(p[..., 1])
        tw, th = p[..., 2], p[..., 3]
        obj = torch.sigmoid(p[..., 4])
        logits = p[..., 5:]
        dev = raw.device
        col = torch.arange(gw, device=dev, dtype=torch.float32).view(1, 1, 1, gw)
        row = torch.arange(gh, device=dev, dtype=torch.float32).view(1, 1, gh, 1)
        aw = self.anchors[:, 0].view(1, a, 1, 1)
        ah = self.anchors[:, 1].view(1, a, 1, 1)
        with torch.no_grad():
            pred = torch.stack([(col + sx) / gw, (row + sy) / gh,
                                torch.exp(tw) * aw / gw, torch.exp(th) * ah / gh], -1)

        # Ground truth padded to [N, M, 5]; boxes with w or h == 0 are padding.
        m = max((len(t) for t in targets), default=0)
        gt = torch.zeros(n, max(m, 1), 5, device=dev)
        for b, t in enumerate(targets):
            if len(t):
                gt[b, :len(t)] = t.to(dev, torch.float32)
        valid = (gt[..., 3] > 0) & (gt[..., 4] > 0)

        # 1) no-object loss everywhere, ignored where a prediction already overlaps a truth.
        with torch.no_grad():
            if m:
                ious = box_iou_cxcywh(pred.view(n, -1, 1, 4), gt[:, None, :, 1:5])
                ious = ious.masked_fill(~valid[:, None, :], 0)
                best = ious.max(-1).values.view(n, a, gh, gw)
            else:
                best = torch.zeros_like(obj)
            noobj_mask = (best <= self.thresh).float()
        obj_target = torch.zeros_like(obj)
        obj_weight = self.noobject_scale * noobj_mask

        # 2) warm-up toward the anchors for the first 12800 images.
        prior_w = torch.full_like(obj, 0.01 if seen < WARMUP_IMAGES else 0.0)
        tx_t = torch.full_like(obj, 0.5)
        ty_t = torch.full_like(obj, 0.5)
        tw_t = torch.zeros_like(obj)
        th_t = torch.zeros_like(obj)
        coord_w = prior_w.clone()
        cls_t = torch.full((n, a, gh, gw), -1, dtype=torch.long, device=dev)

        # 3) each truth -> its cell and best-shaped anchor.
        iou_sum, hit50, count = 0.0, 0, 0
        if m and valid.any():
            bi, mi = torch.nonzero(valid, as_tuple=True)
            t = gt[bi, mi]
            cls_id = t[:, 0].long().clamp(0, c - 1)
            cx, cy, w, h = t[:, 1], t[:, 2], t[:, 3], t[:, 4]
            ci = (cx * gw).long().clamp(0, gw - 1)
            cj = (cy * gh).long().clamp(0, gh - 1)
            if self.bias_match:
                shape_truth = torch.stack([torch.zeros_like(w), torch.zeros_like(h), w, h], -1)
                shape_anchor = torch.stack([torch.zeros(a, device=dev), torch.zeros(a, device=dev),
                                            self.anchors[:, 0] / gw, self.anchors[:, 1] / gh], -1)
                an = box_iou_cxcywh(shape_truth[:, None], shape_anchor[None]).argmax(1)
            else:
                cand = pred[bi, :, cj, ci]                           # [T, A, 4]
                an = box_iou_cxcywh(cand, t[:, None, 1:5]).argmax(1)
            with torch.no_grad():
                hit_iou = box_iou_cxcywh(pred[bi, an, cj, ci], t[:, 1:5])
            scale = self.coord_scale * (2 - w * h)
            tx_t[bi, an, cj, ci] = cx * gw - ci.float()
            ty_t[bi, an, cj, ci] = cy * gh - cj.float()
            tw_t[bi, an, cj, ci] = torch.log(w * gw / self.anchors[an, 0])
            th_t[bi, an, cj, ci] = torch.log(h * gh / self.anchors[an, 1])
            coord_w[bi, an, cj, ci] = scale
            prior_w[bi, an, cj, ci] = 0.0
            obj_target[bi, an, cj, ci] = hit_iou if self.rescore else 1.0
            obj_weight[bi, an, cj, ci] = self.object_scale
            cls_t[bi, an, cj, ci] = cls_id
            iou_sum = float(hit_iou.sum())
            hit50 = int((hit_iou > 0.5).sum())
            count = int(len(bi))

        is_obj = cls_t >= 0                              # predictions assigned a truth
        coord_sq = ((tx_t - sx) ** 2 + (ty_t - sy) ** 2 + (tw_t - tw) ** 2 + (th_t - th) ** 2)
        coord = 0.5 * (coord_w * coord_sq * is_obj).sum()
        prior = 0.5 * (prior_w * coord_sq * ~is_obj).sum()
        obj_sq = 0.5 * obj_weight * (obj_target - obj) ** 2
        obj_loss = (obj_sq * is_obj).sum()
        noobj_loss = (obj_sq * ~is_obj).sum()
        if is_obj.any():
            cls_loss = self.class_scale * F.cross_entropy(logits[is_obj], cls_t[is_obj],
                                                          reduction="sum")
        else:
            cls_loss = logits.sum() * 0.0
        total = (coord + prior + obj_loss + noobj_loss + cls_loss) / n
        f = lambda v: float(v.detach()) / n  # noqa: E731
        return RegionLossParts(total, f(coord), f(obj_loss), f(noobj_loss), f(cls_loss), f(prior),
                               iou_sum / max(count, 1), hit50 / max(count, 1), count)
