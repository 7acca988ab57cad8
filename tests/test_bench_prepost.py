"""Speed changes to pre- and post-processing keep their results identical to the OpenCV
reference implementations they replaced (bit for bit)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import detector.postprocess as pp
from detector.engine.frames import synthetic_frame
from detector.postprocess import nms_per_class, postprocess
from detector.preprocess import FILL, Preprocessor, letterbox, letterbox_geometry


def reference_letterbox(frame, size):
    """The previous implementation: cv2.resize + blobFromImage, copied into a filled blob."""
    h, w = frame.shape[:2]
    lb = letterbox_geometry(w, h, size, size)
    if (lb.new_w, lb.new_h) != (w, h):
        frame = cv2.resize(frame, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR)
    blob = np.full((1, 3, size, size), FILL, np.float32)
    blob[:, :, lb.top:lb.top + lb.new_h, lb.left:lb.left + lb.new_w] = \
        cv2.dnn.blobFromImage(frame, 1.0 / 255.0, swapRB=True)
    return blob, lb


FRAME_SHAPES = [(480, 640), (640, 480), (416, 416), (1, 1), (7, 501), (333, 97), (720, 1280)]


@pytest.mark.parametrize("hw", FRAME_SHAPES)
@pytest.mark.parametrize("size", [416, 96])
def test_preprocess_identical(hw, size):
    rng = np.random.default_rng(hw[0] * 7 + hw[1])
    frame = rng.integers(0, 256, hw + (3,), dtype=np.uint8)
    want, lb_want = reference_letterbox(frame, size)
    got, lb = letterbox(frame, size)
    assert lb == lb_want
    assert got.dtype == np.float32 and got.shape == (1, 3, size, size)
    assert np.array_equal(got, want)


def test_preprocessor_reuses_buffer_across_geometries():
    """One Preprocessor fed frames of changing shapes (borders refilled) and repeated shapes."""
    out = np.zeros((1, 3, 128, 128), np.float32)
    pre = Preprocessor(128, out)
    for i, hw in enumerate([(480, 640), (480, 640), (640, 480), (128, 128), (480, 640)]):
        frame = synthetic_frame(hw[1], hw[0], seed=i)
        blob, lb = pre(frame)
        assert blob is out
        want, lb_want = reference_letterbox(frame, 128)
        assert lb == lb_want
        assert np.array_equal(blob, want), hw


def test_preprocess_non_contiguous_frame():
    frame = synthetic_frame(640, 480, 3)
    view = frame[::2, ::2]              # strided view, as a cropped or subsampled camera frame
    assert np.array_equal(letterbox(view, 96)[0], reference_letterbox(np.ascontiguousarray(view), 96)[0])


def reference_nms(boxes_xyxy, scores, class_ids, iou):
    """The previous implementation: one NMSBoxesBatched call on Python lists."""
    order = np.argsort(-scores, kind="stable")
    if iou >= 1.0 or len(scores) == 0:
        return order
    xywh = np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], 1)
    keep = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64).tolist(), scores.astype(float).tolist(),
                                   class_ids.astype(int).tolist(), 0.0, float(iou))
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def random_case(seed):
    rs = np.random.RandomState(seed)
    n = rs.randint(0, 80)
    classes = rs.randint(1, 5)
    xy = rs.uniform(0, 100, (n, 2))
    wh = rs.uniform(0, 40, (n, 2))
    if seed % 3 == 0:                   # on a grid: touching boxes, exact IoU ties
        wh, xy = np.round(wh / 10) * 10, np.round(xy / 10) * 10
    if seed % 7 == 0:                   # empty boxes (clipped away at the frame border)
        wh[:n // 4] = 0
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rs.uniform(0.25, 1, n).astype(np.float32)
    if seed % 5 == 0:                   # tied scores
        scores = (np.round(scores * 4) / 4).astype(np.float32)
    cls = rs.randint(0, classes, n)
    iou = [0.45, 0.5, 0.0, 0.3, 1.0, 0.7][seed % 6]
    return boxes, scores, cls, iou


@pytest.mark.parametrize("batched_max", [pp.NMS_BATCHED_MAX, 0])
def test_nms_identical_to_opencv(monkeypatch, batched_max):
    """Both paths (one batched call; one call per class) keep exactly OpenCV's boxes."""
    monkeypatch.setattr(pp, "NMS_BATCHED_MAX", batched_max)
    for seed in range(600):
        boxes, scores, cls, iou = random_case(seed)
        want = reference_nms(boxes, scores, cls, iou)
        got = nms_per_class(boxes, scores, cls, iou)
        assert np.array_equal(got, want), seed


def test_nms_many_candidates_by_class():
    rs = np.random.RandomState(0)
    n = 3000
    xy = rs.uniform(0, 600, (n, 2))
    boxes = np.concatenate([xy, xy + rs.uniform(5, 200, (n, 2))], 1).astype(np.float32)
    scores = rs.uniform(0.01, 0.3, n).astype(np.float32)
    cls = rs.randint(0, 20, n)
    assert n > pp.NMS_BATCHED_MAX
    assert np.array_equal(nms_per_class(boxes, scores, cls, 0.45),
                          reference_nms(boxes, scores, cls, 0.45))


@pytest.mark.parametrize("conf", [0.005, 0.05, 0.25])
def test_postprocess_identical(monkeypatch, conf):
    """Whole post-processing (decode + NMS + inverse letterbox) against the old NMS."""
    rng = np.random.default_rng(1)
    anchors = [(1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52)]
    names = [f"c{i}" for i in range(20)]
    raw = (rng.standard_normal((1, 125, 13, 13)) * 2).astype(np.float32)
    _, lb = letterbox(np.zeros((480, 640, 3), np.uint8), 416)
    got = postprocess(raw, lb, anchors, 20, names, conf)
    monkeypatch.setattr(pp, "nms_per_class", reference_nms)
    want = postprocess(raw, lb, anchors, 20, names, conf)
    assert len(got) == len(want) > 0
    assert got == want
