"""Our outputs against darknet's own, on darknet files our writer makes (random weights):
the letterbox bit for bit, every detection darknet gives with a zero threshold (boxes within
0.05 px, scores within 1e-3 at fp32), the same detection set at ``darknet detector valid``'s
thresholds, a YOLO9000 WordTree head, a FastDSC model exported as grouped + 1x1 convs, and
a classifier with [dropout], [avgpool], [softmax] and [cost]. Skipped where darknet is not
installed (Debian's package; .ci/run installs it)."""
import os

import cv2
import numpy as np
import pytest

from conftest import random_state
from darknet_binary import (DARKNET_DATA, Probe, build_probe, compare_cells, darknet_printed,
                            frames_as_png, needs_darknet, needs_probe, needs_realdata,
                            ours_by_cell, real_photos, run_valid, synthetic_frames)
from detector.engine.detector import build_detector
from detector.engine.model_file import LoadedModel
from detector.io.darknet_cfg import spec_from_cfg, write_cfg
from detector.io.darknet_weights import write_weights
from detector.models.spec import VOC_NAMES, Conv, MaxPool, ModelSpec
from detector.models.spec_yaml import load_spec
from detector.postprocess import decode_region
from detector.preprocess import Preprocessor

pytestmark = [needs_darknet, needs_probe]

