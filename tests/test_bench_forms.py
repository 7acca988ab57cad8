"""The ORT fast path: per-layer pointwise forms (1x1 Conv / GEMM) give the torch model's
output, the tuned choice is stored and picked up, IO binding never aliases results, and the
opt-in int8 graph runs."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from detector.api import read_model  # noqa: E402
from detector.engine import tune  # noqa: E402
from detector.engine.runners.ort import OrtRunner  # noqa: E402
from detector.engine.runners.torch_eager import TorchRunner  # noqa: E402
from detector.host import physical_cores  # noqa: E402
from detector.engine.plan import lower  # noqa: E402
from detector.engine.plan_ops import Conv  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def tiny():
    model = read_model("random:yolov2-tiny-voc-fastdsc", seed=3)
    plan = lower(model.spec, model.state, SIZE, model.names)
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), np.float32)
    want = TorchRunner(model.spec, model.state)(x)
    return model, plan, x, want


def mixed_forms(plan, first="matmul"):
    names = tune.pointwise_ops(plan)
    other = {"matmul": "conv", "conv": "matmul"}
    return {n: first if i % 2 == 0 else other[first] for i, n in enumerate(names)}


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4 * max(1.0, float(np.abs(b).max())))


@pytest.mark.parametrize("forms", ["conv", "matmul", "mixed_a", "mixed_b"])
def test_pointwise_forms_equal_torch(tiny, cache_dir, forms):
    model, plan, x, want = tiny
    pw = {"mixed_a": mixed_forms(plan, "matmul"), "mixed_b": mixed_forms(plan, "conv")}.get(forms, forms)
    r = OrtRunner(plan, pointwise=pw, cache_dir=cache_dir)
    assert r.pointwise == pw
    close(r(x), want)


def test_regular_model_gemm_form_equals_torch(cache_dir):
    """The regular network's 1x1 convs (and its reorg/route) in GEMM form."""
    model = read_model("random:yolov2-voc", seed=5)
    plan = lower(model.spec, model.state, 64, model.names)
    x = np.random.default_rng(1).random((1, 3, 64, 64), np.float32)
    want = TorchRunner(model.spec, model.state)(x)
    close(OrtRunner(plan, pointwise=mixed_forms(plan), cache_dir=cache_dir)(x), want)


def test_dynamic_batch_gemm_graph(tiny):
    import onnxruntime as ort
    from detector.engine.onnx_graph import plan_to_onnx
    model, plan, x, want = tiny
    proto = plan_to_onnx(plan, mixed_forms(plan), dynamic_batch=True)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x2 = np.concatenate([x, x[:, :, ::-1].copy()])
    out = sess.run(None, {"images": x2})[0]
    close(out[:1], want)
    assert out.shape[0] == 2


def test_io_binding_results_not_aliased(tiny, cache_dir):
    model, plan, x, want = tiny
    r = OrtRunner(plan, pointwise="conv", cache_dir=cache_dir)
    a = r(x).copy()                             # the runner's output buffer (reuses_output)
    b = r(np.zeros_like(x)).copy()              # another blob: bound for this call
    c = r(x.astype(np.float64)[:, :, :, :]).copy()   # wrong dtype: copied into the bound buffer
    d = r(np.asfortranarray(x)).copy()          # not C-contiguous: copied too
    close(a, want)
    assert not np.shares_memory(a, b)
    close(c, want)
    close(d, want)
    assert not np.allclose(a, b)
    with pytest.raises(ValueError):
        r(np.zeros((1, 3, SIZE + 32, SIZE + 32), np.float32))


def test_auto_uses_stored_choice(tiny, cache_dir):
    model, plan, x, want = tiny
    threads = physical_cores()
    assert tune.tuned_forms(plan, cache_dir + "/none", threads) is None
    assert OrtRunner(plan, cache_dir=cache_dir + "/none").pointwise == "conv"
    forms = mixed_forms(plan)
    path = tune.tune_path(plan, threads, cache_dir)
    import os
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"forms": forms}, f)
    r = OrtRunner(plan, cache_dir=cache_dir)
    assert r.pointwise == forms
    close(r(x), want)
    with open(path, "w") as f:
        f.write("{not json")
    assert tune.tuned_forms(plan, cache_dir, threads) is None
    with open(path, "w") as f:
        json.dump({"forms": {"layers.2.pw": "winograd"}}, f)
    assert tune.tuned_forms(plan, cache_dir, threads) is None


def test_tune_pointwise_records_both_forms(tiny, cache_dir):
    model, plan, x, want = tiny
    rec = tune.tune_pointwise(plan, cache_dir, runs=2, rounds=2, iters=1)
    names = tune.pointwise_ops(plan)
    assert set(rec["layers"]) == set(names)
    for v in rec["layers"].values():
        assert v["conv"] > 0 and v["matmul"] > 0
    assert {"conv", "matmul"} <= set(rec["graphs"])
    assert rec["chosen"] in rec["graphs"]
    assert tune.tuned_forms(plan, cache_dir) == rec["forms"]
    close(OrtRunner(plan, cache_dir=cache_dir)(x), want)


def test_profile_ops_maps_every_op(tiny, cache_dir):
    from detector.engine.ort_session import ort_model_path
    model, plan, x, want = tiny
    for form in ("conv", "matmul"):
        prof = tune.profile_ops(ort_model_path(plan, form, cache_dir), plan, 1, runs=2,
                                charge_layout_to=set(tune.pointwise_ops(plan)))
        convs = [op.name for op in plan.ops if isinstance(op, Conv)]
        assert all(prof.get(n, 0) > 0 for n in convs), (form, prof)


def test_int8_graph_runs_close(tiny, cache_dir):
    pytest.importorskip("onnxruntime.quantization")
    model, plan, x, want = tiny
    r = OrtRunner(plan, cache_dir=cache_dir, precision="int8")
    out = r(x)
    assert out.shape == want.shape
    rel = np.linalg.norm(out - want) / np.linalg.norm(want)
    assert rel < 0.5, rel
    assert "int8" in r.path


def test_bad_precision(tiny, cache_dir):
    from detector.errors import UserError
    model, plan, x, want = tiny
    with pytest.raises(UserError):
        OrtRunner(plan, cache_dir=cache_dir, precision="fp8")


def test_runner_thread_safe(tiny, cache_dir):
    from concurrent.futures import ThreadPoolExecutor
    model, plan, x, want = tiny
    r = OrtRunner(plan, pointwise="conv", cache_dir=cache_dir)
    xs = [np.ascontiguousarray(x * (i + 1) / 4, np.float32) for i in range(4)]
    ref = [r(v).copy() for v in xs]
    with ThreadPoolExecutor(4) as pool:       # each thread's output is its own
        outs = list(pool.map(lambda i: r(xs[i % 4]).copy(), range(32)))
    for i, o in enumerate(outs):
        np.testing.assert_allclose(o, ref[i % 4], rtol=1e-5, atol=1e-6)
