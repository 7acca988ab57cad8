"""The distillation loss: how far the student's raw region output is from the teacher's.

Both outputs are ``[N, A*(5+C), H, W]`` (``detector.postprocess`` decodes them). With the
teacher's objectness ``p = sigmoid(t_obj)`` of every anchor at every cell:

* ``obj`` + ``noobj``: the Bernoulli KL divergence from the teacher's objectness to the
  student's, ``KL(p || sigmoid(s_obj))``, split as ``p * KL`` (where the teacher sees an
  object) and ``(1 - p) * KL`` (background); together every cell counts once, and a cell
  where both agree costs nothing whatever ``p`` is;
* ``coord``: ``p`` x the squared difference of the box terms as the decoder uses them
  (``sigmoid`` of the centre offsets, the raw log-scale width and height);
* ``cls``: ``p`` x the KL divergence of the class distributions (softmax of the class logits).

So the boxes and classes of cells where the teacher sees nothing do not dominate the many
cells of background. Each term is summed over cells and averaged over the images; the total
is their weighted sum.
"""
from __future__ import annotations

from typing import Dict, NamedTuple

import torch
import torch.nn.functional as F


class DistillParts(NamedTuple):
    total: torch.Tensor
    coord: torch.Tensor
    obj: torch.Tensor
    noobj: torch.Tensor
    cls: torch.Tensor

    def as_dict(self) -> Dict[str, float]:
        """The parts as floats, ``loss`` for the total (the keys of a training log row)."""
        return {"loss": float(self.total.detach()), "coord": float(self.coord.detach()),
                "obj": float(self.obj.detach()), "noobj": float(self.noobj.detach()),
                "cls": float(self.cls.detach())}


class DistillLoss(torch.nn.Module):
    def __init__(self, anchors: int, classes: int, coord: float = 1.0, obj: float = 1.0,
                 cls: float = 1.0):
        super().__init__()
        self.anchors, self.classes = int(anchors), int(classes)
        self.w_coord, self.w_obj, self.w_cls = float(coord), float(obj), float(cls)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> DistillParts:
        if student.shape != teacher.shape:
            raise ValueError(f"student output {tuple(student.shape)} and teacher output "
                             f"{tuple(teacher.shape)} differ")
        n, _, h, w = student.shape
        s = student.float().reshape(n, self.anchors, 5 + self.classes, h, w)
        t = teacher.float().detach().reshape(n, self.anchors, 5 + self.classes, h, w)
        p = torch.sigmoid(t[:, :, 4])
        kl_obj = F.binary_cross_entropy_with_logits(s[:, :, 4], p, reduction="none") - \
            F.binary_cross_entropy_with_logits(t[:, :, 4], p, reduction="none")
        obj = (p * kl_obj).sum() / n
        noobj = ((1.0 - p) * kl_obj).sum() / n
        dxy = (torch.sigmoid(s[:, :, 0:2]) - torch.sigmoid(t[:, :, 0:2])).pow(2).sum(2)
        dwh = (s[:, :, 2:4] - t[:, :, 2:4]).pow(2).sum(2)
        coord = (p * (dxy + dwh)).sum() / n
        lt = F.log_softmax(t[:, :, 5:], dim=2)
        ls = F.log_softmax(s[:, :, 5:], dim=2)
        cls = (p * (lt.exp() * (lt - ls)).sum(2)).sum() / n
        total = self.w_coord * coord + self.w_obj * (obj + noobj) + self.w_cls * cls
        return DistillParts(total, coord, obj, noobj, cls)