BOX_TOL, SCORE_TOL = 0.05, 1e-3
PHOTOS = ["mlnet/dog2.jpg", "skimage/chelsea.png", "mlnet/image2.jpg", "skimage/camera.png"]
SIZES = [(48, 64), (300, 451), (137, 211), (480, 360), (90, 90)]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return Probe(build_probe(str(tmp_path_factory.mktemp("probe"))))


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Synthetic PNG frames (always here) of awkward sizes: upscaled, odd, square."""
    return frames_as_png(synthetic_frames(SIZES, seed=7), str(tmp_path_factory.mktemp("frames")))


def _files(folder, spec, seed=0):
    """The spec written as darknet files by our writer, random weights: (cfg, weights, state).
    The head's weights are scaled to trained magnitudes, so boxes are frame-sized (random
    heads make boxes of 20 frame widths, where float32 itself differs by a tenth of a pixel)."""
    cfg, weights = os.path.join(folder, f"{spec.name}.cfg"), os.path.join(folder, f"{spec.name}.weights")
    state = _state(spec, seed)
    write_cfg(spec, cfg)
    write_weights(weights, spec, state)
    return cfg, weights, state


def _state(spec, seed):
    state = random_state(spec, seed)
    head = f"layers.{len(spec.layers) - 1}.conv.weight"
    if head in state and spec.region is not None:
        state[head] = state[head] * np.float32(0.4)
    return state


def _detector(cfg, weights, names=None, **kw):
    from detector.api import load
    return load(weights, cfg=cfg, names=names, backend=kw.pop("backend", "ort"),
                resize="darknet", nms="darknet", **kw)


def _zero_threshold_parity(probe, det, cfg, weights, images, out):
    """Every (cell, class) darknet gives with threshold 0 and no NMS, against ours."""
    theirs = probe.run(cfg, weights, images, out, thresh=0.0, nms=0.0)
    worst = [0.0, 0.0]
    for i, path in enumerate(images):
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        blob, lb = det.preprocess(frame)
        if isinstance(blob, np.ndarray):     # (a device input is checked by the kernel tests)
            np.testing.assert_array_equal(blob.reshape(-1), Probe.dump(out, i, "input"))
        decoded = decode_region(np.array(det.forward(blob)[0]), det.anchors, det.classes,
                                det.tree, det.hier_thresh)
        max_box, max_score, n_theirs, n_ours, missing = compare_cells(
            theirs, ours_by_cell(decoded, lb), i)
        assert missing == 0 and n_theirs == n_ours, (path, n_theirs, n_ours, missing)
        assert max_box < BOX_TOL and max_score < SCORE_TOL, (path, max_box, max_score)
        worst = [max(worst[0], max_box), max(worst[1], max_score)]
    return worst


# ---- the letterbox ------------------------------------------------------------------------

def small_net(size, classes=20, name="small"):
    """A few layers with a region head: darknet runs it in a moment at any size."""
    layers = []
    for _ in range(5):
        layers += [Conv(4, 3), MaxPool(2, 2)]
    layers.append(Conv(5 * (5 + classes), 1, bn=False, act="linear"))
    anchors = load_spec("yolov2-tiny-voc").region
    return ModelSpec(name, layers, anchors, classes, size=size, resize="darknet")


def _letterbox_matches(probe, tmp_path, images, size):
    spec = small_net(size, name="lb")
    cfg, weights, _ = _files(str(tmp_path), spec)
    probe.run(cfg, weights, images, str(tmp_path / "out"), thresh=0.9)
    pre = Preprocessor(size, resize="darknet")
    for i, path in enumerate(images):
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(Probe.dump(str(tmp_path / "out"), i, "image"),
                                      (frame[:, :, ::-1].transpose(2, 0, 1) / 255.0)
                                      .astype(np.float32).reshape(-1))
        blob, _ = pre(frame)
        got, want = blob.reshape(-1), Probe.dump(str(tmp_path / "out"), i, "input")
        assert np.array_equal(got, want), (path, size, int((got != want).sum()))


@pytest.mark.parametrize("size", [64, 416])
def test_letterbox_is_darknets_bit_for_bit(probe, tmp_path, frames, size):
    _letterbox_matches(probe, tmp_path, frames, size)


@needs_realdata
def test_letterbox_of_real_photos_is_darknets_bit_for_bit(probe, tmp_path):
    photos = real_photos(PHOTOS + ["mlnet/Intersection-Counts.jpg"])
    _letterbox_matches(probe, tmp_path, photos, 416)


# ---- detectors ------------------------------------------------------------------------------

def test_tiny_voc_matches_darknet_at_zero_threshold(probe, tmp_path, frames):
    spec = load_spec("yolov2-tiny-voc").replace(size=224)
    cfg, weights, _ = _files(str(tmp_path), spec)
    det = _detector(cfg, weights, conf=0.0)
    _zero_threshold_parity(probe, det, cfg, weights, frames[:3], str(tmp_path / "out"))


@pytest.mark.slow
@needs_realdata
def test_yolov2_voc_and_tiny_match_darknet_on_real_photos(probe, tmp_path):
    photos = real_photos(PHOTOS)
    for name, size in (("yolov2-tiny-voc", 320), ("yolov2-voc", 128)):
        spec = load_spec(name).replace(size=size)
        cfg, weights, _ = _files(str(tmp_path), spec, seed=1)
        det = _detector(cfg, weights, conf=0.0)
        _zero_threshold_parity(probe, det, cfg, weights, photos, str(tmp_path / name))


def _match(theirs, ours):
    """Pairs darknet's and our (class, score, x1, y1, x2, y2) of one image: (unmatched of
    theirs, unmatched of ours, max box difference, max score difference)."""
    left = list(ours)
    max_box = max_score = 0.0
    unmatched = 0
    for t in theirs:
        best = None
        for j, o in enumerate(left):
            if o[0] != t[0]:
                continue
            db, ds = float(np.abs(np.subtract(o[2:], t[2:])).max()), abs(o[1] - t[1])
            if db < BOX_TOL and ds < SCORE_TOL and (best is None or db + ds < best[1]):
                best = (j, db + ds, db, ds)
        if best is None:
            unmatched += 1
            continue
        left.pop(best[0])
        max_box, max_score = max(max_box, best[2]), max(max_score, best[3])
    return unmatched, len(left), max_box, max_score


def _valid_parity(tmp_path, spec, images, seed=0):
    cfg, weights, _ = _files(str(tmp_path), spec, seed)
    theirs = run_valid(cfg, weights, images, VOC_NAMES, str(tmp_path / "valid"))
    det = _detector(cfg, weights, conf=0.005, nms_iou=0.45)
    total = 0
    for path in images:
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = frame.shape[:2]
        ours = [(d.class_id, d.score) + tuple(darknet_printed(d.box, w, h)) for d in det(frame)]
        image_id = os.path.splitext(os.path.basename(path))[0]
        # darknet clips xmin, ymin below and xmax, ymax above only: a box wholly outside the
        # frame comes out inverted there, empty at the edge here; both clipped both ways
        dn = [t[:2] + tuple(np.clip(t[2:], 1, [w, h, w, h])) for t in theirs.get(image_id, [])]
        missed, extra, max_box, max_score = _match(dn, ours)
        assert (missed, extra) == (0, 0), (path, len(dn), len(ours), missed, extra)
        assert max_box < BOX_TOL and max_score < SCORE_TOL
        total += len(dn)
    assert total > 0


def test_valid_gives_our_detection_set(tmp_path, frames):
    """``darknet detector valid`` (score > 0.005, NMS 0.45) and ours with resize and NMS
    darknet's: the same detections."""
    _valid_parity(tmp_path, load_spec("yolov2-tiny-voc").replace(size=160), frames[:4])


