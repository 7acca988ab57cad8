"""Label-free distillation (``detector distill``, ``convert --distill-epochs``): it raises the
agreement of a student with its teacher, resumes bit for bit after SIGKILL, keeps the frames
of a live source in its run, and reports through ``convert``."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import REPO, assert_user_error, cli_env, run_cli  # noqa: E402
from distill_helpers import HEAD, LoopingMjpeg, save_teacher, write_images  # noqa: E402
from stream_helpers import frame_image  # noqa: E402

from detector.convert import ConvertOptions, convert  # noqa: E402
from detector.distill import DistillOptions, distill  # noqa: E402
from detector.io.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """(teacher, student, footage folder): the student is the teacher converted by ND with
    one term per channel and a head whose weights are disturbed, so it agrees with its
    teacher on some boxes only."""
    root = tmp_path_factory.mktemp("distill")
    teacher = save_teacher(str(root / "teacher.safetensors"))
    res = convert(ConvertOptions(teacher, "nd", terms=1, img_size=64, latency_runs=0,
                                 progress=False))
    state = dict(res.state)
    w = state[HEAD + ".weight"]
    rng = np.random.default_rng(0)
    state[HEAD + ".weight"] = (w + w.std() * rng.standard_normal(w.shape)).astype(np.float32)
    student = str(root / "student.safetensors")
    save_checkpoint(student, res.spec, state, res.names)
    return teacher, student, write_images(root / "imgs", 40)


@pytest.fixture
def looping_stream():
    frames = [frame_image(10 * i, 96, 72) for i in range(5)]
    stream = LoopingMjpeg(frames)
    yield stream, frames
    stream.close()


def weights(path):
    return load_checkpoint(path)[1]


def test_distillation_raises_agreement(case, tmp_path):
    teacher, student, folder = case
    lines = []
    out = str(tmp_path / "d.safetensors")
    row = distill(DistillOptions(out=out, teacher=teacher, student=student, data=folder,
                                 epochs=5, batch=4, img_size=64, lr=2e-3), log=lines.append)
    start = float(lines[1].split("agreement ")[1].split()[0])
    assert lines[1].startswith("start: ") and start < 0.8, lines
    assert row["best_agreement"] > start + 0.15, (start, row)
    assert row["epoch"] == 5 and row["loss"] > 0
    run = str(tmp_path / "d.distill")
    assert sorted(os.listdir(run)) == ["best.safetensors", "last.pt", "last.safetensors",
                                       "metrics.csv"]
    for k, v in weights(out).items():                         # out is the best
        np.testing.assert_array_equal(v, weights(os.path.join(run, "best.safetensors"))[k])
    rows = open(os.path.join(run, "metrics.csv")).read().splitlines()
    assert rows[0].split(",")[-4:] == ["agreement", "mean_iou", "voc07_map", "voc_map"]
    assert len(rows) == 6
    import detector
    det = detector.load(out, backend="torch")
    assert det.spec.name == "mini-nd" and det.names == detector.load(teacher).names


def test_resume_after_sigkill_is_bit_identical(case, tmp_path):
    """A run killed in the middle of an epoch and resumed ends with the weights of an
    uninterrupted run, bit for bit (its output file and its last weights)."""
    teacher, student, folder = case
    args = ["distill", "--teacher", teacher, "--student", student, "--data", folder,
            "--epochs", 3, "--batch", 4, "--img-size", 64, "--save-every", 1, "--ema", 0.9,
            "--lr", 2e-3]
    straight = run_cli(*args, "--out", tmp_path / "a.safetensors", timeout=900)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "best agreement on the held-out footage" in straight.stdout
    out = str(tmp_path / "b.safetensors")
    state = tmp_path / "b.distill" / "last.pt"
    log = open(tmp_path / "run.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "detector", *map(str, args), "--out", out],
                            cwd=REPO, env=cli_env(), stdout=log, stderr=log)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and _step(state) >= 11:                # inside epoch 2
            break
        time.sleep(0.02)
    assert proc.poll() is None, open(log.name).read()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    resumed = run_cli("distill", "--out", out, "--resume", timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for name in ("a.safetensors", "a.distill/last.safetensors"):
        a = weights(str(tmp_path / name))
        b = weights(str(tmp_path / name.replace("a", "b", 1)))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}: {k}")


def _step(path):
    for _ in range(20):
        try:
            p = torch.load(str(path), weights_only=True)["progress"]
            return p["epoch"] * 8 + p["step"]
        except Exception:             # renamed into place while we looked: try again
            time.sleep(0.05)
    raise AssertionError(f"cannot read {path}")


def test_live_frames_are_kept_in_the_run(case, tmp_path, looping_stream):
    """Frames of a live source are written into the run; a resumed run reads them there."""
    from detector.distill.trainer import FOOTAGE_DIR, load_footage
    teacher, student, _ = case
    stream, _ = looping_stream
    out = str(tmp_path / "l.safetensors")
    distill(DistillOptions(out=out, teacher=teacher, student=student, data=stream.url,
                           frames=5, epochs=1, batch=2, img_size=64), log=lambda _: None)
    fit, held = load_footage(str(tmp_path / "l.distill" / FOOTAGE_DIR / "index.json"))
    assert (len(fit), len(held)) == (4, 1) and all(f.live for f in fit.frames)
    assert fit.image(0).shape == (72, 96, 3)


def test_convert_then_distill(case, tmp_path):
    teacher, _, folder = case
    out, rep = str(tmp_path / "c.safetensors"), str(tmp_path / "r.json")
    proc = run_cli("convert", "--weights", teacher, "--method", "dd", "--terms", "1",
                   "--calib", folder, "--calib-images", "16", "--img-size", "64", "--out", out,
                   "--report", rep, "--latency-runs", "0", "--distill-epochs", "2",
                   "--distill-batch", "4", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distillation: 2 epochs" in proc.stdout
    with open(rep) as f:
        report = json.load(f)
    d = report["distill"]
    assert d["epochs"] == 2 and d["before"]["frames"] == 2 == report["agreement"]["frames"]
    assert report["agreement"]["agreement"] == pytest.approx(d["best_agreement"])
    meta = _meta(out)                          # the conversion's record is kept
    assert json.loads(meta["convert"])["method"] == "dd" and "distill" in meta
    assert os.path.isfile(os.path.join(str(tmp_path / "c.distill"), "last.pt"))


def _meta(path):
    return load_checkpoint(path)[3]


def test_distill_errors_are_one_line(case, tmp_path):
    teacher, student, folder = case
    out = str(tmp_path / "e.safetensors")
    assert_user_error(run_cli("distill", "--student", student, "--data", folder, "--out", out),
                      "--teacher")
    assert_user_error(run_cli("distill", "--teacher", teacher, "--student", student, "--data",
                              folder, "--out", str(tmp_path / "e.pt")), "--out", ".safetensors")
    assert_user_error(run_cli("distill", "--out", out, "--resume"), "--resume",
                      "no training state")
    from convert_helpers import MINI
    from detector.models.spec_yaml import spec_from_dict
    other = dict(MINI, classes=3, names=["a", "b", "c"])
    other["layers"] = MINI["layers"][:-1] + [dict(MINI["layers"][-1], filters=16)]
    from detector.models.params import init_params
    spec = spec_from_dict(other)
    path = str(tmp_path / "other.safetensors")
    save_checkpoint(path, spec, init_params(spec, 0))
    assert_user_error(run_cli("distill", "--teacher", path, "--student", student, "--data",
                              folder, "--out", out), "classes")
