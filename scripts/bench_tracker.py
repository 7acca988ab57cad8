#!/usr/bin/env python3
"""What tracking costs per frame: ``Tracker.update`` on synthetic detections (a script, not a
test). Goal: under 1 ms per frame for 50 objects on this CPU.

N objects move over a 1920x1080 frame (random-walk velocities, bouncing off the borders,
crossing each other); each frame their boxes are jittered by a pixel or two, 5% are missed,
10% come with a low score and 3 stray boxes appear at random, so every stage of the tracker
runs (two-stage association, tentative tracks, lost tracks, recovery). The detections are
made before the clock starts; only ``update`` is timed, frame by frame, after a warm-up.

    python scripts/bench_tracker.py                      # 10, 50 and 100 objects
    python scripts/bench_tracker.py --objects 50 --json tracker.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.detection import Detection                            # noqa: E402
from detector.track import Tracker                                  # noqa: E402

W, H = 1920.0, 1080.0


def scene(n: int, frames: int, seed: int = 0):
    """Per frame, the list of detections of ``n`` moving objects (with misses, low scores
    and strays)."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(40, 120, (n, 2))
    pos = rng.uniform([0, 0], [W, H], (n, 2))
    vel = rng.uniform(-6, 6, (n, 2))
    cls = rng.integers(0, 6, n)
    out = []
    for _ in range(frames):
        vel += rng.normal(0, 0.3, vel.shape)
        pos += vel
        for k, lim in ((0, W), (1, H)):
            hit = (pos[:, k] < 0) | (pos[:, k] > lim)
            vel[hit, k] *= -1
        centre = pos + rng.normal(0, 1.0, pos.shape)
        wh = size + rng.normal(0, 1.0, size.shape)
        keep = rng.random(n) >= 0.05
        score = np.where(rng.random(n) < 0.1, rng.uniform(0.15, 0.45, n), rng.uniform(0.6, 0.95, n))
        dets = [Detection((float(c[0] - s[0] / 2), float(c[1] - s[1] / 2), float(c[0] + s[0] / 2),
                           float(c[1] + s[1] / 2)), float(p), int(k), "c")
                for c, s, p, k, ok in zip(centre, wh, score, cls, keep) if ok]
        for _ in range(3):
            x, y = rng.uniform(0, W), rng.uniform(0, H)
            dets.append(Detection((x, y, x + 50, y + 50), float(rng.uniform(0.3, 0.7)), 0, "c"))
        out.append(dets)
    return out


def bench(n: int, frames: int, warmup: int):
    seq = scene(n, frames + warmup)
    tracker = Tracker()
    times = []
    for i, dets in enumerate(seq):
        t0 = time.perf_counter()
        tracker.update(dets, frame_index=i)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"objects": n, "frames": frames, "median_ms": statistics.median(times),
            "p95_ms": times[int(0.95 * (len(times) - 1))], "mean_ms": statistics.fmean(times),
            "tracks_started": tracker.started, "active": tracker.active}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args()
    rows = [bench(n, args.frames, args.warmup) for n in args.objects]
    print(f"Tracker.update per frame ({platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, numpy {np.__version__}):")
    for r in rows:
        print(f"  {r['objects']:4d} objects: median {r['median_ms']:.3f} ms, p95 {r['p95_ms']:.3f} ms, "
              f"mean {r['mean_ms']:.3f} ms ({r['frames']} frames; {r['tracks_started']} tracks "
              f"started, {r['active']} active at the end)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
