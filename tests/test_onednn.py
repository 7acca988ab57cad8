"""The torch oneDNN plan runner (``--precision bf16``) and the measured default CPU runtime."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import detector  # noqa: E402
from detector.engine.runners.ort import OrtRunner  # noqa: E402
from detector.engine.runners.torch_eager import TorchRunner  # noqa: E402
from detector.engine.cpu_choice import choice_path, choose_cpu_runner  # noqa: E402
from detector.engine.runners.torch_bf16 import OneDnnRunner, _pool2x2, bf16_supported  # noqa: E402
from detector.engine.plan import lower  # noqa: E402
from detector.errors import UserError  # noqa: E402
from detector.host import bf16_native  # noqa: E402
from detector.models.spec_yaml import load_spec  # noqa: E402

from conftest import REPO, assert_user_error, random_state, run_cli  # noqa: E402

DEMO = os.path.join(REPO, "weights", "demo-synth-tiny-fastdsc.safetensors")
needs_bf16 = pytest.mark.skipif(not bf16_supported(),
                                reason="no oneDNN bf16 convolutions on this CPU")


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def blob(size, seed=0):
    return np.random.default_rng(seed).random((1, 3, size, size), dtype=np.float32)


@pytest.mark.parametrize("model,size", [("yolov2-voc-fastdsc", 128),   # reorg, route, concat
                                        ("yolov2-tiny-voc", 160)])      # stride-1 maxpool
@pytest.mark.parametrize("fused", [True, False])
def test_fp32_plan_on_onednn_matches_the_torch_reference(model, size, fused):
    spec = load_spec(model)
    state = random_state(spec, seed=3)
    ref = TorchRunner(spec, state)(blob(size))
    r = OneDnnRunner(lower(spec, state, size), "fp32", fused=fused)
    assert r.fused == fused
    out = r(blob(size))
    assert out.shape == ref.shape and out.dtype == np.float32
    assert rel(out, ref) < 1e-4


@needs_bf16
def test_bf16_is_close_to_fp32_and_finds_the_same_objects(tmp_path):
    # a real picture from the synthetic set, through the trained demo weights
    assert run_cli("synth", tmp_path / "s", "--train", "1", "--val", "4", "--size", "256",
                   "--seed", "5").returncode == 0
    pics = sorted((tmp_path / "s").rglob("*.jpg"))
    fp32 = detector.load(DEMO, backend="torch")
    bf16 = detector.load(DEMO, precision="bf16")
    assert isinstance(bf16.runner, OneDnnRunner) and bf16.runner.precision == "bf16"
    found = 0
    for p in pics:
        frame = cv2.imread(str(p))
        b, _ = fp32.preprocess(frame)
        raw32, raw16 = fp32.forward(b.copy()), bf16.forward(b.copy())
        assert 0 < rel(raw16, raw32) < 2e-2       # bf16 really is used, and it is close
        d32, d16 = fp32(frame), bf16(frame)
        # every confident fp32 detection is found by bf16: same class, same box, same score
        # (near the threshold, NMS may keep a different one of two similar candidates; bf16's
        # 8-bit mantissa, through exp() of the box size, can move an edge by a few pixels)
        for x in [d for d in d32 if d.score > 0.5]:
            best = max((iou(x.box, y.box), y) for y in d16 if y.class_id == x.class_id)
            assert best[0] > 0.9 and abs(best[1].score - x.score) < 0.02
            found += 1
    assert found >= 4


def iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / u


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("c,h,w", [(3, 8, 6), (16, 32, 32), (33, 10, 14)])
def test_pool2x2_equals_max_pool2d(c, h, w, dtype):
    x = torch.randn(2, c, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
    assert torch.equal(_pool2x2(x), torch.nn.functional.max_pool2d(x, 2, 2))


@needs_bf16
def test_concurrent_calls_give_each_caller_its_own_result():
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    r = OneDnnRunner(lower(spec, random_state(spec), 96), "bf16")
    blobs = [blob(96, seed) for seed in range(4)]
    want = [r(b) for b in blobs]
    got = [None] * 4

    def work(i):
        for _ in range(5):
            got[i] = r(blobs[i])
            assert np.array_equal(got[i], want[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_the_default_cpu_runtime_is_measured_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    plan = lower(spec, random_state(spec), 128)
    backend, runner = choose_cpu_runner(plan, str(tmp_path))
    path = choice_path(plan, str(tmp_path))
    if not bf16_native():                  # nothing to choose: ORT, nothing stored
        assert backend == "ort" and not os.path.exists(path)
        return
    with open(path) as f:
        record = json.load(f)
    assert record["choice"] in ("ort", "bf16")
    assert len(record["ms"]["ort"]) == len(record["ms"]["bf16"]) in (3, 4, 5)
    assert (backend, type(runner)) == (("torch", OneDnnRunner) if record["choice"] == "bf16"
                                       else ("ort", OrtRunner))
    # the stored choice is what the next load uses, whichever it is
    flipped = "ort" if record["choice"] == "bf16" else "bf16"
    with open(path, "w") as f:
        json.dump(dict(record, choice=flipped), f)
    backend2, runner2 = choose_cpu_runner(plan, str(tmp_path))
    assert type(runner2) is (OneDnnRunner if flipped == "bf16" else OrtRunner)
    # an unreadable record is measured again
    with open(path, "w") as f:
        f.write("{not json")
    choose_cpu_runner(plan, str(tmp_path))
    with open(path) as f:
        assert json.load(f)["choice"] in ("ort", "bf16")


@needs_bf16
def test_load_picks_the_backend_from_the_options(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert isinstance(detector.load(DEMO, precision="bf16").runner, OneDnnRunner)
    assert isinstance(detector.load(DEMO, precision="int8").runner, OrtRunner)
    assert isinstance(detector.load(DEMO, threads=1).runner, OrtRunner)   # ORT's option
    assert isinstance(detector.load(DEMO, backend="torch").runner, TorchRunner)
    with pytest.raises(UserError, match="CPU"):
        detector.load(DEMO, backend="torch", precision="bf16", device="cuda")
    with pytest.raises(UserError, match="fp32, bf16"):
        detector.load(DEMO, backend="torch", precision="int8")
    with pytest.raises(UserError, match="runs fp32"):
        detector.load(DEMO, backend="emu", precision="bf16")


@needs_bf16
def test_eval_precision_bf16_runs_on_torch_only(tmp_path):
    data = tmp_path / "s"
    assert run_cli("synth", data, "--train", "1", "--val", "3", "--size", "128").returncode == 0
    out = tmp_path / "m.json"
    p = run_cli("eval", "--weights", DEMO, "--data", data / "data.yaml", "--img-size", "128",
                "--precision", "bf16", "--json", out)
    assert p.returncode == 0, p.stderr[-2000:]
    assert 0.0 <= json.loads(out.read_text())["voc07_map"] <= 1.0
    assert_user_error(run_cli("eval", "--weights", DEMO, "--data", data / "data.yaml",
                              "--precision", "bf16", "--backend", "ort"), "torch backend")


@needs_bf16
def test_detect_precision_picks_the_runtime_and_says_so(tmp_path):
    data = tmp_path / "s"
    assert run_cli("synth", data, "--train", "2", "--val", "0", "--size", "128").returncode == 0
    pic = sorted(data.rglob("*.jpg"))[0]
    for precision, backend in (("bf16", "torch"), ("fp32", "ort")):
        stats = tmp_path / f"{precision}.json"
        p = run_cli("detect", pic, "--weights", DEMO, "--precision", precision, "--stats-json",
                    stats, "--quiet")
        assert p.returncode == 0, p.stderr[-2000:]
        assert f"backend {backend} {precision}," in p.stderr
        got = json.loads(stats.read_text())
        assert (got["backend"], got["precision"]) == (backend, precision)
    assert_user_error(run_cli("detect", pic, "--weights", DEMO, "--precision", "bf16",
                              "--backend", "emu"), "runs fp32")


def test_a_cached_ort_choice_loads_without_importing_torch(tmp_path):
    script = f"""
import json, os, sys
from detector.api import read_model
from detector.engine.cpu_choice import choice_path
from detector.engine.plan import lower
m = read_model({DEMO!r})
path = choice_path(lower(m.spec, m.state, m.spec.size, m.names))
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump({{"choice": "ort"}}, f)
import detector
det = detector.load({DEMO!r})
print(det.backend, det.precision, "torch" in sys.modules)
"""
    from conftest import cli_env
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       env=cli_env(XDG_CACHE_HOME=str(tmp_path)), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["ort", "fp32", "False"]