@needs_realdata
def test_valid_gives_our_detection_set_on_real_photos(tmp_path):
    _valid_parity(tmp_path, load_spec("yolov2-tiny-voc").replace(size=224), real_photos(PHOTOS),
                  seed=2)


def test_fastdsc_model_exported_as_grouped_convs_runs_in_darknet(probe, tmp_path, frames):
    """A FastDSC model written as darknet's grouped 3x3 + 1x1 convolutions: darknet runs it
    and gives our detections (ours run the FastDSC blocks, with their GEMM)."""
    spec = load_spec("yolov2-tiny-voc-fastdsc").replace(size=160)
    cfg, weights, state = _files(str(tmp_path), spec, seed=4)
    assert "groups=" in open(cfg).read()
    model = LoadedModel(spec, state, list(VOC_NAMES), "fastdsc")
    for backend in ("ort", "torch"):
        det = build_detector(model, backend, conf=0.0, resize="darknet", nms="darknet")
        _zero_threshold_parity(probe, det, cfg, weights, frames[:2], str(tmp_path / backend))


# ---- YOLO9000 ------------------------------------------------------------------------------

def yolo9000_small(size=64):
    """YOLO9000's head (darknet's 9k.tree, 3 anchors, 28269 filters, coco9k.map) on a small
    backbone, so darknet runs it in a moment."""
    full = spec_from_cfg(os.path.join(os.path.dirname(DARKNET_DATA), "cfg", "yolo9000.cfg"))
    layers = []
    for filters in (8, 16, 16, 32, 32):
        layers += [Conv(filters, 3), MaxPool(2, 2)]
    layers.append(Conv(full.num_outputs, 1, bn=False, act="linear"))
    return ModelSpec("yolo9000-small", layers, full.region, full.classes, size=size,
                     resize="darknet")


def test_yolo9000_tree_matches_darknet(probe, tmp_path, frames):
    """Every cell's class from darknet's hierarchy_top_prediction (the 9418-class tree),
    its objectness and box, against ours; darknet's region output computed as its GPU path
    computes the tree softmax (its CPU path's is broken: see the next test)."""
    spec = yolo9000_small()
    cfg, weights, _ = _files(str(tmp_path), spec, seed=5)
    names = [line.strip() for line in open(os.path.join(DARKNET_DATA, "9k.names"))]
    det = _detector(cfg, weights, names=names, conf=0.0)
    assert det.tree is not None and det.classes == 9418
    _zero_threshold_parity(probe, det, cfg, weights, frames[:3], str(tmp_path / "out"))
    # darknet's `detector test` thresholds (0.5, hier 0.5, NMS 0.45): the same detections
    theirs = probe.run(cfg, weights, frames[:3], str(tmp_path / "t"), thresh=0.5, nms=0.45)
    det = _detector(cfg, weights, names=names, conf=0.5, nms_iou=0.45)
    for i, path in enumerate(frames[:3]):
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        ours = [(d.class_id, d.score) + tuple(d.box) for d in det(frame)]
        dn = [(t.cls, t.prob, *np.r_[t.box[:2] - t.box[2:] / 2, t.box[:2] + t.box[2:] / 2])
              for t in theirs if t.image == i]
        dn = [t[:2] + tuple(np.clip(t[2:], 0, [frame.shape[1], frame.shape[0]] * 2)) for t in dn]
        assert _match(dn, ours)[:2] == (0, 0), (path, len(dn), len(ours))


