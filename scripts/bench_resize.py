#!/usr/bin/env python3
"""What darknet's letterbox costs per frame against OpenCV's, on the CPU preprocess path
(a script, not a test). Both run through ``detector.preprocess.Preprocessor`` (buffers
allocated once, as the pipeline does), interleaved in one process; the ratio is taken round
by round and its median reported.

    python scripts/bench_resize.py                       # 640x480 and 1280x720 frames at 416
    python scripts/bench_resize.py --frames 1920x1080 --size 416 608 --json resize.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from detector.preprocess import Preprocessor         # noqa: E402
from detector.timing import time_interleaved         # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", nargs="+", default=["640x480", "1280x720"], help="WxH")
    ap.add_argument("--size", type=int, nargs="+", default=[416])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json", help="write the results as JSON")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    print("| frame | input | opencv ms (median) | darknet ms (median) | darknet / opencv |")
    print("|---|---:|---:|---:|---:|")
    for spec in args.frames:
        w, h = (int(v) for v in spec.lower().split("x"))
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for size in args.size:
            pre = {r: Preprocessor(size, resize=r) for r in ("opencv", "darknet")}
            times = time_interleaved({r: (lambda p=p, f=frame: p(f)) for r, p in pre.items()},
                                     rounds=args.rounds, iters=args.iters, warmup=3)
            med = {r: statistics.median(t for rnd in times[r] for t in rnd) * 1e3 for r in pre}
            ratio = statistics.median(min(d) / min(o) for d, o in
                                      zip(times["darknet"], times["opencv"]))
            rows.append({"frame": spec, "size": size, "opencv_ms": round(med["opencv"], 3),
                         "darknet_ms": round(med["darknet"], 3), "ratio": round(ratio, 2)})
            print(f"| {spec} | {size} | {med['opencv']:.2f} | {med['darknet']:.2f} | "
                  f"{ratio:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
