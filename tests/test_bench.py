"""``detector bench`` end to end on tiny models at a small size (no timing assertions)."""
from __future__ import annotations

import json

import pytest

from conftest import assert_user_error, cli_env, run_cli

pytest.importorskip("onnxruntime")

pytestmark = pytest.mark.slow          # one bench run of two models: about a minute

ROW_FIELDS = {"model", "size", "impl", "ours", "scope", "median_ms", "p90_ms", "fps", "gflops",
              "gflops_per_s", "of_peak", "roofline_ms", "vs_fastest_peer", "fastest_peer",
              "vs_opencv_regular", "samples", "note"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    env = cli_env(XDG_CACHE_HOME=str(tmp / "xdg"))
    p = run_cli("bench", "--model", "yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc",
                "--img-size", "64", "--rounds", "2", "--warmup", "1", "--layers", "--int8",
                "--json", out, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p, json.loads(out.read_text())


def test_bench_json_fields(bench_run):
    p, r = bench_run
    assert {"command", "date", "machine", "roofline", "results", "skipped", "goals",
            "pointwise", "int8", "layers", "rounds"} <= set(r)
    assert r["rounds"] == 2
    assert r["roofline"]["peak_gflops"] > 0
    assert r["machine"]["physical_cores"] >= 1
    impls = {(x["model"], x["impl"]) for x in r["results"]}
    for m in ("yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc"):
        for impl in ("ort", "frame", "ort-bare", "ort-int8"):
            assert (m, impl) in impls, (m, impl)
    for row in r["results"]:
        assert ROW_FIELDS <= set(row), set(row) ^ ROW_FIELDS
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] * 0.999
        assert row["samples"] >= 2
        assert row["gflops"] > 0 and row["fps"] > 0
        assert row["vs_fastest_peer"] > 0           # every family here has peers
        assert row["scope"] == ("frame" if row["impl"] == "frame" else "network")
    fastdsc = [x for x in r["results"] if x["model"] == "yolov2-tiny-voc-fastdsc"]
    assert all(x["gflops"] < r["results"][0]["gflops"] for x in fastdsc)
    # OpenCV-DNN runs (darknet importer or ONNX), or is skipped with a reason
    ocv = [x for x in r["results"] if x["impl"] == "opencv-dnn"]
    skipped = [s for s in r["skipped"] if s["impl"] == "opencv-dnn"]
    assert len(ocv) + len(skipped) == 2
    assert all(s["reason"] for s in r["skipped"])


def test_bench_goals_pointwise_int8_layers(bench_run):
    p, r = bench_run
    goals = {g["goal"]: g for g in r["goals"]}
    assert any("OpenCV" in g for g in goals) or not any(x["impl"] == "opencv-dnn" for x in r["results"])
    for g in goals.values():
        assert g["speedup"] > 0 and isinstance(g["pass"], bool)
    for key, rec in r["pointwise"].items():
        assert {"conv", "matmul"} <= set(rec["graphs"]), key
        assert rec["layers"]
    for acc in r["int8"].values():
        assert 0 <= acc["raw_rel_error"] < 1
    rows = r["layers"]["yolov2-tiny-voc-fastdsc@64"]
    pw = [x for x in rows if x["kind"] == "pointwise"]
    assert pw and all(x["conv_ms"] > 0 and x["gemm_ms"] > 0 and x["form"] for x in pw)


def test_bench_table_and_progress(bench_run):
    p, r = bench_run
    assert "median" in p.stdout and "x peer" in p.stdout
    assert "yolov2-tiny-voc-fastdsc" in p.stdout and "per-layer" in p.stdout
    assert "[bench] round 2/2" in p.stderr          # progress goes to stderr
    assert "[bench]" not in p.stdout


def test_bench_subset_and_startup(tmp_path):
    out = tmp_path / "b.json"
    p = run_cli("bench", "--model", "yolov2-tiny-voc-fastdsc", "--img-size", "64", "--rounds", "1",
                "--backends", "ort", "frame", "--no-tune", "--startup", "yolov2-tiny-voc-fastdsc",
                "--json", out, env=cli_env(XDG_CACHE_HOME=str(tmp_path / "xdg")), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert sorted(x["impl"] for x in r["results"]) == ["frame", "ort"]
    assert r["pointwise"] == {}
    assert all(x["vs_fastest_peer"] is None for x in r["results"])    # no peers asked for
    st = r["startup"]
    from detector.host import bf16_native
    # the default CPU runtime: measured in the cold start (where there is a choice), then
    # read from the cache
    chosen = st["cold"]["backend"]
    assert chosen in (("ort", "torch") if bf16_native() else ("ort",))
    for k in ("cold", "warm"):
        assert st[k]["load_to_first_detection_s"] > 0 and st[k]["backend"] == chosen


def test_bench_unknown_backend():
    assert_user_error(run_cli("bench", "--backends", "tensorflow", "--rounds", "1"), "tensorflow")
