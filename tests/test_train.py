"""Training end to end through the real CLI: it learns, it resumes exactly after SIGKILL,
it runs data-parallel under torchrun, and eval reads what train writes."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, assert_user_error, cli_env, run_cli

from detector.train.recipe import FAST_IOU_THRESH

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def _synth(tmp_path_factory, size):
    out = tmp_path_factory.mktemp(f"synth{size}")
    proc = run_cli("synth", out, "--train", 48, "--val", 16, "--size", size, "--seed", 3)
    assert proc.returncode == 0, proc.stderr
    return str(out / "data.yaml")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return _synth(tmp_path_factory, 96)


TRAIN = ["--model", "yolov2-tiny-voc-fastdsc", "--img-size", 64, "--batch", 8, "--workers", 1,
         "--seed", 11, "--lr", 0.002, "--burn-in", 0.05]


def csv_lines(path):
    """The lines of a metrics.csv without its ``# recipe ...`` comment line."""
    return [r for r in open(path).read().strip().splitlines() if not r.startswith("#")]


def weights(path):
    from safetensors.numpy import load_file
    return load_file(path)


def test_killed_five_times_at_random_points_resumes_to_the_same_weights(synth, tmp_path):
    """SIGKILL at 5 random points of one run (with a state save after every step, so some
    kills land inside a checkpoint write), resuming after each: the final weights equal an
    uninterrupted run's bit for bit. With the weight average and the cosine schedule (both
    part of the state), half the samples mosaics until the last epoch, and the uninterrupted
    run loading in the training process (--workers 0) where the killed ones use a loader
    process: batches must not depend on it."""
    epochs, steps_per_epoch = 5, 6                        # 48 images / batch 8
    args = ["train", "--data", synth, "--epochs", epochs, "--save-every", 1,
            "--val-every", epochs, *TRAIN, "--ema", 0.9, "--schedule", "cosine", "--multiscale",
            "--mosaic", 0.5]
    straight = run_cli(*args, "--workers", 0, "--out", tmp_path / "a", timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]

    rng = np.random.default_rng(int(os.environ.get("KILL_SEED", time.time_ns() % 2 ** 32)))
    kill_steps = sorted(rng.choice(np.arange(2, epochs * steps_per_epoch - 3), 5, replace=False))
    out, state = tmp_path / "b", tmp_path / "b" / "last.pt"
    kills = []
    for i, at in enumerate(kill_steps):
        cmd = [sys.executable, "-m", "detector", *map(str, args), "--out", str(out)]
        if i:
            cmd = [sys.executable, "-m", "detector", "train", "--out", str(out), "--data",
                   synth, "--resume", "--workers", "1"]
        log = open(tmp_path / f"run{i}.log", "w+")
        proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=log)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if state.exists() and _global_step(state, steps_per_epoch) >= at:
                break
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.3)))        # anywhere: mid-step or mid-write
        assert proc.poll() is None, open(log.name).read()[-3000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
        kills.append(_global_step(state, steps_per_epoch))
        _assert_no_process_left(str(out))           # its loader worker died with it
    assert len(kills) == 5 and kills[-1] < epochs * steps_per_epoch, kills
    resumed = run_cli("train", "--out", out, "--data", synth, "--resume", "--workers", 1,
                      timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = weights(str(tmp_path / "a" / "last.safetensors")), weights(str(out / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} after kills at {kills}")
    rows = csv_lines(out / "metrics.csv")
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(1, epochs + 1)]


def _assert_no_process_left(marker, wait=10.0):
    """No process whose command line names ``marker`` (the run directory) survives."""
    deadline = time.time() + wait
    while True:
        left = []
        for pid in os.listdir("/proc"):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        with open(f"/proc/{pid}/stat") as g:
                            if g.read().rsplit(")", 1)[1].split()[0] != "Z":
                                left.append(int(pid))
            except (OSError, ValueError, IndexError):
                continue
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    for pid in left:                                   # do not leak them from the test run
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes left behind by the killed trainer: {left}"


def _global_step(path, steps_per_epoch):
    p = _progress(path)
    return p["epoch"] * steps_per_epoch + p["step"]


def _progress(path):
    import torch
    for _ in range(20):
        try:
            return torch.load(str(path), weights_only=True)["progress"]
        except Exception:            # renamed into place while we looked: try again
            time.sleep(0.05)
    raise AssertionError(f"cannot read {path}")


def test_a_second_run_into_the_same_directory_is_refused(synth, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "last.pt").write_bytes(b"x")
    proc = run_cli("train", "--data", synth, "--out", tmp_path / "r", "--epochs", 1, *TRAIN)
    assert_user_error(proc, "already holds a training run", "--resume")
    proc = run_cli("train", "--data", synth, "--out", tmp_path / "none", "--resume")
    assert_user_error(proc, "no training state")


def test_a_run_over_the_same_images_many_times_trains_on_mosaics_then_whole_images(synth,
                                                                                   tmp_path):
    """No recipe flags on a run of 20 epochs: the recipe line says mosaics and why, the run
    line says which epochs see whole images, and the run trains to the end."""
    out = tmp_path / "r"
    proc = run_cli("train", "--data", synth, "--out", out, "--epochs", 20, "--val-every", 20,
                   "--model", "yolov2-tiny-voc-fastdsc", "--img-size", 64, "--batch", 8,
                   "--workers", 0, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recipe = [line for line in proc.stdout.splitlines() if line.startswith("recipe ")]
    assert len(recipe) == 1 and "mosaic 1," in recipe[0], proc.stdout
    assert "mosaics: 20 epochs (>= 20) over the same images" in recipe[0]
    assert f"truths on anchors over IoU {FAST_IOU_THRESH:g}," in recipe[0]
    assert "mosaic 1 (whole images in the last 2)" in proc.stdout
    assert len(csv_lines(out / "metrics.csv")) == 21
    assert open(out / "metrics.csv").readline().startswith("# recipe fast (")


@pytest.fixture(scope="module")
def synth128(tmp_path_factory):
    return _synth(tmp_path_factory, 128)


def test_training_learns_and_eval_reads_its_checkpoint(synth128, tmp_path):
    """~10k augmented images take a random network from mAP 0 to > 0.15 on the images it
    trained on: a broken loss, target assignment or augmentation stays near 0."""
    synth = synth128
    out = tmp_path / "run"
    proc = run_cli("train", "--data", synth, "--out", out, "--epochs", 200, "--val-every", 200,
                   "--no-multiscale", "--model", "yolov2-tiny-voc-fastdsc", "--img-size", 128,
                   "--batch", 8, "--seed", 11, "--optimizer", "adamw", "--lr", 0.003,
                   "--burn-in", 0.05, "--mosaic", 0, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r.split(",") for r in csv_lines(out / "metrics.csv")]
    head = rows[0]
    loss = [float(r[head.index("loss")]) for r in rows[1:]]
    assert loss[-1] < 0.5 * loss[0], loss
    res_json = tmp_path / "eval.json"
    proc = run_cli("eval", "--weights", out / "best.safetensors", "--data", synth, "--split",
                   "train", "--json", res_json, "--save-dets", tmp_path / "dets",
                   "--plots", tmp_path / "plots", "--backend", "ort")
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(res_json.read_text())
    assert res["voc07_map"] > 0.15, res         # learnt the training images
    assert set(res["per_class"]) == {"circle", "square", "triangle", "star", "cross", "ring"}
    assert res["images"] == 48 and res["fps"] > 0
    assert len(os.listdir(tmp_path / "plots")) >= 6
    q = run_cli("eval", "--weights", out / "best.safetensors", "--data", synth, "--split",
                "train", "--json", tmp_path / "int8.json", "--precision", "int8")
    assert q.returncode == 0, q.stderr[-3000:]
    int8 = json.loads((tmp_path / "int8.json").read_text())
    assert int8["voc07_map"] > 0.5 * res["voc07_map"], (int8, res)   # most accuracy kept
    assert_user_error(run_cli("eval", "--weights", out / "best.safetensors", "--data", synth,
                              "--precision", "int8", "--backend", "torch"),
                      "--precision int8 runs on the ort backend only")
    again = run_cli("eval", "--dets", tmp_path / "dets", "--data", synth, "--split", "train",
                    "--json", tmp_path / "again.json")
    assert again.returncode == 0, again.stderr
    res2 = json.loads((tmp_path / "again.json").read_text())
    assert abs(res2["voc07_map"] - res["voc07_map"]) < 1e-3


def test_final_size_trains_the_last_epoch_larger_and_validates_there(synth, tmp_path):
    """--final-size: the last epoch trains at that size, validation runs there, and
    best/last.safetensors carry it as their input size (what eval and detect default to)."""
    from detector.io.checkpoint import load_checkpoint
    out = tmp_path / "r"
    proc = run_cli("train", "--data", synth, "--out", out, "--epochs", 2, "--final-size", 96,
                   *TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the last 1 at 96 px, validated at 96 px" in proc.stdout + proc.stderr
    for name in ("best.safetensors", "last.safetensors"):
        assert load_checkpoint(str(out / name))[0].size == 96
    assert_user_error(run_cli("train", "--data", synth, "--out", tmp_path / "x",
                              "--final-epochs", 1, *TRAIN), "--final-epochs needs --final-size")
    assert_user_error(run_cli("train", "--data", synth, "--out", tmp_path / "y",
                              "--jitter", 0.5, *TRAIN), "--jitter 0.5: must be in [0, 0.45]")


def test_two_processes_under_torchrun(synth, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "detector", "train", "--data", synth, "--out", str(tmp_path / "ddp"),
           "--epochs", 1, "--val-every", 1, *map(str, TRAIN)]
    proc = subprocess.run(list(map(str, cmd)), cwd=REPO, env=cli_env(OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2 processes" in proc.stdout
    assert (tmp_path / "ddp" / "best.safetensors").exists()
    rows = csv_lines(tmp_path / "ddp" / "metrics.csv")
    assert len(rows) == 2          # rank 0 alone writes


def test_resumed_metrics_keep_only_the_epochs_the_state_completed(tmp_path):
    """A row written just before a kill (its state never saved) is dropped on resume and
    written again by the re-run epoch: no gap, no duplicate."""
    from detector.train.metrics import MetricsLog
    log = MetricsLog(str(tmp_path), tensorboard=False, append=False)
    for e in (1, 2, 3):
        log.epoch({"epoch": e, "seen": 8 * e, "loss": 1.0 / e})
    log.close()
    log = MetricsLog(str(tmp_path), tensorboard=False, append=True, upto_epoch=2)
    log.epoch({"epoch": 3, "seen": 24, "loss": 0.25})
    log.close()
    rows = (tmp_path / "metrics.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows] == ["epoch", "1", "2", "3"]
    assert rows[3].split(",")[3] == "0.25"


@pytest.mark.slow
def test_synthetic_benchmark_script_runs_end_to_end(tmp_path):
    """scripts/train_synth.sh (the CPU training benchmark) makes its dataset, trains, and
    evaluates at its validation size; here on 16 images for one epoch."""
    from detector.io.checkpoint import load_checkpoint
    run = tmp_path / "run"
    env = cli_env(DATA_DIR=str(tmp_path / "data"), TRAIN_IMAGES="16", EPOCHS="1",
                  PYTHON=sys.executable)
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "train_synth.sh"), str(run)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((run / "eval.json").read_text())
    assert res["images"] == 200 and 0.0 <= res["voc07_map"] <= 1.0
    assert load_checkpoint(str(run / "best.safetensors"))[0].size == 352
    rows = csv_lines(run / "metrics.csv")
    assert len(rows) == 2 and "voc07_map" in rows[0]


@pytest.mark.slow
def test_demo_weights_script_trains_and_stores_the_best_weights_in_float16(tmp_path):
    """scripts/make_demo_weights.py makes its set (stills and clip frames), trains with no
    recipe flags, writes the best weights in float16 with its note, and evaluates the written
    file; here on 12 stills and 4 clip frames for one epoch."""
    from detector.io.checkpoint import load_checkpoint, read_safetensors
    run, out = tmp_path / "run", tmp_path / "demo.safetensors"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "make_demo_weights.py"),
                           "--data", str(tmp_path / "data"), "--run", str(run), "--out", str(out),
                           "--train-images", "12", "--clip-images", "4", "--epochs", "1"],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "12 train + 4 clip frames / 200 val" in (tmp_path / "data" / "data.yaml").read_text()
    tensors, meta = read_safetensors(str(out))
    assert {v.dtype for v in tensors.values()} == {np.dtype(np.float16)}
    assert "make_demo_weights.py" in meta["note"] and meta["recipe"].startswith("fast (")
    spec, state, names, _ = load_checkpoint(str(out))
    best_spec, best, _, _ = load_checkpoint(str(run / "best.safetensors"))
    assert spec.size == 320 and spec.region.anchors == best_spec.region.anchors
    for k, v in best.items():     # float16 keeps 11 significant bits
        np.testing.assert_allclose(state[k], v, rtol=2 ** -10, atol=1e-4, err_msg=k)
    assert re.search(r"VOC07 mAP [0-9.]+  all-point mAP", proc.stdout), proc.stdout[-2000:]
