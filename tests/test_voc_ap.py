"""VOC devkit AP: hand-computed cases (fractions derived in the comments)."""
from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from detector.data.voc import Annotation
from detector.errors import UserError
from detector.eval.dets import Detections
from detector.eval.voc_ap import eval_class, eval_voc, mean_ap, voc_ap, voc_iou


def gt_dict(**images):
    """image_id -> (boxes, difficult) from lists of (box, difficult)."""
    return {k: (np.array([b for b, _ in v], float).reshape(-1, 4),
                np.array([d for _, d in v], bool)) for k, v in images.items()}


def test_iou_uses_plus_one_pixel_convention():
    # [1,1,10,10] and [6,1,15,10] are 10x10 boxes (+1), overlapping in columns 6..10 = 5 px:
    # inter 5*10 = 50, union 100 + 100 - 50 = 150 -> 1/3
    assert voc_iou([1, 1, 10, 10], [[6, 1, 15, 10]])[0] == pytest.approx(1 / 3)
    # one-pixel boxes: [1,1,1,1] has area 1; identical -> 1; [1,1,2,2] (4 px) vs [2,2,3,3]:
    # inter is pixel (2,2) = 1, union 4 + 4 - 1 = 7
    assert voc_iou([1, 1, 1, 1], [[1, 1, 1, 1]])[0] == 1.0
    assert voc_iou([1, 1, 2, 2], [[2, 2, 3, 3]])[0] == pytest.approx(1 / 7)
    # touching but not overlapping: [1,1,10,10] and [11,1,20,10] -> 0
    assert voc_iou([1, 1, 10, 10], [[11, 1, 20, 10]])[0] == 0.0


