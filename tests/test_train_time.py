"""``detector train --time MINUTES`` through the real CLI: the run ends within a few seconds of
its budget with best/last saved and its recipe recorded, a resumed timed run continues the
schedule it fitted, and a budget too short for one step is one line, exit 2."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, assert_user_error, cli_env, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.torch]

TINY = ["--model", "yolov2-tiny-voc-fastdsc", "--img-size", 64, "--seed", 5]
# One thread: on a machine whose cores are busy, torch's spinning thread pool makes steps of
# this tiny network erratic, and these tests are about time. Unbuffered: the lines a killed
# run printed are read.
ENV = cli_env(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    proc = run_cli("synth", out, "--train", 48, "--val", 16, "--size", 96, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    return str(out / "data.yaml")


def _state(path):
    import torch
    for _ in range(40):
        try:
            return torch.load(str(path), weights_only=True)
        except Exception:            # renamed into place while we looked: try again
            time.sleep(0.05)
    raise AssertionError(f"cannot read {path}")


def test_a_time_budget_ends_on_time_with_best_and_last_saved(synth, tmp_path):
    from detector.io.checkpoint import load_checkpoint
    out = tmp_path / "run"
    t = time.time()
    proc = run_cli("train", "--data", synth, "--out", out, "--time", 0.5, *TINY, timeout=600,
                   env=ENV)
    wall = time.time() - t
    assert proc.returncode == 0, proc.stderr[-3000:]
    used = float(re.search(r"time: ([\d.]+) of 0.5 minutes", proc.stdout).group(1)) * 60
    assert 30 - 5 <= used <= 30 + 3, proc.stdout[-2000:]        # from the first step
    assert wall >= 30
    recipe = [line for line in proc.stdout.splitlines() if line.startswith("recipe ")]
    assert len(recipe) == 1 and recipe[0].startswith("recipe fast (AdamW"), proc.stdout
    assert "for 0.5 minutes, about" in recipe[0] and "from random weights on cpu" in recipe[0]
    steps = int(re.search(r"(\d+) steps fitted to 0.5 minutes", proc.stdout).group(1))
    state = _state(out / "last.pt")
    assert state["progress"]["total_steps"] <= steps        # fewer only when behind its estimate
    assert state["progress"]["seen"] == state["progress"]["total_steps"] * state["options"]["batch"]
    for name in ("best.safetensors", "last.safetensors"):
        meta = load_checkpoint(str(out / name))[3]
        assert meta["recipe"].startswith("fast (AdamW"), meta
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "# " + recipe[0] and lines[1].startswith("epoch,seen,lr,loss")
    assert lines[-1].split(",")[-2] != ""                        # the last epoch validated


def test_a_resumed_timed_run_continues_the_schedule_it_fitted(synth, tmp_path):
    """Killed after its first epoch, a timed run resumes with the fitted length stored in its
    state (not a new fit) and the recipe it chose."""
    out, state = tmp_path / "run", tmp_path / "run" / "last.pt"
    cmd = [sys.executable, "-m", "detector", "train", "--data", synth, "--out", str(out),
           "--time", "0.75", "--workers", "0", *map(str, TINY)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and _state(state)["progress"]["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first epoch was saved"
    proc.send_signal(signal.SIGKILL)
    first = proc.communicate()[0]
    fitted = _state(state)["progress"]["total_steps"]
    assert f"{fitted} steps fitted to 0.75 minutes" in first
    resumed = run_cli("train", "--out", out, "--data", synth, "--resume", timeout=600, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{fitted} steps fitted to 0.75 minutes" in resumed.stdout
    recipe = [line for line in resumed.stdout.splitlines() if line.startswith("recipe ")]
    assert len(recipe) == 1 and recipe[0].endswith("(the run resumed)")
    assert recipe[0][:-len(" (the run resumed)")] in first
    progress = _state(state)["progress"]
    assert progress["total_steps"] <= fitted and progress["step"] == 0


def test_a_budget_too_short_for_one_step(synth, tmp_path):
    proc = run_cli("train", "--data", synth, "--out", tmp_path / "r", "--time", 0.005, *TINY)
    assert_user_error(proc, "--time 0.005: too short for this run")
    assert not (tmp_path / "r" / "last.pt").exists()
    assert_user_error(run_cli("train", "--data", synth, "--out", tmp_path / "r", "--time", 1,
                              "--epochs", 2, *TINY), "--time 1.0: replaces epochs")
