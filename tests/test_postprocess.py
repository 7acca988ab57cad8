"""Letterbox, region decode, NMS and the inverse mapping to frame pixels."""
import numpy as np
import pytest

from detector.postprocess import decode_region, nms_per_class, postprocess, to_frame, to_network
from detector.preprocess import Preprocessor, letterbox, letterbox_geometry


@pytest.mark.parametrize("w,h", [(640, 360), (300, 500), (416, 416), (1, 900), (1280, 719)])
def test_letterbox_geometry_is_darknets(w, h):
    lb = letterbox_geometry(w, h, 416, 416)
    # darknet: fit the longer side, integer new size, integer centring offsets
    if w >= h:
        assert (lb.new_w, lb.new_h) == (416, max(1, h * 416 // w))
    else:
        assert (lb.new_w, lb.new_h) == (max(1, w * 416 // h), 416)
    assert lb.left == (416 - lb.new_w) // 2 and lb.top == (416 - lb.new_h) // 2


@pytest.mark.parametrize("w,h", [(640, 360), (300, 500), (999, 333)])
def test_a_drawn_box_maps_back_to_its_frame_pixels(w, h):
    """Draw a white box on a non-square frame; find it in the network input; map it back."""
    frame = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = w // 5, h // 3, w // 2, (4 * h) // 5
    frame[y1:y2, x1:x2] = 255
    blob, lb = letterbox(frame, 320)
    assert blob.shape == (1, 3, 320, 320) and blob.dtype == np.float32
    assert np.allclose(blob[0, :, 0, 0], 0.5) or lb.left == 0 and lb.top == 0
    ys, xs = np.nonzero(blob[0, 0] > 0.75)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)
    net_frac = np.stack([(found[:, 0] + found[:, 2]) / 2 / 320, (found[:, 1] + found[:, 3]) / 2 / 320,
                         (found[:, 2] - found[:, 0]) / 320, (found[:, 3] - found[:, 1]) / 320], 1)
    back = to_frame(net_frac, lb)[0]
    tol = 1.5 / min(lb.scale_x, lb.scale_y)     # one network pixel, in frame pixels
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=tol)


def test_to_network_and_to_frame_are_inverse():
    lb = letterbox_geometry(640, 360, 416, 416)
    boxes = np.array([[10, 20, 300, 200], [0, 0, 640, 360], [600, 300, 639, 359]], np.float64)
    np.testing.assert_allclose(to_frame(to_network(boxes, lb), lb), boxes, atol=1e-9)


def test_frames_are_rgb_scaled_and_padded_grey():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 0] = 255                          # pure blue in BGR
    blob, lb = Preprocessor(64)(frame)
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (64, 32, 0, 16)
    inner = blob[0, :, 16:48, :]
    assert np.allclose(inner[2], 1.0) and np.allclose(inner[:2], 0.0)   # RGB order: blue last
    assert np.allclose(blob[0, :, :16], 0.5) and np.allclose(blob[0, :, 48:], 0.5)


def test_reused_buffer_repaints_borders_when_geometry_changes():
    pre = Preprocessor(64)
    pre(np.full((100, 200, 3), 255, np.uint8))   # wide: grey top/bottom
    blob, _ = pre(np.full((200, 100, 3), 0, np.uint8))  # tall: grey left/right
    assert np.allclose(blob[0, :, 0, 0], 0.5) and np.allclose(blob[0, :, 32, 32], 0.0)
    assert np.allclose(blob[0, :, 0, 32], 0.0)   # old white rows overwritten


def test_corrupt_frames_are_refused():
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10), np.uint8), 32)
    with pytest.raises(ValueError, match="BGR uint8"):
        letterbox(np.zeros((10, 10, 3), np.float32), 32)


def test_decode_matches_the_region_formulas_by_hand():
    anchors = [(1.0, 2.0), (3.0, 1.5)]
    raw = np.zeros((2 * (5 + 3), 2, 4), np.float32)       # 2 anchors, 3 classes, 2x4 grid
    # anchor 1, row 1, col 2: tx=0 (sigmoid .5), ty=ln 3 (sigmoid .75), tw=ln 2, th=0
    a = 8
    raw[a + 0, 1, 2], raw[a + 1, 1, 2] = 0.0, np.log(3.0)
    raw[a + 2, 1, 2], raw[a + 3, 1, 2] = np.log(2.0), 0.0
    raw[a + 4, 1, 2] = np.log(4.0)                         # objectness .8
    raw[a + 5:a + 8, 1, 2] = [np.log(1.0), np.log(3.0), 0.0]  # softmax [.2, .6, .2]
    boxes, scores = decode_region(raw, anchors, 3)
    k = 1 * 8 + 1 * 4 + 2                                  # anchor, row, col order
    np.testing.assert_allclose(boxes[k], [(2 + 0.5) / 4, (1 + 0.75) / 2, 2 * 3.0 / 4, 1.5 / 2], rtol=1e-6)
    np.testing.assert_allclose(scores[k], [0.8 * 0.2, 0.8 * 0.6, 0.8 * 0.2], rtol=1e-5)
    assert boxes.shape == (16, 4) and scores.shape == (16, 3)


def test_nms_suppresses_overlaps_of_one_class_only():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    # box 1 overlaps box 0 with IoU 90/110 = .82 -> suppressed; box 2 is another class
    assert list(nms_per_class(boxes, scores, classes, 0.45)) == [0, 2, 3]
    assert list(nms_per_class(boxes, scores, classes, 0.85)) == [0, 1, 2, 3]  # .82 < .85
    assert list(nms_per_class(boxes, scores, classes, 1.0)) == [0, 1, 2, 3]   # disabled