@pytest.mark.slow
def test_yolo9000_network_matches_darknet(probe, tmp_path, frames):
    """darknet's yolo9000.cfg itself (Darknet-19, the 28269-filter head, the 9k tree and
    coco9k.map), random weights written by our writer, at 128 px."""
    from detector.io.zoo import FILES_DIR
    spec = spec_from_cfg(os.path.join(FILES_DIR, "yolo9000.cfg")).replace(size=128)
    cfg, weights, _ = _files(str(tmp_path), spec, seed=9)
    names = [line.strip() for line in open(os.path.join(FILES_DIR, "9k.names"))]
    det = _detector(cfg, weights, names=names, conf=0.0)
    _zero_threshold_parity(probe, det, cfg, weights, frames[3:4], str(tmp_path / "out"))


def test_darknets_cpu_tree_softmax_is_broken(probe, tmp_path, frames):
    """Why the reference above recomputes the tree softmax: the CPU build's region layer
    runs it with temperature 0 at anchor-major offsets, leaving NaN among its outputs."""
    spec = yolo9000_small()
    cfg, weights, _ = _files(str(tmp_path), spec, seed=5)
    probe.run(cfg, weights, frames[:1], str(tmp_path / "out"), thresh=0.9, tree_fix=False)
    assert np.isnan(Probe.dump(str(tmp_path / "out"), 0, "output")).any()


# ---- the other sections -------------------------------------------------------------------

CLASSIFIER = """[net]
batch=1
subdivisions=1
width=64
height=64
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[dropout]
probability=.5

[convolutional]
filters=10
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1

[cost]
type=sse
"""


def test_classifier_sections_compute_what_darknet_computes(probe, tmp_path, frames):
    torch = pytest.importorskip("torch")
    from detector.io.darknet_weights import read_weights
    from detector.models.yolov2 import YOLOv2, load_state
    (tmp_path / "c.cfg").write_text(CLASSIFIER)
    spec = spec_from_cfg(str(tmp_path / "c.cfg"))
    assert [layer.type for layer in spec.layers] == ["conv", "maxpool", "dropout", "conv",
                                                    "avgpool", "softmax", "cost"]
    write_weights(str(tmp_path / "c.weights"), spec, random_state(spec, 6))
    _, state = read_weights(str(tmp_path / "c.weights"), spec)
    probe.run(str(tmp_path / "c.cfg"), str(tmp_path / "c.weights"), frames[:2],
              str(tmp_path / "out"))
    model = load_state(YOLOv2(spec), state).eval()
    for i, path in enumerate(frames[:2]):
        blob, _ = Preprocessor(64, resize="darknet")(cv2.imread(path, cv2.IMREAD_COLOR))
        with torch.no_grad():
            got = model(torch.from_numpy(blob.copy()))[0].numpy().reshape(-1)
        want = Probe.dump(str(tmp_path / "out"), i, "output")
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert abs(got.sum() - 1) < 1e-5


def test_tiny_yolo_with_dropout_matches_darknet(probe, tmp_path, frames):
    """A darknet-trained tiny-yolov2 variant with a [dropout]: identity at inference, in
    darknet and in every backend here."""
    text = open(os.path.join(os.path.dirname(DARKNET_DATA), "cfg", "yolov2-tiny-voc.cfg")).read()
    head = text.rindex("[convolutional]")
    text = text[:head] + "[dropout]\nprobability=.5\n\n" + text[head:]
    text = text.replace("width=416", "width=96").replace("height=416", "height=96")
    (tmp_path / "d.cfg").write_text(text)
    spec = spec_from_cfg(str(tmp_path / "d.cfg"))
    assert "dropout" in [layer.type for layer in spec.layers]
    cfg = str(tmp_path / "d.cfg")
    weights = str(tmp_path / "d.weights")
    write_weights(weights, spec, _state(spec, 8))
    for backend in ("ort", "emu"):
        det = _detector(cfg, weights, conf=0.0, backend=backend)
        _zero_threshold_parity(probe, det, cfg, weights, frames[:1], str(tmp_path / backend))
