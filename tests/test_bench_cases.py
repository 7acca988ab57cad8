"""The benchmark's case table and its parts that need no timing: which cases exist and run
by default, how a case that cannot run here is reported, the GPU cases' code paths on the CPU
(the kernel engine under the emulator, the torch model in half precision), the targets and
the per-layer tables."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import sys

import numpy as np
import pytest

from conftest import HAS_TORCH, REPO, assert_user_error, cli_env, run_cli
from detector.bench import ALL_CASES, CASES, OURS, PEERS, TARGETS, BenchOptions
from detector.bench import gpu
from detector.bench.case import FRAME_H, FRAME_SEED, FRAME_W, Case, Timed
from detector.bench.cases import build_cases, select_cases
from detector.bench.report import print_report, summarise, targets
from detector.bench.subject import Records, Subject
from detector.errors import ParamError
from detector.host import cuda_device_present

GPU_CASES = ("cuda", "cuda-fp16", "torch-cuda", "torch-cuda-fp16", "trt")
NO_GPU = not cuda_device_present()


def test_the_table_names_every_case_once():
    assert set(OURS) | set(PEERS) == set(ALL_CASES) and not set(OURS) & set(PEERS)
    assert {"ort-bare", "opencv-dnn", "torch-cuda", "torch-cuda-fp16", "trt"} == set(PEERS)
    assert set(GPU_CASES) <= set(ALL_CASES)
    assert all(CASES[c].when == "gpu" for c in GPU_CASES)
    assert all(d.about and d.when in ("default", "gpu", "opt-in") for d in CASES.values())


@pytest.mark.skipif(not NO_GPU, reason="the default run has the GPU cases on this machine")
def test_default_cases_without_a_gpu():
    names = select_cases(None)
    assert "ort-int8" not in names and not set(GPU_CASES) & set(names)
    assert names == [c for c in ALL_CASES if CASES[c].when == "default"]
    with_int8 = select_cases(None, int8=True)
    assert with_int8[with_int8.index("ort") + 1] == "ort-int8"


def test_case_selection_keeps_order_and_refuses_unknown_names():
    assert select_cases(["trt", "ort", "trt"]) == ["trt", "ort"]
    assert select_cases(["frame"], int8=True) == ["ort-int8", "frame"]
    with pytest.raises(ParamError) as e:
        select_cases(["ort", "tensorflow"])
    assert e.value.param == "backends" and e.value.value == "tensorflow"


def test_options_name_the_bad_parameter():
    for opts, param in ((BenchOptions(rounds=0), "rounds"), (BenchOptions(warmup=-1), "warmup"),
                        (BenchOptions(sizes=[33]), "sizes"), (BenchOptions(models=[]), "models"),
                        (BenchOptions(backends=["nope"]), "backends"),
                        (BenchOptions(threads=0), "threads")):
        with pytest.raises(ParamError) as e:
            opts.check()
        assert e.value.param == param
        assert not str(e.value).startswith("--")        # the library names parameters


def test_help_lists_every_case_last():
    p = run_cli("bench", "--help")
    assert p.returncode == 0, p.stderr
    epilog = p.stdout[p.stdout.index("cases (--backends"):]
    for name in ALL_CASES:
        assert f"\n  {name} " in epilog, name
    # scripts/gpu_check.py --dry-run reads the last 12 lines of the help for the GPU cases
    tail = " ".join(p.stdout.strip().splitlines()[-12:])
    assert all(c in tail for c in GPU_CASES)


def test_a_plan_file_is_refused_naming_the_model_flag(tmp_path):
    plan = tmp_path / "tiny.safetensors"
    p = run_cli("export", "--weights", "random:yolov2-tiny-voc-fastdsc", "--format", "plan",
                "--img-size", "64", "--out", plan)
    if p.returncode != 0:
        pytest.skip(f"cannot write a plan here: {p.stderr.strip()[-200:]}")
    assert_user_error(run_cli("bench", "--model", plan, "--backends", "ort", "--rounds", "1"),
                      "--model", "lowered plan")


@pytest.mark.skipif(not NO_GPU, reason="the GPU case runs on this machine")
def test_a_gpu_case_without_a_gpu_is_a_clean_skip(tmp_path):
    out = tmp_path / "b.json"
    p = run_cli("bench", "--model", "yolov2-tiny-voc-fastdsc", "--img-size", "64",
                "--backends", "cuda-fp16", "--rounds", "1", "--json", out,
                env=cli_env(XDG_CACHE_HOME=str(tmp_path / "xdg")))
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["results"] == [] and r["goals"] == []
    assert r["skipped"] == [{"model": "yolov2-tiny-voc-fastdsc", "size": 64, "impl": "cuda-fp16",
                             "reason": "no NVIDIA GPU here"}]
    assert "skipped yolov2-tiny-voc-fastdsc@64/cuda-fp16: no NVIDIA GPU here" in p.stdout
    assert "Traceback" not in p.stderr


def test_gpu_check_dry_run_finds_the_bench_ready(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check_for_bench",
                                                  os.path.join(REPO, "scripts", "gpu_check.py"))
    gc = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = gc                  # dataclasses look their module up there
    spec.loader.exec_module(gc)
    ctx = gc.Context(str(tmp_path), str(tmp_path), gc.DEVICE_PYTHON, 0.0, True, cli_env())
    assert set(gc.BENCH_CASES) <= set(ALL_CASES)
    assert gc.step_bench(ctx)["status"] == "ready"


# ---- the cases of one subject, built here ---------------------------------------------------------

@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    from detector.engine.frames import synthetic_frame
    work = tmp_path_factory.mktemp("bench-subject")
    frame = synthetic_frame(FRAME_W, FRAME_H, FRAME_SEED)
    return Subject("yolov2-tiny-voc-fastdsc", 64, frame, ["trt", "torch-cuda"], str(work),
                   Records(), tune=False)


def test_unavailable_gpu_peers_are_skipped_with_their_reason(subject):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    skipped = []
    names = ["trt"] + (["torch-cuda", "torch-cuda-fp16"] if HAS_TORCH and NO_GPU else [])
    assert build_cases(subject, names, skipped) == []
    reasons = {s["impl"]: s["reason"] for s in skipped}
    assert "tensorrt" in reasons["trt"].lower()
    for name in names[1:]:
        assert reasons[name] == "torch sees no CUDA device"


def test_kernel_case_path_on_the_emulator_with_per_op_times(subject):
    """The cuda cases' builder and --layers rows, with the emulator in place of the GPU."""
    timed = gpu.kernels(subject, "fp16", backend="emu")
    assert timed.device == "cpu" and "fp16" in timed.note
    out = timed.fn()
    assert out.shape == (1, 125, 2, 2) and np.isfinite(out).all()
    rows = timed.layers(1)
    assert [r["op"] for r in rows] == [op.name for op in subject.plan.ops]
    assert {"regular", "depthwise", "pointwise", "maxpool"} <= {r["kind"] for r in rows}
    assert all(r["ms"] > 0 and r["path"] for r in rows)