def test_postprocess_returns_frame_boxes_sorted_and_thresholded():
    anchors = [(2.0, 2.0)]
    raw = np.full((1, 5 + 2, 4, 4), -8.0, np.float32)      # nothing anywhere...
    raw[0, :4] = 0.0                                       # x, y at cell centres, w, h = anchor
    raw[0, 5:, :, :] = 0.0
    raw[0, 4, 1, 1] = 6.0                                  # ...but one confident cell
    raw[0, 5, 1, 1] = 3.0
    lb = letterbox_geometry(640, 320, 128, 128)
    dets = postprocess(raw, lb, anchors, 2, ["a", "b"], conf=0.25)
    assert len(dets) == 1 and dets[0].class_name == "a" and dets[0].class_id == 0
    x1, y1, x2, y2 = dets[0].box
    # centre (1.5/4, 1.5/4) of a 128 input holding 640x320 as 128x64 at top=32
    cx, cy = 1.5 / 4 * 128 * 5, (1.5 / 4 * 128 - 32) * 5
    half = 2 / 4 * 128 * 5 / 2                 # anchor 2 cells of 4 -> 64 net px -> 320 frame px
    assert abs(x1 - (cx - half)) < 1e-3 and abs(x2 - (cx + half)) < 1e-3
    assert y1 == 0 and abs(y2 - (cy + half)) < 1e-3   # top clipped to the frame
    assert postprocess(raw, lb, anchors, 2, ["a", "b"], conf=0.99) == []


def test_decode_and_the_shared_rest_are_separate_stages():
    """``postprocess`` is the host decode followed by ``detections``, which takes any
    ``Decoded`` (a device decode's arrays too); ``Decoded.copy`` owns its arrays."""
    from detector.postprocess import Decoded, detections
    rng = np.random.default_rng(3)
    anchors = [(1.0, 1.5), (2.0, 1.0)]
    raw = rng.normal(0, 2, (1, 2 * (5 + 3), 4, 4)).astype(np.float32)
    lb = letterbox_geometry(200, 100, 128, 128)
    names = ["a", "b", "c"]
    want = postprocess(raw, lb, anchors, 3, names, conf=0.05)
    dec = decode_region(raw[0], anchors, 3)
    assert isinstance(dec, Decoded) and want
    assert detections(dec, lb, names, conf=0.05) == want
    kept = dec.copy()
    assert not np.shares_memory(kept.boxes, dec.boxes)
    assert not np.shares_memory(kept.scores, dec.scores)
    assert detections(Decoded(*kept), lb, names, conf=0.05) == want


# ---- darknet's boxes and NMS ---------------------------------------------------------------

def test_darknet_nms_runs_on_unclipped_boxes():
    """Two boxes of one class: clipped to the frame they overlap by IoU > 0.45, unclipped
    (the second runs far past the bottom edge) by less: OpenCV's NMS keeps one, darknet's
    both, as the darknet binary does."""
    from detector.postprocess import Decoded, detections
    lb = letterbox_geometry(100, 100, 100, 100)
    boxes = np.array([[0.5, 0.5, 0.4, 0.4], [0.5, 0.8, 0.4, 1.0]], np.float32)  # cx cy w h
    scores = np.array([[0.9], [0.5]], np.float32)
    dec = Decoded(boxes, scores)
    assert len(detections(dec, lb, ["a"], conf=0.1, nms_iou=0.45, nms="opencv")) == 1
    both = detections(dec, lb, ["a"], conf=0.1, nms_iou=0.45, nms="darknet")
    assert len(both) == 2 and both[1].box[3] == 100.0          # clipped only when given out


def test_darknet_maps_boxes_back_with_its_half_pixel_offset():
    from detector.postprocess import darknet_frame_boxes
    lb = letterbox_geometry(451, 301, 416, 416)                # 416 - new_h odd: 139
    assert (416 - lb.new_h) % 2 == 1
    b = np.array([[0.5, 0.5, 0.25, 0.25]], np.float32)
    ours = to_frame(b, lb)[0]
    dn = darknet_frame_boxes(b, lb)[0]
    # darknet's offset is (416 - new_h) / 2 = top + 0.5: its centre sits half a network
    # pixel higher (in frame pixels: 0.5 / scale)
    assert abs((ours[1] + ours[3]) / 2 - dn[1] - 0.5 / lb.scale_y) < 1e-3
    assert abs((ours[0] + ours[2]) / 2 - dn[0]) < 1e-3


def test_darknet_order_of_ties_is_its_compaction():
    from detector.postprocess import darknet_order
    alive = np.array([True, False, True, False, True, True])
    # darknet swaps each dead detection with the last live one it has not checked
    assert darknet_order(alive).tolist() == [0, 5, 2, 4]
    assert darknet_order(np.ones(3, bool)).tolist() == [0, 1, 2]
    assert darknet_order(np.zeros(3, bool)).tolist() == []


def test_bad_darknet_options_name_the_parameter():
    import detector
    from detector.errors import ParamError
    for kw, param in ((dict(resize="bicubic"), "resize"), (dict(nms="soft"), "nms"),
                      (dict(hier_thresh=1.5), "hier_thresh"), (dict(tree_map=True), "tree_map")):
        with pytest.raises(ParamError) as e:
            detector.load("random:yolov2-tiny-voc", backend="ort", img_size=64, **kw)
        assert e.value.param == param
