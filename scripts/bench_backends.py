#!/usr/bin/env python
"""ms per frame of detector.load("yolov2-voc-fastdsc") on one 416x416 frame, per backend
(torch, ort, emu), measured in one process in interleaved rounds (issue 2's figure).

    python scripts/bench_backends.py
"""
import time

import cv2
import numpy as np

import detector

rng = np.random.default_rng(0)
frame = cv2.GaussianBlur(rng.integers(0, 255, (416, 416, 3), dtype=np.uint8), (9, 9), 0)
dets = {b: detector.load("yolov2-voc-fastdsc", backend=b, img_size=416) for b in ("torch", "ort", "emu")}
for d in dets.values():
    d(frame)
times = {b: [] for b in dets}
for rnd in range(3):                       # interleaved rounds
    for b, d in dets.items():
        n = 1 if b == "emu" else 10
        t = time.perf_counter()
        for _ in range(n):
            d(frame)
        times[b].append((time.perf_counter() - t) / n * 1000)
for b, v in times.items():
    print(f"{b:6s} {np.median(v):9.1f} ms/frame  (rounds: {', '.join('%.1f' % x for x in v)})")
