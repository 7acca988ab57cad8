#!/usr/bin/env python3
"""The demo model, reproducibly: ``weights/demo-synth-tiny-fastdsc.safetensors`` (what
``make demo`` and the tracking figures run) is yolov2-tiny-voc-fastdsc trained from random
weights on the synthetic set by ``detector train`` with no recipe flags, stored in float16.

    python scripts/make_demo_weights.py                  # about 50 minutes on a 2-core CPU
    python scripts/make_demo_weights.py --out /tmp/demo.safetensors --epochs 1   # a quick look

Steps (each a ``detector`` command in a subprocess, printed before it runs):

1. ``detector synth DATA --train 4000 --val 200 --size 256 --seed 0 --clip-images 2000``
   unless DATA has a data.yaml: the stills of ``scripts/train_synth.sh`` and 2000 frames of
   moving clips (objects crossing and passing behind a post: the scenes a tracker meets;
   ``--train-images`` and ``--clip-images`` set the numbers; the val split is the stills');
2. ``detector train --model yolov2-tiny-voc-fastdsc --data DATA/data.yaml --out RUN
   --img-size 320 --epochs 8 --seed 0`` (320 px: the size of ``make demo``'s clip), or
   ``--resume`` where RUN holds a training state (a killed run goes on);
3. RUN/best.safetensors written to OUT with float16 tensors (half the file; the runtimes
   compute in float32 or their own precision) and a note naming this script;
4. ``detector eval --weights OUT --data DATA/data.yaml``: VOC07 mAP on the val split.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from detector.io.checkpoint import load_checkpoint, save_checkpoint   # noqa: E402

MODEL = "yolov2-tiny-voc-fastdsc"
KEPT = ("epoch", "voc07_map", "recipe")      # training metadata the demo file keeps


def run(*args: str) -> None:
    """One ``detector`` command; where it fails (it has said why), the script stops with
    its exit status."""
    cmd = [sys.executable, "-m", "detector", *args]
    print("+ detector " + " ".join(args), flush=True)
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rc = subprocess.run(cmd, env=env).returncode
    if rc:
        sys.exit(rc)


def write_fp16(src: str, dst: str, command: str) -> None:
    """``src`` (a checkpoint of ``detector train``) as ``dst`` with float16 tensors."""
    spec, state, names, meta = load_checkpoint(src)
    extra = {k: meta[k] for k in KEPT if k in meta}
    extra["note"] = (f"demo weights: {MODEL} trained from random weights on detector synth "
                     f"by scripts/make_demo_weights.py ({command}); float16 storage")
    save_checkpoint(dst, spec, {k: v.astype(np.float16) for k, v in state.items()}, names,
                    extra)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "data", "synth-demo"),
                    help="the synthetic set (made when it has no data.yaml)")
    ap.add_argument("--run", default=os.path.join(HERE, "runs", "demo-weights"),
                    help="the training run's folder")
    ap.add_argument("--out", default=os.path.join(HERE, "weights",
                                                  "demo-synth-tiny-fastdsc.safetensors"))
    ap.add_argument("--train-images", type=int, default=4000,
                    help="training images of a set made here (the val split is the same "
                         "200 images whatever the number)")
    ap.add_argument("--clip-images", type=int, default=2000,
                    help="clip frames in the train split of a set made here")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    data = os.path.join(a.data, "data.yaml")
    if not os.path.isfile(data):
        run("synth", a.data, "--train", str(a.train_images), "--val", "200", "--size", "256",
            "--seed", "0", "--clip-images", str(a.clip_images))
    if os.path.isfile(os.path.join(a.run, "last.pt")):
        run("train", "--data", data, "--out", a.run, "--resume")
    else:
        run("train", "--model", MODEL, "--data", data, "--out", a.run, "--img-size", "320",
            "--epochs", str(a.epochs), "--seed", str(a.seed))
    write_fp16(os.path.join(a.run, "best.safetensors"), a.out,
               f"--epochs {a.epochs} --seed {a.seed}")
    print(f"wrote {a.out}", flush=True)
    run("eval", "--weights", a.out, "--data", data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
