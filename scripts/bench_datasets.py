#!/usr/bin/env python3
"""Time dataset reading in each layout: the same synthetic set as VOCdevkit, YOLO and COCO.

    python scripts/bench_datasets.py [--train 800] [--val 200] [--size 256] [--dir DIR]

For each layout, the index of the train split is built three times with the reader's cache in
a fresh folder: cold (every label parsed, every image decoded once), warm (the cache reused:
what every run after the first pays), and cold without image verification (sizes from image
headers, as ``eval --dets`` and ``anchors`` read); then one pass of ``dataset[i]`` over the
split (what a training epoch reads). Prints one table row per layout.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from detector.data import synth  # noqa: E402
from detector.data.dataset import open_dataset  # noqa: E402

FORMATS = ("voc", "yolo", "coco")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench(yaml_path: str, cache_root: str, fmt: str) -> str:
    cache = os.path.join(cache_root, fmt)
    ds, cold = timed(lambda: open_dataset(yaml_path, "train", cache=cache, workers=2))
    _, warm = timed(lambda: open_dataset(yaml_path, "train", cache=cache, workers=2))
    _, header = timed(lambda: open_dataset(yaml_path, "train", cache=cache + "-h",
                                           verify_images=False, workers=2))
    _, items = timed(lambda: [ds[i] for i in range(len(ds))])
    return (f"{fmt:<5} {len(ds):>6} {cold:>9.2f} {warm * 1000:>9.1f} {header:>10.2f} "
            f"{items / len(ds) * 1000:>10.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--dir", help="where to write the sets (default: a temporary folder)")
    args = ap.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="bench-datasets-")
    for fmt in FORMATS:
        synth.generate(os.path.join(base, fmt), args.train, args.val, args.size, seed=0,
                       workers=2, fmt=fmt)
    print(f"# {args.train} train images of {args.size} px in {base}; seconds unless noted")
    print(f"{'fmt':<5} {'images':>6} {'cold s':>9} {'warm ms':>9} {'header s':>10} "
          f"{'item ms':>10}")
    with tempfile.TemporaryDirectory() as cache_root:
        for fmt in FORMATS:
            print(bench(os.path.join(base, fmt, "data.yaml"), cache_root, fmt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