@pytest.mark.torch
def test_torch_gpu_case_path_on_the_cpu(subject):
    """The torch-cuda cases' builder (float32 and half precision) on the CPU."""
    fp32 = gpu.torch_cuda(subject, device="cpu")
    want = fp32.fn()
    half = gpu.torch_cuda(subject, half=True, device="cpu")
    got = half.fn()
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()


# ---- report --------------------------------------------------------------------------------------

def fake_case(model, impl, ms, device="cpu", size=416):
    fam = model[:-len("-fastdsc")] if model.endswith("-fastdsc") else model
    c = Case(model, size, impl, fam, model != fam, 1.0, impl in OURS,
             Timed(lambda: None, impl, device=device))
    c.times = [[ms / 1e3, ms / 1e3]] * 3
    return c


def test_targets_and_peers_on_the_same_device():
    cases = [fake_case("yolov2-voc", "opencv-dnn", 120.0),
             fake_case("yolov2-voc-fastdsc", "frame", 15.0),
             fake_case("yolov2-voc-fastdsc", "ort-bare", 20.0),
             fake_case("yolov2-voc-fastdsc", "cuda", 2.0, device="gpu"),
             fake_case("yolov2-voc-fastdsc", "torch-cuda", 4.0, device="gpu")]
    goals = {g["goal"]: g for g in targets(cases)}
    assert set(goals) == {"yolov2-voc-fastdsc@416 frame vs OpenCV-DNN yolov2-voc",
                          "yolov2-voc-fastdsc@416 frame vs bare ORT (network only) on the "
                          "same graph"}
    ocv = goals["yolov2-voc-fastdsc@416 frame vs OpenCV-DNN yolov2-voc"]
    assert ocv["speedup"] == pytest.approx(8.0) and ocv["pass"] and ocv["target"] == 6.0
    assert {t.family for t in TARGETS} == {"yolov2-voc", "yolov2-tiny-voc"}
    rows = {r["impl"]: r for r in summarise(cases, peak=100.0)}
    # a GPU case is compared with the GPU peers, a CPU case with the CPU ones
    assert rows["cuda"]["fastest_peer"].endswith("/torch-cuda")
    assert rows["cuda"]["vs_fastest_peer"] == pytest.approx(2.0)
    assert rows["frame"]["fastest_peer"].endswith("/ort-bare")
    assert rows["cuda"]["vs_opencv_regular"] == pytest.approx(60.0)
    assert rows["cuda"]["device"] == "gpu" and rows["frame"]["scope"] == "frame"


def test_report_prints_the_kernel_layers():
    cases = [fake_case("yolov2-tiny-voc-fastdsc", "cuda-fp16", 1.0, device="gpu")]
    result = {"date": "D", "rounds": 3, "roofline": {}, "skipped": [], "goals": [],
              "machine": {"cpu": "C", "physical_cores": 2, "onnxruntime": None, "torch": None,
                          "opencv": "4"},
              "results": summarise(cases, 0.0),
              "cuda_layers": {"yolov2-tiny-voc-fastdsc@416/cuda-fp16": [
                  {"op": "layers.2.dw", "kind": "depthwise", "path": "dw3x3", "ms": 0.25,
                   "gflops": 0.01, "gflops_per_s": 40.0}]}}
    text = io.StringIO()
    print_report(result, text)
    out = text.getvalue()
    assert "per-layer yolov2-tiny-voc-fastdsc@416/cuda-fp16 (kernel engine" in out
    assert "layers.2.dw" in out and "dw3x3" in out
    row = [ln for ln in out.splitlines() if ln.startswith("yolov2-tiny-voc-fastdsc")]
    assert len(row) == 1 and row[0].split()[2] == "cuda-fp16"
