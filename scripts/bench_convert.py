#!/usr/bin/env python
"""Conversion accuracy benchmark: original regular model vs ND vs ND+DD (before and after a
short fine-tune), end to end through the CLI.

    python scripts/bench_convert.py --weights runs/tiny/best.safetensors \
        --data synth/data.yaml --out bench/convert [--cut 3] [--epochs 10]

Steps (every command is printed and its output kept under --out):
1. choose the energy: the largest E on a grid whose converted layers' FLOPs drop by at least
   --cut (unless --energy or --terms is given; ``--terms 4,4,4,4,4,3,2`` sets T per
   converted layer);
2. ``detector eval`` of the original weights on the val split;
3. ``detector convert --method nd`` and ``--method dd --calib DATA``, each evaluated;
4. a short fine-tune of each converted model in --finetune (default: dd) with
   ``detector train --weights converted.safetensors`` and its evaluation;
5. a Markdown table (``table.md``) and all numbers (``results.json``) under --out.

The train command is a template (``--train-cmd``) so it can follow the trainer's options;
placeholders: {python} {weights} {spec} {data} {run} {epochs} {batch} {img_size}. ``--finetuned``
says where the fine-tuned checkpoint lands ({run} placeholder).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# a short fine-tune: AdamW at a tenth of the from-scratch rate, no multi-scale (evaluation is
# at one size), a smooth decay and the weight average
TRAIN_CMD = ("{python} -m detector train --weights {weights} --data {data} --out {run} "
             "--epochs {epochs} --batch {batch} --img-size {img_size} --no-multiscale "
             "--optimizer adamw --lr 0.0003 --burn-in 0.05 --schedule cosine --ema 0.99")
FINETUNED = "{run}/best.safetensors"
ENERGIES = [round(0.30 + 0.01 * i, 2) for i in range(70)]      # 0.30 .. 0.99


def run(cmd, log):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise SystemExit(f"command failed ({proc.returncode}), log {log}:\n{tail}")
    return time.perf_counter() - t


def evaluate(weights, args, name):
    out = os.path.join(args.out, f"eval_{name}.json")
    cmd = [sys.executable, "-m", "detector", "eval", "--weights", weights, "--data", args.data,
           "--split", args.split, "--json", out]
    if args.img_size:
        cmd += ["--img-size", str(args.img_size)]
    run(cmd, os.path.join(args.out, f"eval_{name}.log"))
    with open(out) as f:
        return json.load(f)


def choose_energy(args):
    """The largest energy on the grid whose converted layers' FLOPs drop >= --cut (the cut
    falls as the energy rises, so a binary search over the grid)."""
    from detector.api import read_model
    from detector.convert.decouple import plan_layers
    model = read_model(args.weights)

    def cut(e):
        plans, _ = plan_layers(model.spec, model.state, energy=e, size=args.img_size,
                               allocate=args.allocate)
        conv = [p for p in plans if p.action == "convert"]
        return sum(p.flops_before for p in conv) / sum(p.flops_after for p in conv)

    lo, hi = 0, len(ENERGIES) - 1
    if cut(ENERGIES[lo]) < args.cut:
        raise SystemExit(f"no energy >= {ENERGIES[0]} cuts the converted FLOPs {args.cut}x; "
                         "pass --terms")
    while lo < hi:                       # invariant: cut(ENERGIES[lo]) >= args.cut
        mid = (lo + hi + 1) // 2
        if cut(ENERGIES[mid]) >= args.cut:
            lo = mid
        else:
            hi = mid - 1
    return ENERGIES[lo], cut(ENERGIES[lo])


def write_spec_yaml(checkpoint, path):
    import yaml
    from detector.io.checkpoint import load_checkpoint
    spec = load_checkpoint(checkpoint)[0]
    with open(path, "w") as f:
        yaml.safe_dump(spec.to_dict(), f, sort_keys=False)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="trained regular checkpoint (.safetensors)")
    ap.add_argument("--data", required=True, help="dataset YAML with train and val splits")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--split", default="val")
    ap.add_argument("--img-size", type=int, default=None)
    ap.add_argument("--cut", type=float, default=3.0, help="FLOP cut of the converted layers")
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--energy", type=float)
    sel.add_argument("--terms", help="T, or T1,T2,... one per converted layer (instead of "
                                     "choosing an energy for --cut)")
    ap.add_argument("--allocate", choices=("channel", "layer"), default="channel",
                    help="detector convert --allocate (default channel)")
    ap.add_argument("--calib-images", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=10, help="fine-tune epochs")
    ap.add_argument("--batch", type=int, default=64, help="fine-tune batch")
    ap.add_argument("--finetune", default="dd", help="comma list of nd,dd to fine-tune ('' none)")
    ap.add_argument("--train-cmd", default=TRAIN_CMD)
    ap.add_argument("--finetuned", default=FINETUNED)
    return ap.parse_args()


def selection(args):
    """(the report's selection, the convert flags that make it), choosing the energy for
    --cut unless --terms or --energy is given."""
    if args.terms:
        return f"terms={args.terms}", ["--terms", str(args.terms)]
    if args.energy is None:
        args.energy, cut = choose_energy(args)
        print(f"energy {args.energy}: converted layers' FLOPs cut {cut:.2f}x")
    return f"energy={args.energy}", ["--energy", str(args.energy)]


def convert_and_evaluate(args, method, sel_args):
    """``detector convert --method METHOD``, then ``detector eval`` of the result: (table row,
    convert report)."""
    ck = os.path.join(args.out, f"{method}.safetensors")
    rep = os.path.join(args.out, f"{method}_report.json")
    size_args = ["--img-size", str(args.img_size)] if args.img_size else []
    cmd = [sys.executable, "-m", "detector", "convert", "--weights", args.weights,
           "--method", method, *sel_args, "--out", ck, "--report", rep, "--no-map",
           "--quiet", "--allocate", args.allocate, *size_args]
    if method == "dd":
        cmd += ["--calib", args.data, "--calib-images", str(args.calib_images)]
    secs = run(cmd, os.path.join(args.out, f"convert_{method}.log"))
    with open(rep) as f:
        report = json.load(f)
    ev = evaluate(ck, args, method)
    return ({"model": "ND" if method == "nd" else "ND+DD", "map": ev["voc07_map"], "eval": ev,
             "convert_seconds": secs, "report": rep}, report)


def finetune_and_evaluate(args, method, report):
    """The --train-cmd fine-tune of the converted ``method`` checkpoint and its evaluation
    (a table row)."""
    ck = os.path.join(args.out, f"{method}.safetensors")
    spec = os.path.join(args.out, f"{method}.yaml")
    write_spec_yaml(ck, spec)
    rundir = os.path.join(args.out, f"finetune_{method}")
    fields = dict(python=shlex.quote(sys.executable), weights=ck, spec=spec,
                  data=args.data, run=rundir, epochs=args.epochs, batch=args.batch,
                  img_size=args.img_size or report["img_size"])
    secs = run(shlex.split(args.train_cmd.format(**fields)),
               os.path.join(args.out, f"finetune_{method}.log"))
    ev = evaluate(args.finetuned.format(**fields), args, f"{method}_ft")
    return {"model": ("ND" if method == "nd" else "ND+DD")
            + f" + fine-tune ({args.epochs} epochs)", "map": ev["voc07_map"],
            "eval": ev, "train_seconds": secs}


def markdown_table(args, selection_text, rows, nd_report):
    net = nd_report["network"]
    lat = nd_report.get("latency") or {}
    base = rows[0]["map"]
    nan = float("nan")
    lines = [f"Conversion of {args.weights} ({selection_text}; converted layers' FLOPs "
             f"{net['converted_flops_before'] / 1e9:.2f} -> "
             f"{net['converted_flops_after'] / 1e9:.2f} GFLOPs, "
             f"x{net['converted_flops_ratio']:.2f}; network {net['flops_before'] / 1e9:.2f}"
             f" -> {net['flops_after'] / 1e9:.2f} GFLOPs; CPU ort "
             f"{lat.get('before_ms', nan):.1f} -> {lat.get('after_ms', nan):.1f} ms)",
             "", "| model | VOC07 mAP | vs original |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {100 * r['map']:.2f} | {100 * (r['map'] - base):+.2f} |")
    return "\n".join(lines) + "\n"


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    selection_text, sel_args = selection(args)
    results = {"weights": args.weights, "data": args.data, "selection": selection_text,
               "allocate": args.allocate, "rows": []}
    rows = results["rows"]
    ev = evaluate(args.weights, args, "original")
    rows.append({"model": "original (regular)", "map": ev["voc07_map"], "eval": ev})
    reports = {}
    for method in ("nd", "dd"):
        row, reports[method] = convert_and_evaluate(args, method, sel_args)
        rows.append(row)
    for method in [m for m in args.finetune.split(",") if m]:
        rows.append(finetune_and_evaluate(args, method, reports[method]))
    table = markdown_table(args, selection_text, rows, reports["nd"])
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(table)


if __name__ == "__main__":
    main()