def test_three_gts_five_dets_with_duplicate_and_miss():
    # image a: G1 [1,1,10,10], G2 [21,21,30,30]; image b: G3 [1,1,10,10]; npos = 3
    gt = gt_dict(a=[([1, 1, 10, 10], 0), ([21, 21, 30, 30], 0)], b=[([1, 1, 10, 10], 0)])
    ids = ["a", "a", "b", "b", "a"]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5]
    boxes = [[1, 1, 10, 10],      # d1 -> G1, IoU 1: TP
             [1, 1, 10, 10],      # d2 -> G1 again: duplicate, FP
             [50, 50, 60, 60],    # d3 -> nothing: FP
             [1, 1, 10, 10],      # d4 -> G3: TP
             [21, 21, 30, 31]]    # d5 -> G2, IoU 100/110: TP
    r = eval_class(gt, ids, scores, boxes)
    assert r.npos == 3
    assert r.tp.tolist() == [1, 0, 0, 1, 1] and r.fp.tolist() == [0, 1, 1, 0, 0]
    # cumulative: recall 1/3 1/3 1/3 2/3 1; precision 1 1/2 1/3 1/2 3/5
    np.testing.assert_allclose(r.recall, [1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(r.precision, [1, 1 / 2, 1 / 3, 1 / 2, 3 / 5])
    # all-point: envelope 1 up to recall 1/3, then 3/5 (the best precision at recall >= 2/3):
    # AP = 1/3 * 1 + 1/3 * 3/5 + 1/3 * 3/5 = 11/15
    assert r.ap == pytest.approx(float(F(11, 15)))
    # 11-point: t = 0, .1, .2, .3 -> 1 (recall 1/3 >= t); t = .4 ... 1 (7 points) -> 3/5:
    # AP07 = (4 * 1 + 7 * 3/5) / 11 = 41/55
    assert r.ap07 == pytest.approx(float(F(41, 55)))
    assert r.ap != pytest.approx(r.ap07)      # the two metrics really differ here


def test_difficult_is_neither_tp_nor_fp_and_not_counted():
    # G1 [1,1,10,10] normal, G2 [21,21,30,30] difficult -> npos = 1
    gt = gt_dict(a=[([1, 1, 10, 10], 0), ([21, 21, 30, 30], 1)])
    ids = ["a"] * 4
    scores = [0.9, 0.8, 0.7, 0.6]
    boxes = [[21, 21, 30, 30],    # on the difficult one: ignored
             [21, 21, 30, 30],    # again on it: still ignored (not a duplicate FP)
             [1, 1, 10, 10],      # G1: TP
             [40, 40, 50, 50]]    # miss: FP
    r = eval_class(gt, ids, scores, boxes)
    assert r.npos == 1
    assert r.tp.tolist() == [0, 0, 1, 0] and r.fp.tolist() == [0, 0, 0, 1]
    # recall reaches 1 at precision 1/1 (the ignored ones count for nothing): AP = 1
    assert r.ap == pytest.approx(1.0) and r.ap07 == pytest.approx(1.0)
    # the same with G2 not difficult: d1 TP, d2 FP, d3 TP, d4 FP; npos 2
    # recall 1/2 1/2 1 1, precision 1 1/2 2/3 1/2 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    gt2 = gt_dict(a=[([1, 1, 10, 10], 0), ([21, 21, 30, 30], 0)])
    r2 = eval_class(gt2, ids, scores, boxes)
    assert r2.ap == pytest.approx(5 / 6)


def test_best_overlap_already_matched_is_a_duplicate():
    # Devkit rule: a detection goes to its highest-IoU gt; if that one is taken it is a FP,
    # even though G2 (IoU 90/110 with it) is still free.
    gt = gt_dict(a=[([1, 1, 10, 10], 0), ([2, 1, 11, 10], 0)])
    r = eval_class(gt, ["a", "a"], [0.9, 0.8], [[1, 1, 10, 10], [1, 1, 10, 10]])
    assert r.tp.tolist() == [1, 0] and r.fp.tolist() == [0, 1]
    # recall 1/2 1/2, precision 1 1/2: AP = 1/2; 11-point: t <= .5 (6 points) -> 1: 6/11
    assert r.ap == pytest.approx(0.5)
    assert r.ap07 == pytest.approx(6 / 11)


def test_iou_threshold_is_strictly_greater():
    gt = gt_dict(a=[([1, 1, 10, 10], 0)])
    # det [1,1,10,20] is 10x20 = 200 px containing the 100 px gt: IoU exactly 1/2 -> FP
    r = eval_class(gt, ["a"], [1.0], [[1, 1, 10, 20]])
    assert r.fp.tolist() == [1] and r.ap == 0.0
    # [1,1,10,19]: 100 / 190 > 1/2 -> TP
    r = eval_class(gt, ["a"], [1.0], [[1, 1, 10, 19]])
    assert r.tp.tolist() == [1] and r.ap == 1.0


def test_equal_scores_keep_input_order():
    # stable sort as MATLAB's: a miss listed before a hit with the same score is ranked first:
    # precision 0 then 1/2 at recall 1 -> AP = 1/2 (hit first would give 1)
    gt = gt_dict(a=[([1, 1, 10, 10], 0)], b=[])
    r = eval_class(gt, ["b", "a"], [0.5, 0.5], [[1, 1, 10, 10], [1, 1, 10, 10]])
    assert r.fp.tolist() == [1, 0] and r.ap == pytest.approx(0.5)
    r = eval_class(gt, ["a", "b"], [0.5, 0.5], [[1, 1, 10, 10], [1, 1, 10, 10]])
    assert r.ap == pytest.approx(1.0)


def test_recall_exactly_a_tenth_reaches_that_threshold():
    # 10 gts, 3 found, no FP: recall 3/10, precision 1. t = 0 .. .3 count: 4/11 (a plain
    # np.arange(0, 1.1, .1) makes t = 0.30000000000000004 and would give 3/11)
    gt = gt_dict(**{f"i{k}": [([1, 1, 10, 10], 0)] for k in range(10)})
    r = eval_class(gt, ["i0", "i1", "i2"], [0.9, 0.8, 0.7], [[1, 1, 10, 10]] * 3)
    assert r.ap07 == pytest.approx(4 / 11)
    assert r.ap == pytest.approx(0.3)


def test_voc_ap_direct():
    # one point recall .5 precision 1 -> all-point 1/2; 11-point 6/11
    assert voc_ap([0.5], [1.0]) == pytest.approx(0.5)
    assert voc_ap([0.5], [1.0], True) == pytest.approx(6 / 11)
    assert voc_ap([], [], True) == 0.0 and voc_ap([], []) == 0.0


def test_eval_voc_classes_unknown_images_and_no_positives():
    gts = [Annotation("a", 50, 50, np.array([[1, 1, 10, 10], [5, 5, 20, 20]], np.float32),
                      np.array([0, 1]), np.array([False, False])),
           Annotation("b", 50, 50, np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, bool))]
    d = Detections()
    d.add_voc("a", [[1, 1, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], [0, 0])   # 2nd: wrong class
    d.add_voc("b", [[1, 1, 10, 10]], [0.95], [1])                          # FP for class 1
    res = eval_voc(gts, d, 3)
    # class 0: TP then FP (IoU of [5,5,20,20] with gt0 = 36/(100+256-36) < .5) -> AP 1
    assert res[0].ap == pytest.approx(1.0)
    # class 1: FP (0.95, image b) ranked first, no TP -> AP 0
    assert res[1].ap == 0.0 and res[1].npos == 1
    # class 2: no ground truth -> undefined, left out of the mean
    assert res[2].ap is None and res[2].npos == 0
    assert mean_ap(res) == pytest.approx(0.5)
    d.add_voc("zzz", [[1, 1, 2, 2]], [0.1], [0])
    with pytest.raises(UserError, match="zzz"):
        eval_voc(gts, d, 3)
