"""scripts/bench_train_step.py runs its four variants in subprocesses and prints the table
(tiny sizes here: this checks the script, the figures are in docs/performance.md)."""
from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_bench_train_step_prints_every_variant_with_a_speedup():
    proc = subprocess.run([sys.executable, "scripts/bench_train_step.py", "--model",
                           "yolov2-tiny-voc-fastdsc", "--img-size", "64", "--batch", "2",
                           "--rounds", "1", "--steps", "1"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [l for l in proc.stdout.splitlines() if "ms/step" in l]
    assert [r.split(" ms/step")[0].rsplit(None, 1)[0].strip() for r in rows] == [
        "default heap, fp32", "kept heap, fp32", "default heap, bf16", "kept heap, bf16"]
    for r in rows:
        ms = float(re.search(r"([\d.]+) ms/step", r).group(1))
        assert ms > 0
