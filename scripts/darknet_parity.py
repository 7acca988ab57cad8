#!/usr/bin/env python3
"""Parity with the darknet binary (Debian's ``darknet``): the figures of docs/performance.md,
"Darknet parity".

    python scripts/darknet_parity.py [--models yolov2-tiny-voc,yolov2-voc,yolo9000]
                                     [--size N] [--images FILE ...] [--out DIR]

For each model: darknet files written by our writer (random weights, the head scaled to
trained magnitudes), run by darknet (tests/darknet_probe.c against libdarknet: letterbox,
network, get_network_boxes with threshold 0, no NMS) and by us (``detector.load(...,
resize="darknet", nms="darknet")``, ORT fp32): whether the letterboxed inputs are equal bit
for bit, and the largest box (pixels) and score differences over every (cell, class)
darknet gives. Then the detection sets at darknet's thresholds: ``darknet detector valid``
(score > 0.005, NMS 0.45) for the flat models, ``detector test``'s (0.5, hier 0.5, NMS
0.45) through the probe for YOLO9000; missed / extra detections (matched within 0.05 px
and 1e-3). Default images: the real photos of ../shared/realdata, else synthetic frames.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))

PHOTOS = ["mlnet/dog2.jpg", "skimage/chelsea.png", "mlnet/image2.jpg", "skimage/camera.png"]
SIZES = {"yolov2-tiny-voc": 416, "yolov2-voc": 416, "yolo9000": 544}


def model_spec(name: str, size: int):
    from detector.io.darknet_cfg import spec_from_cfg
    from detector.io.zoo import FILES_DIR
    from detector.models.spec_yaml import load_spec
    if name == "yolo9000":
        return spec_from_cfg(os.path.join(FILES_DIR, "yolo9000.cfg")).replace(size=size)
    return load_spec(name).replace(size=size)


def zero_threshold(probe, det, cfg, weights, images, out):
    """(inputs equal, max box difference, max score difference, darknet's detections)."""
    import cv2
    import numpy as np
    from darknet_binary import Probe, compare_cells, ours_by_cell
    from detector.postprocess import decode_region
    theirs = probe.run(cfg, weights, images, out, thresh=0.0, nms=0.0)
    same, worst_box, worst_score, count = True, 0.0, 0.0, 0
    for i, path in enumerate(images):
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        blob, lb = det.preprocess(frame)
        same &= bool(np.array_equal(blob.reshape(-1), Probe.dump(out, i, "input")))
        decoded = decode_region(np.array(det.forward(blob)[0]), det.anchors, det.classes,
                                det.tree, det.hier_thresh)
        box, score, n, _, missing = compare_cells(theirs, ours_by_cell(decoded, lb), i)
        assert missing == 0, (path, missing)
        worst_box, worst_score, count = max(worst_box, box), max(worst_score, score), count + n
    return same, worst_box, worst_score, count


def detection_sets(name, probe, cfg, weights, images, work, names):
    """(missed, extra, darknet's detections) at darknet's own thresholds."""
    import cv2
    import numpy as np
    from darknet_binary import darknet_printed, run_valid
    from test_darknet_reference import _detector, _match
    missed = extra = total = 0
    if name == "yolo9000":
        theirs = probe.run(cfg, weights, images, os.path.join(work, "t"), thresh=0.5, nms=0.45)
        det = _detector(cfg, weights, names=names, conf=0.5, nms_iou=0.45)
    else:
        theirs = run_valid(cfg, weights, images, names, os.path.join(work, "valid"))
        det = _detector(cfg, weights, names=names, conf=0.005, nms_iou=0.45)
    for i, path in enumerate(images):
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        h, w = frame.shape[:2]
        clip = [w, h, w, h]
        if name == "yolo9000":
            ours = [(d.class_id, d.score) + tuple(d.box) for d in det(frame)]
            dn = [(t.cls, t.prob) + tuple(np.clip(np.r_[t.box[:2] - t.box[2:] / 2,
                                                        t.box[:2] + t.box[2:] / 2], 0, clip))
                  for t in theirs if t.image == i]
        else:
            ours = [(d.class_id, d.score) + tuple(darknet_printed(d.box, w, h)) for d in det(frame)]
            image_id = os.path.splitext(os.path.basename(path))[0]
            dn = [t[:2] + tuple(np.clip(t[2:], 1, clip)) for t in theirs.get(image_id, [])]
        m, e, _, _ = _match(dn, ours)
        missed, extra, total = missed + m, extra + e, total + len(dn)
    return missed, extra, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="yolov2-tiny-voc,yolov2-voc,yolo9000")
    ap.add_argument("--size", type=int, help="input size (default: each model's own)")
    ap.add_argument("--images", nargs="+", help="image files (default: the real photos)")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    args = ap.parse_args()
    from darknet_binary import (DARKNET, REALDATA, Probe, build_probe, frames_as_png,
                                real_photos, synthetic_frames)
    from detector.io.darknet_cfg import write_cfg
    from detector.io.darknet_weights import write_weights
    from detector.io.zoo import FILES_DIR
    from detector.models.spec import VOC_NAMES
    from test_darknet_reference import _detector, _state
    if DARKNET is None:
        print("darknet is not installed (apt-get install darknet)", file=sys.stderr)
        return 2
    work = os.path.abspath(args.out or tempfile.mkdtemp(prefix="darknet-parity-"))
    os.makedirs(work, exist_ok=True)
    images = args.images or (real_photos(PHOTOS) if os.path.isdir(REALDATA) else frames_as_png(
        synthetic_frames([(300, 451), (480, 360), (137, 211), (90, 90)]), work))
    probe = Probe(build_probe(work))
    print(f"{len(images)} images: " + ", ".join(os.path.basename(p) for p in images))
    print("model             size  input bit-exact  dets(thr 0)  max |box| px  max |score|  "
          "set: darknet  missed  extra")
    for name in args.models.split(","):
        size = args.size or SIZES[name]
        spec = model_spec(name, size)
        folder = os.path.join(work, name)
        os.makedirs(folder, exist_ok=True)
        cfg, weights = os.path.join(folder, f"{name}.cfg"), os.path.join(folder, f"{name}.weights")
        write_cfg(spec, cfg)
        write_weights(weights, spec, _state(spec, 1))
        names = ([line.strip() for line in open(os.path.join(FILES_DIR, "9k.names"))]
                 if name == "yolo9000" else list(VOC_NAMES))
        det = _detector(cfg, weights, names=names, conf=0.0)
        same, box, score, count = zero_threshold(probe, det, cfg, weights, images,
                                                 os.path.join(folder, "zero"))
        missed, extra, total = detection_sets(name, probe, cfg, weights, images, folder, names)
        print(f"{name:17s} {size:4d}  {str(same):15s}  {count:11d}  {box:12.2e}  {score:11.2e}  "
              f"{total:12d}  {missed:6d}  {extra:5d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
