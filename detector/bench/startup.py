"""Load-to-first-detection (``detector bench --startup``): in fresh processes, cold (empty
cache) and warm."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from ..engine.model_file import random_if_spec
from ..host import CACHE_ENV
from .case import FRAME_H, FRAME_SEED, FRAME_W, log

_STARTUP = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import detector
from detector.engine.frames import synthetic_frame
frame = synthetic_frame(%d, %d, %d)
t1 = time.perf_counter()
det = detector.load(sys.argv[1])
t2 = time.perf_counter()
det(frame)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_frame_s": t3 - t2,
                  "load_to_first_detection_s": t3 - t1, "backend": det.backend}))
""" % (FRAME_W, FRAME_H, FRAME_SEED)

# the folder that holds the ``detector`` package
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def startup(model: str, runs: int = 2) -> dict:
    """A cold start (an empty cache dir) then ``runs`` warm ones; the fastest warm one counts."""
    out = {"model": model}
    with tempfile.TemporaryDirectory(prefix="fastdsc-startup-") as cache:
        env = dict(os.environ, XDG_CACHE_HOME=cache)
        env.pop(CACHE_ENV, None)
        env["PYTHONPATH"] = _ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for label in ["cold"] + ["warm"] * runs:
            r = _run_once(random_if_spec(model), env)
            if label == "cold":
                out["cold"] = r
            else:
                prev = out.get("warm")
                if prev is None or r["load_to_first_detection_s"] < prev["load_to_first_detection_s"]:
                    out["warm"] = r
            log(f"start-up {label}: load to first detection "
                f"{r['load_to_first_detection_s']:.2f} s (process {r['process_s']:.2f} s)")
    return out


def _run_once(model: str, env: dict) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _STARTUP, model], env=env,
                       capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"start-up run failed: {p.stderr.strip().splitlines()[-1:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["process_s"] = wall
    return r
