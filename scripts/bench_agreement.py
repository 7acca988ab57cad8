#!/usr/bin/env python3
"""Conversion quality without labels: ND, DD and DD + distillation of one regular model at
several FLOP cuts, judged by agreement with the original on footage that neither calibration
nor distillation saw, and by mAP where a labelled val split exists.

For each cut (a ``--terms`` list), through the real CLI:

1. ``detector convert --method nd`` and ``--method dd`` with ``--calib FIT`` (DD fits on the
   fit part of FIT, both reports give the agreement on FIT's held-out part);
2. ``detector distill --teacher ORIGINAL --student dd.safetensors --data DISTILL`` (DISTILL
   defaults to FIT), its CPU seconds (user + system of the process) recorded;
3. ``detector compare ORIGINAL X --data JUDGE`` for every X: the agreement on other footage;
4. ``detector eval --weights X --data VAL`` (the original too), when ``--val-data`` is given.

Steps whose outputs exist are not run again, so an interrupted run continues. Results:
``OUT/results.json`` and a Markdown table on stdout.

    python scripts/bench_agreement.py --original runs/R3/best.safetensors \\
        --fit ../shared/realdata/video/bikes.mp4 ../shared/realdata/photos/mlnet \\
        --judge ../shared/realdata/video/carphone_pristine.mp4 ../shared/realdata/photos/skimage \\
        --val-data /work/synthv1k/data.yaml --img-size 256 --out bench/agreement \\
        --cuts 6,6,6,6,6,4,3 4,4,4,4,4,3,2 3,3,3,2,2,2,2 --distill-epochs 30
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args, log):
    """``python -m detector ARGS``; returns (CPU seconds of the child, wall seconds)."""
    cmd = [sys.executable, "-m", "detector", *map(str, args)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.time()
    print("$ detector " + " ".join(map(str, args)), file=log, flush=True)
    proc = subprocess.run(cmd, cwd=HERE, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def load(path):
    with open(path) as f:
        return json.load(f)


def step(path, args, log, times, key):
    """Run ``args`` unless ``path`` exists; keep its times under ``key``."""
    if not os.path.exists(path):
        times[key] = run(args, log)
    return path


def convert(a, cut, method, out, log, times):
    base = os.path.join(out, f"{cut}-{method}")
    step(base + ".json", ["convert", "--weights", a.original, "--method", method, "--terms",
                          cut, "--calib", *a.fit, "--calib-images", a.calib_images,
                          "--img-size", a.img_size, "--out", base + ".safetensors",
                          "--report", base + ".json", "--latency-runs", 0, "--no-map",
                          "--quiet"], log, times, f"{cut}-{method}")
    return base


def distill(a, cut, dd, out, log, times):
    base = os.path.join(out, f"{cut}-distill")
    args = ["distill", "--teacher", a.original, "--student", dd + ".safetensors", "--data",
            *(a.distill_data or a.fit), "--frames", a.distill_frames, "--epochs",
            a.distill_epochs, "--batch", a.batch, "--lr", a.lr, "--img-size", a.img_size,
            "--out", base + ".safetensors"]
    done = base + ".done"                  # the model is written every epoch: not a mark
    if not os.path.exists(done):
        resume = os.path.exists(base + ".distill")
        times[f"{cut}-distill"] = run(["distill", "--out", base + ".safetensors", "--resume"]
                                      if resume else args, log)
        open(done, "w").close()
    return base


def judge(a, base, log, times):
    """Agreement on the judge footage and mAP on the val split (cached as JSON)."""
    row = {}
    js = step(base + ".compare.json", ["compare", a.original, base + ".safetensors",
                                       "--data", *a.judge, "--frames", a.judge_frames,
                                       "--img-size", a.img_size, "--json",
                                       base + ".compare.json", "--quiet"], log, times,
              base + "-compare")
    c = load(js)
    row.update(agreement=c["agreement"], mean_iou=c["mean_iou"],
               reference_boxes=c["reference_boxes"], frames=c["frames"])
    if a.val_data:
        ev = step(base + ".eval.json", ["eval", "--weights", base + ".safetensors", "--data",
                                        a.val_data, "--img-size", a.img_size, "--json",
                                        base + ".eval.json"], log, times, base + "-eval")
        row["voc07_map"] = load(ev)["voc07_map"]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--original", required=True)
    p.add_argument("--fit", nargs="+", required=True, help="calibration footage")
    p.add_argument("--distill-data", nargs="+", help="distillation footage (default: --fit)")
    p.add_argument("--judge", nargs="+", required=True, help="footage to judge on")
    p.add_argument("--val-data", help="labelled dataset YAML (its val split) for mAP")
    p.add_argument("--cuts", nargs="+", required=True, help="--terms lists")
    p.add_argument("--out", required=True)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--calib-images", type=int, default=250)
    p.add_argument("--distill-frames", type=int, default=400)
    p.add_argument("--judge-frames", type=int, default=200)
    p.add_argument("--distill-epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--methods", nargs="+", default=["nd", "dd", "distill"])
    a = p.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    times_path = os.path.join(a.out, "times.json")
    times = load(times_path) if os.path.exists(times_path) else {}
    results = {"command": " ".join(sys.argv), "rows": []}
    with open(os.path.join(a.out, "log.txt"), "a") as log:
        if a.val_data:
            ev = step(os.path.join(a.out, "original.eval.json"),
                      ["eval", "--weights", a.original, "--data", a.val_data, "--img-size",
                       a.img_size, "--json", os.path.join(a.out, "original.eval.json")],
                      log, times, "original-eval")
            results["original_voc07_map"] = load(ev)["voc07_map"]
        for cut in a.cuts:
            bases = {}
            for method in ("nd", "dd"):
                if method in a.methods or (method == "dd" and "distill" in a.methods):
                    bases[method] = convert(a, cut, method, a.out, log, times)
            if "distill" in a.methods:
                bases["distill"] = distill(a, cut, bases["dd"], a.out, log, times)
            for method, base in bases.items():
                row = {"cut": cut, "method": method}
                rep = load((bases["dd"] if method == "distill" else base) + ".json")
                row["flops_ratio"] = rep["network"]["converted_flops_ratio"]
                if method != "distill":
                    row["held_out_agreement"] = rep["agreement"]["agreement"]
                else:
                    cpu, wall = times.get(f"{cut}-distill", (None, None))
                    row.update(distill_cpu_s=cpu, distill_wall_s=wall)
                row.update(judge(a, base, log, times))
                results["rows"].append(row)
                with open(times_path, "w") as f:
                    json.dump(times, f, indent=1)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table(results))
    return 0


def table(results) -> str:
    base = results.get("original_voc07_map")
    lines = ["| cut (converted layers) | conversion | agreement, judge footage | mean IoU | "
             "held-out agreement, fit footage | VOC07 mAP (synthetic val) | vs original | "
             "distillation CPU-s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["rows"]:
        m, cpu = r.get("voc07_map"), r.get("distill_cpu_s")
        mp = "-" if m is None else f"{100 * m:.2f}"
        delta = "-" if m is None or base is None else f"{100 * (m - base):+.2f}"
        lines.append(
            f"| {r['flops_ratio']:.2f}x ({r['cut']}) | {r['method']} | {_f(r['agreement'])} | "
            f"{_f(r['mean_iou'])} | {_f(r.get('held_out_agreement'))} | {mp} | {delta} | "
            f"{'-' if cpu is None else f'{cpu:.0f}'} |")
    if base is not None:
        lines.append(f"original VOC07 mAP {100 * base:.2f}")
    return "\n".join(lines)


def _f(v):
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
