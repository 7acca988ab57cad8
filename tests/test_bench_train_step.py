"""scripts/bench_train_step.py runs its four variants in subprocesses and prints the table
(tiny sizes here: this checks the script, the figures are in docs/performance.md)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.torch]      # training steps in subprocesses

VARIANTS = ["default heap, fp32", "kept heap, fp32", "default heap, bf16", "kept heap, bf16"]
TINY = ["--model", "yolov2-tiny-voc-fastdsc", "--img-size", "64", "--batch", "2", "--rounds",
        "1", "--steps", "1"]


def bench(*args):
    proc = subprocess.run([sys.executable, "scripts/bench_train_step.py", *TINY, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_train_step_prints_every_variant_with_a_speedup():
    rows = [line for line in bench().splitlines() if "ms/step" in line]
    assert [r.split(" ms/step")[0].rsplit(None, 1)[0].strip() for r in rows] == VARIANTS
    for r in rows:
        ms = float(re.search(r"([\d.]+) ms/step", r).group(1))
        assert ms > 0


def test_baseline_checkout_is_timed_in_the_same_rounds_and_compared():
    """--baseline DIR: the rows of the other checkout (here the same one) and, per variant,
    the ratio of its step time to this tree's."""
    out = bench("--baseline", REPO).splitlines()
    rows = [line.split(" ms/step")[0].rsplit(None, 1)[0].strip() for line in out
            if "ms/step" in line]
    assert rows == VARIANTS + ["baseline " + v for v in VARIANTS]
    at = out.index("  this tree against the baseline (baseline ms / this ms, per round; median):")
    ratios = out[at + 1:at + 5]
    assert [r.split(" x")[0].strip() for r in ratios] == VARIANTS
    for r in ratios:
        assert float(re.search(r" x([\d.]+) ", r).group(1)) > 0
    assert subprocess.run([sys.executable, "scripts/bench_train_step.py", "--baseline",
                           "/nonexistent"], cwd=REPO, capture_output=True).returncode == 2
