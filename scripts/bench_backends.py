#!/usr/bin/env python
"""ms per frame of detector.load("random:yolov2-voc-fastdsc") on one 416x416 frame, per backend
(torch, ort, emu), measured in one process in interleaved rounds (detector.timing).

    python scripts/bench_backends.py
"""
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detector                                      # noqa: E402
from detector.timing import time_interleaved        # noqa: E402

BACKENDS = ("torch", "ort", "emu")
CALLS = {"torch": 10, "ort": 10, "emu": 1}          # per round: the emulator is slow


def main() -> int:
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (416, 416, 3), dtype=np.uint8), (9, 9), 0)
    dets = {b: detector.load("random:yolov2-voc-fastdsc", backend=b, img_size=416) for b in BACKENDS}
    times = time_interleaved({b: (lambda d=d: d(frame)) for b, d in dets.items()}, rounds=3,
                             iters=CALLS, warmup=1)
    for b, rounds in times.items():
        ms = [1000 * float(np.mean(r)) for r in rounds]
        print(f"{b:6s} {np.median(ms):9.1f} ms/frame  (rounds: {', '.join('%.1f' % x for x in ms)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
