"""Synthetic camera frames for benchmarks and int8 calibration: deterministic for a seed,
real-looking enough to exercise the per-frame path as a camera frame does (smooth gradients,
textured objects with edges, sensor noise, a slight blur), with no files to download."""
from __future__ import annotations

import cv2
import numpy as np


def synthetic_frame(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A BGR uint8 frame of a street-like scene: sky, ground, buildings, cars, people."""
    rng = np.random.default_rng(seed)
    h, w = height, width
    horizon = int(h * rng.uniform(0.35, 0.55))
    y = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    sky_top, sky_low = rng.uniform(140, 250, 3), rng.uniform(180, 255, 3)
    ground_near, ground_far = rng.uniform(40, 110, 3), rng.uniform(90, 160, 3)
    img = np.empty((h, w, 3), np.float32)
    t = y[:horizon] / max(y[horizon - 1, 0, 0], 1e-6) if horizon > 1 else y[:horizon]
    img[:horizon] = sky_top * (1 - t) + sky_low * t
    t = (y[horizon:] - y[horizon]) / max(1.0 - float(y[horizon, 0, 0]), 1e-6)
    img[horizon:] = ground_far * (1 - t) + ground_near * t
    # buildings on the horizon, with windows
    x = 0
    while x < w:
        bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.15, 0.4) * h)
        color = rng.uniform(60, 200, 3)
        cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), color.tolist(), -1)
        for wy in range(horizon - bh + 6, horizon - 8, 14):
            for wx in range(x + 5, x + bw - 8, 12):
                cv2.rectangle(img, (wx, wy), (wx + 5, wy + 7), (color * 0.45).tolist(), -1)
        x += bw + int(rng.uniform(0, 0.05) * w)
    # cars and people on the ground, nearer ones larger
    for _ in range(int(rng.integers(3, 8))):
        depth = rng.uniform(0.1, 1.0)
        cy = int(horizon + depth * (h - horizon) * 0.9)
        cx = int(rng.uniform(0, w))
        if rng.random() < 0.5:
            cw, ch = int((0.08 + 0.22 * depth) * w), int((0.04 + 0.12 * depth) * h)
            color = rng.uniform(0, 255, 3).tolist()
            cv2.rectangle(img, (cx - cw // 2, cy - ch), (cx + cw // 2, cy), color, -1)
            cv2.rectangle(img, (cx - cw // 3, cy - ch - ch // 2), (cx + cw // 3, cy - ch),
                          [c * 0.7 for c in color], -1)
            for wx in (cx - cw // 3, cx + cw // 3):
                cv2.circle(img, (wx, cy), max(2, ch // 3), (20, 20, 20), -1)
        else:
            ph = int((0.08 + 0.3 * depth) * h)
            pw = max(3, ph // 4)
            cv2.rectangle(img, (cx - pw // 2, cy - ph), (cx + pw // 2, cy - ph // 3),
                          rng.uniform(0, 255, 3).tolist(), -1)
            cv2.rectangle(img, (cx - pw // 2, cy - ph // 3), (cx + pw // 2, cy),
                          rng.uniform(0, 120, 3).tolist(), -1)
            cv2.circle(img, (cx, cy - ph - pw // 2), max(2, pw // 2),
                       rng.uniform(120, 230, 3).tolist(), -1)
    img = cv2.GaussianBlur(img, (3, 3), 0.8)
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)        # sensor noise
    return np.clip(img, 0, 255).astype(np.uint8)
