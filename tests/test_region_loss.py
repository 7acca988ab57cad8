"""The region loss's gradients are darknet's deltas, element by element."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from detector.train.region_loss import RegionLoss  # noqa: E402


def sig(x):
    return 1 / (1 + math.exp(-x))


def iou(a, b):
    def edges(x):
        return x[0] - x[2] / 2, x[1] - x[3] / 2, x[0] + x[2] / 2, x[1] + x[3] / 2
    ax1, ay1, ax2, ay2 = edges(a)
    bx1, by1, bx2, by2 = edges(b)
    iw, ih = max(0, min(ax2, bx2) - max(ax1, bx1)), max(0, min(ay2, by2) - max(ay1, by1))
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


def darknet_delta(raw, truths, anchors, classes, seen, thresh=0.6, scales=(5, 1, 1, 1),
                  iou_thresh=1.0):
    """forward_region_layer's l.delta for one image, restated with plain loops (with
    ``iou_thresh`` < 1, also the other anchors whose shape overlaps a truth's by more,
    as darknet's [yolo] layer, before the best ones).
    Returns the gradient of the loss w.r.t. raw logits (= -delta * activation')."""
    object_scale, noobject_scale, class_scale, coord_scale = scales
    a_n = len(anchors)
    _, gh, gw = raw.shape
    p = raw.reshape(a_n, 5 + classes, gh, gw)
    grad = np.zeros_like(p)

    def box(n, j, i):
        return [(i + sig(p[n, 0, j, i])) / gw, (j + sig(p[n, 1, j, i])) / gh,
                math.exp(p[n, 2, j, i]) * anchors[n][0] / gw, math.exp(p[n, 3, j, i]) * anchors[n][1] / gh]

    for j in range(gh):
        for i in range(gw):
            for n in range(a_n):
                pred = box(n, j, i)
                best = max([iou(pred, t[1:]) for t in truths] + [0])
                o = sig(p[n, 4, j, i])
                delta_obj = noobject_scale * (0 - o) if best <= thresh else 0.0
                grad[n, 4, j, i] = -delta_obj * o * (1 - o)
                if seen < 12800:
                    sx, sy = sig(p[n, 0, j, i]), sig(p[n, 1, j, i])
                    grad[n, 0, j, i] = -.01 * (.5 - sx) * sx * (1 - sx)
                    grad[n, 1, j, i] = -.01 * (.5 - sy) * sy * (1 - sy)
                    grad[n, 2, j, i] = -.01 * (0 - p[n, 2, j, i])
                    grad[n, 3, j, i] = -.01 * (0 - p[n, 3, j, i])
    def shape_iou(t, k):
        return iou([0, 0, t[3], t[4]], [0, 0, anchors[k][0] / gw, anchors[k][1] / gh])

    def best(t):
        return max(range(a_n), key=lambda k: shape_iou(t, k))

    pairs = [(t, k) for t in truths for k in range(a_n)
             if k != best(t) and shape_iou(t, k) > iou_thresh] + [(t, best(t)) for t in truths]
    for t, n in pairs:
        cls, x, y, w, h = t
        i, j = int(x * gw), int(y * gh)
        pred = box(n, j, i)
        scale = coord_scale * (2 - w * h)
        sx, sy = sig(p[n, 0, j, i]), sig(p[n, 1, j, i])
        tx, ty = x * gw - i, y * gh - j
        tw, th = math.log(w * gw / anchors[n][0]), math.log(h * gh / anchors[n][1])
        grad[n, 0, j, i] = -scale * (tx - sx) * sx * (1 - sx)
        grad[n, 1, j, i] = -scale * (ty - sy) * sy * (1 - sy)
        grad[n, 2, j, i] = -scale * (tw - p[n, 2, j, i])
        grad[n, 3, j, i] = -scale * (th - p[n, 3, j, i])
        o = sig(p[n, 4, j, i])
        grad[n, 4, j, i] = -object_scale * (iou(pred, t[1:]) - o) * o * (1 - o)
        logits = p[n, 5:, j, i]
        e = np.exp(logits - logits.max())
        prob = e / e.sum()
        onehot = np.eye(classes)[int(cls)]
        grad[n, 5:, j, i] = -class_scale * (onehot - prob)
    return grad.reshape(raw.shape)


@pytest.mark.parametrize("seen", [0, 20000])
def test_gradients_are_darknets_deltas(seen):
    rng = np.random.default_rng(0)
    anchors = [(1.0, 1.5), (2.5, 2.0), (4.0, 4.5)]
    classes, gh, gw = 4, 5, 6
    raw = rng.normal(0, 0.8, (1, 3 * (5 + classes), gh, gw))
    truths = [(2, 0.31, 0.42, 0.2, 0.3), (0, 0.77, 0.12, 0.5, 0.15), (3, 0.5, 0.9, 0.08, 0.1)]
    loss = RegionLoss(anchors, classes)
    x = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    parts = loss(x, [torch.tensor(truths, dtype=torch.float32)], seen=seen)
    parts.total.backward()
    want = darknet_delta(raw[0], truths, anchors, classes, seen)
    np.testing.assert_allclose(x.grad[0].numpy(), want, rtol=1e-4, atol=1e-6)
    assert parts.count == 3 and 0 <= parts.avg_iou <= 1
    assert (parts.prior > 0) == (seen < 12800)


def test_other_anchors_over_iou_thresh_also_learn_the_truth():
    rng = np.random.default_rng(1)
    anchors = [(1.0, 1.0), (2.0, 2.0), (4.0, 4.0)]
    classes, gh, gw = 3, 4, 4
    raw = rng.normal(0, 0.8, (1, 3 * (5 + classes), gh, gw))
    # 2x2 cells: anchor 1 fits exactly, anchors 0 and 2 overlap its shape by 1/4 each;
    # 1x1.2 cells: anchor 0 is best, anchor 1 overlaps it by 0.3
    truths = [(1, 0.3, 0.3, 0.5, 0.5), (2, 0.8, 0.7, 0.25, 0.3)]
    x = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    parts = RegionLoss(anchors, classes, iou_thresh=0.2)(
        x, [torch.tensor(truths, dtype=torch.float32)], seen=20000)
    parts.total.backward()
    want = darknet_delta(raw[0], truths, anchors, classes, 20000, iou_thresh=0.2)
    np.testing.assert_allclose(x.grad[0].numpy(), want, rtol=1e-4, atol=1e-6)
    class_grads = x.grad[0].view(3, 5 + classes, gh, gw)[:, 5:].abs().sum(1)
    assert int((class_grads > 0).sum()) == 5          # 3 anchors for one truth, 2 for the other
    assert parts.count == 2                           # statistics count each truth once
    # without iou_thresh: the best anchor alone (darknet's region layer)
    y = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    RegionLoss(anchors, classes)(y, [torch.tensor(truths, dtype=torch.float32)], seen=20000) \
        .total.backward()
    assert int((y.grad[0].view(3, 5 + classes, gh, gw)[:, 5:].abs().sum(1) > 0).sum()) == 2


def test_predictions_overlapping_a_truth_are_not_pushed_to_background():
    anchors = [(2.0, 2.0)]
    raw = torch.zeros(1, 6, 4, 4, dtype=torch.float64)
    # truth exactly where the prediction of cell (1, 1) already is: IoU 1 > thresh
    truth = torch.tensor([[0, 1.5 / 4, 1.5 / 4, 0.5, 0.5]])
    raw.requires_grad_(True)
    RegionLoss(anchors, 1)(raw, [truth], seen=20000).total.backward()
    g = raw.grad[0, 4]
    assert g[1, 1] != 0          # the assigned prediction: object loss
    assert g[0, 0] > 0           # far away: no-object loss pushes objectness down
    # cells whose (identical-size) box overlaps the truth by > .6 get no no-object loss
    assert g[1, 2] > 0           # neighbour: IoU 1/3 < .6 -> still background


def test_empty_targets_give_only_background_loss():
    raw = torch.randn(2, 2 * 7, 3, 3, requires_grad=True)
    parts = RegionLoss([(1, 1), (2, 2)], 2)(raw, [torch.zeros(0, 5), torch.zeros(0, 5)], seen=99999)
    assert parts.coord == 0 and parts.obj == 0 and parts.cls == 0 and parts.noobj > 0
    parts.total.backward()
    assert torch.isfinite(raw.grad).all()
