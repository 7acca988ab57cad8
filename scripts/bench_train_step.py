#!/usr/bin/env python
"""Training-step benchmark on the CPU: what the heap setting and bf16 autocast buy.

    python scripts/bench_train_step.py [--model yolov2-tiny-voc-fastdsc yolov2-tiny-voc]
        [--img-size 256] [--batch 16] [--rounds 3] [--steps 5] [--baseline DIR]

For each model, four variants of one training step (forward, region loss, backward, the
trainer's AdamW step; random images and boxes, so no dataset is needed): glibc's default heap or
``detector.heap.keep_freed_memory()``, each in fp32 and under bf16 autocast (what
``detector train --amp auto`` uses on CPUs with native bf16). The heap setting cannot be
undone inside a process, so every variant runs in a fresh subprocess, the variants
alternating round by round; the table gives the median step time over rounds and the
speed-up against the plain fp32 variant.

``--baseline DIR`` also times the package of another checkout (e.g. ``git worktree add
/tmp/base HEAD~1``) in the same rounds, interleaved with this one, and prints its rows
below this tree's with the ratio of the two (baseline time / this time: above 1 is faster
here).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
model_name, size, batch, steps, keep, bf16 = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), sys.argv[6] == "1", sys.argv[7] == "1"
from detector.heap import keep_freed_memory
if keep:
    keep_freed_memory()
from detector.models.spec import with_classes
try:
    from detector.models.spec_yaml import load_spec
except ImportError:                 # a --baseline checkout that reads specs in models.spec
    from detector.models.spec import load_spec
from detector.models.yolov2 import YOLOv2
from detector.train.region_loss import RegionLoss
spec = with_classes(load_spec(model_name).replace(size=size), 6, [str(i) for i in range(6)])
torch.manual_seed(0)
model = YOLOv2(spec)
model.set_pointwise("conv")
model.to(memory_format=torch.channels_last).train()
loss_fn = RegionLoss.from_spec(spec)
try:                                # the trainer's optimizer (its kernels), at a fixed rate
    from detector.train.trainer import make_optimizer
    opt = make_optimizer(model, "adamw", spec.train)
    for g in opt.param_groups:
        g["lr"] = 1e-4
except ImportError:                 # a --baseline checkout from before make_optimizer
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
rng = np.random.default_rng(0)
targets = []
for _ in range(batch):
    n = 3
    wh = rng.uniform(0.1, 0.4, (n, 2))
    xy = rng.uniform(0.25, 0.75, (n, 2))
    targets.append(torch.tensor(np.c_[rng.integers(0, 6, n), xy, wh], dtype=torch.float32))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        raw = model(x)
    loss_fn(raw.float(), targets, seen=100000).total.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
for _ in range(2):
    step()
times = []
for _ in range(steps):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
print(json.dumps({"ms": 1e3 * float(np.median(times))}))
"""

VARIANTS = [("default heap, fp32", "0", "0"), ("kept heap, fp32", "1", "0"),
            ("default heap, bf16", "0", "1"), ("kept heap, bf16", "1", "1")]


def time_variant(repo: str, model: str, args, keep: str, bf16: str) -> float:
    """Median milliseconds of one step of the variant, in a fresh subprocess on ``repo``."""
    out = subprocess.run([sys.executable, "-c", CHILD, repo, model, str(args.img_size),
                          str(args.batch), str(args.steps), keep, bf16],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"error: the step failed on {repo}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["ms"]


def median(xs: List[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def print_rows(times: Dict[str, List[float]], batch: int, mark: str = "") -> None:
    base = median(times[VARIANTS[0][0]])
    for name, _, _ in VARIANTS:
        med = median(times[name])
        print(f"  {mark}{name:20s} {med:8.1f} ms/step  {batch / med * 1e3:6.1f} img/s  "
              f"x{base / med:.2f}   (rounds: {', '.join(f'{t:.0f}' for t in times[name])})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", nargs="+", default=["yolov2-tiny-voc-fastdsc", "yolov2-tiny-voc"])
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per subprocess")
    ap.add_argument("--baseline", metavar="DIR",
                    help="another checkout to time in the same rounds, interleaved")
    args = ap.parse_args()
    trees = [("", REPO)]
    if args.baseline:
        if not os.path.isdir(os.path.join(args.baseline, "detector")):
            ap.error(f"--baseline {args.baseline}: no detector package there")
        trees.append(("baseline ", os.path.abspath(args.baseline)))
    for m in args.model:
        times = {(t, v[0]): [] for t, _ in trees for v in VARIANTS}
        for r in range(args.rounds):
            for name, keep, bf16 in VARIANTS:
                for tree, repo in trees if r % 2 == 0 else trees[::-1]:
                    times[tree, name].append(time_variant(repo, m, args, keep, bf16))
            print(f"{m}: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        print(f"{m} @ {args.img_size} px, batch {args.batch}, {args.rounds} rounds")
        for tree, _ in trees:
            print_rows({name: times[tree, name] for name, _, _ in VARIANTS}, args.batch, tree)
        if args.baseline:
            print("  this tree against the baseline (baseline ms / this ms, per round; median):")
            for name, _, _ in VARIANTS:
                ratios = [b / a for a, b in zip(times["", name], times["baseline ", name])]
                print(f"    {name:20s} x{median(ratios):.3f}   "
                      f"(rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
