"""The whole kernel engine under the emulator (AddressSanitizer build) against the torch
model: raw head and detections, on the small FastDSC zoo model and on a spec that uses every
op and kernel path (grouped-sum / multiplier > 1, route + reorg + concat, grouped conv)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from emu_sanitized import REPO, SanitizedEmu

torch = pytest.importorskip("torch")

# Relative to max |reference| of the raw head: fp32 runs at float32 rounding (observed ~1e-6),
# fp16 stores every activation and weight in half precision (observed ~1e-3).
HEAD_TOL = {"fp32": 2e-5, "fp16": 2e-2}

ALL_PATHS_SPEC = {
    "name": "kernels-all-paths", "input": {"size": 64, "channels": 3}, "classes": 3,
    "names": ["a", "b", "c"],
    "layers": [
        {"type": "conv", "filters": 8, "size": 3},                                  # 0 im2col+gemm
        {"type": "maxpool", "size": 2, "stride": 2},                                # 1
        {"type": "fastdsc", "filters": 16},                                         # 2 dw + gemm
        {"type": "maxpool", "size": 2, "stride": 2},                                # 3
        {"type": "fastdsc", "filters": 16, "multiplier": 2, "order": "pw_dw",       # 4 gemm +
         "mid_bn": False, "mid_act": "linear"},                                     #   grouped sum
        {"type": "maxpool", "size": 2, "stride": 2},                                # 5
        {"type": "fastdsc", "filters": 24, "multiplier": 3},                        # 6 dw T=3
        {"type": "conv", "filters": 32, "size": 3, "groups": 2},                    # 7 direct
        {"type": "fastdsc", "filters": 32, "stride": 2},                            # 8 dw stride 2
        {"type": "maxpool", "size": 2, "stride": 2},                                # 9
        {"type": "maxpool", "size": 2, "stride": 1},                                # 10
        {"type": "route", "layers": [-4]},                                          # 11
        {"type": "conv", "filters": 16, "size": 1},                                 # 12
        {"type": "reorg", "stride": 4},                                             # 13
        {"type": "route", "layers": [-1, -4]},                                      # 14 concat
        {"type": "fastdsc", "filters": 32, "multiplier": 2, "order": "pw_dw",       # 15
         "mid_bn": False, "mid_act": "linear"},
        {"type": "conv", "filters": 40, "size": 1, "bn": False, "act": "linear"},   # 16 head
    ],
    "region": {"anchors": [[1, 1], [2, 3], [3, 2], [4, 4], [1.5, 2.5]]},
}


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    worker = SanitizedEmu(str(tmp_path_factory.mktemp("emu-engine")))
    yield worker
    worker.close()


def _model(spec, seed=0):
    from detector.models.yolov2 import build_model
    m = build_model(spec, seed=seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():   # BN statistics that make folding matter
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.3, 0.3, generator=g)
                mod.running_var.uniform_(0.5, 2.0, generator=g)
                mod.weight.uniform_(0.6, 1.4, generator=g)
                mod.bias.uniform_(-0.3, 0.3, generator=g)
    return m


def _plan(model, size):
    from detector.engine.plan import lower
    from detector.models.yolov2 import state_numpy
    return lower(model.spec, state_numpy(model), size)


def _reference(model, blob):
    with torch.no_grad():
        return model.double()(torch.from_numpy(blob).double()).numpy()


def _check_head(raw, ref, dtype):
    scale = np.abs(ref).max()
    err = np.abs(raw.astype(np.float64) - ref).max() / scale
    assert err <= HEAD_TOL[dtype], err
    return err


def _detections(boxes, scores, conf):
    """(cell index, class) pairs above ``conf`` and their boxes."""
    idx, cls = np.nonzero(scores > conf)
    return set(zip(idx.tolist(), cls.tolist())), boxes


def _check_detections(boxes, scores, ref_raw, anchors, classes, dtype):
    from test_kernels_ops import _region_ref
    rb, rs = _region_ref(ref_raw[0], anchors, classes)
    conf = float(np.quantile(rs, 0.99))          # random weights: keep the top 1 %
    margin = {"fp32": 1e-5, "fp16": 5e-3}[dtype] * rs.max()
    near = np.abs(rs - conf) < margin           # too close to the threshold to call
    got = {(i, c) for i, c in zip(*np.nonzero(scores > conf)) if not near[i, c]}
    want = {(i, c) for i, c in zip(*np.nonzero(rs > conf)) if not near[i, c]}
    assert got == want and len(want) > 0
    cells = sorted({i for i, _ in want})
    np.testing.assert_allclose(boxes[cells], rb[cells], rtol=HEAD_TOL[dtype] * 5, atol=1e-4)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_tiny_fastdsc_at_160_matches_torch(emu, dtype):
    model = _model("yolov2-tiny-voc-fastdsc")
    plan = _plan(model, 160)
    blob = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    raw, boxes, scores = emu.call(plan, blob, dtype)
    ref = _reference(model, blob)
    assert raw.shape == ref.shape == (1, 125, 5, 5)
    _check_head(raw, ref, dtype)
    _check_detections(boxes, scores, ref, plan.anchors, plan.classes, dtype)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_every_op_and_kernel_path_matches_torch(emu, dtype):
    from detector.engine.kernel_engine import op_path
    from detector.engine.plan_ops import Conv
    from detector.models.spec_yaml import spec_from_dict
    model = _model(spec_from_dict(ALL_PATHS_SPEC))
    plan = _plan(model, 64)
    paths = {op_path(plan, op) for op in plan.ops}
    assert paths == {"im2col_gemm", "gemm", "dw3x3", "direct", "maxpool", "reorg", "concat"}
    convs = [op for op in plan.ops if isinstance(op, Conv)]
    kinds = {plan.conv_kind(op) for op in convs}
    assert {"grouped_sum", "depthwise", "grouped", "regular", "pointwise"} <= kinds
    assert any(plan.conv_kind(op) == "depthwise"
               and plan.buffers[op.dst][0] == 3 * plan.buffers[op.src][0] for op in convs)
    blob = np.random.default_rng(1).random((1, 3, 64, 64), dtype=np.float32)
    raw, _, _ = emu.call(plan, blob, dtype)
    _check_head(raw, _reference(model, blob), dtype)


def test_engine_runs_without_torch_and_caches_outside_cwd(tmp_path):
    """A saved plan runs on the emu backend in a process where torch cannot be imported, and
    the emulator build lands in the user cache (XDG_CACHE_HOME), not in the working directory."""
    model = _model("yolov2-tiny-voc-fastdsc", seed=3)
    plan = _plan(model, 96)
    plan_path = tmp_path / "tiny.plan.safetensors"
    plan.save(str(plan_path))
    blob = np.random.default_rng(2).random((1, 3, 96, 96), dtype=np.float32)
    np.save(tmp_path / "blob.npy", blob)
    cwd, cache = tmp_path / "cwd", tmp_path / "cache"
    cwd.mkdir()
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "import detector\n"
        "from detector.engine.plan import load_plan\n"
        "from detector.engine.kernel_engine import KernelEngine\n"
        "plan = load_plan(sys.argv[1])\n"
        "with KernelEngine(plan, backend='emu', dtype='fp32') as eng:\n"
        "    out = eng(np.load(sys.argv[2])).copy()\n"
        "    boxes, scores = eng.decode()\n"
        "np.save(sys.argv[3], out)\n"
        "assert sys.modules['torch'] is None\n"
        "assert not any(m.startswith('pycuda') for m in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO, XDG_CACHE_HOME=str(cache))
    env.pop("LD_PRELOAD", None)
    proc = subprocess.run([sys.executable, "-c", code, str(plan_path), str(tmp_path / "blob.npy"),
                           str(tmp_path / "out.npy")], cwd=str(cwd), env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    _check_head(np.load(tmp_path / "out.npy"), _reference(model, blob), "fp32")
    assert list(cwd.iterdir()) == []
    libs = list((cache / "fastdsc-yolo" / "emu").glob("*/libfastdsc_emu.so"))
    assert len(libs) == 1


def test_engine_api_errors_and_reuse():
    from detector.engine.kernel_engine import KernelEngine
    from detector.errors import UserError
    plan = _plan(_model("yolov2-tiny-voc-fastdsc"), 64)
    with pytest.raises(UserError, match="unknown kernel backend"):
        KernelEngine(plan, backend="opencl")
    with pytest.raises(UserError, match="dtype"):
        KernelEngine(plan, backend="emu", dtype="int8")
    eng = KernelEngine(plan, backend="emu")
    with pytest.raises(RuntimeError, match="needs a frame"):
        eng.decode()
    with pytest.raises(ValueError, match="shape"):
        eng(np.zeros((1, 3, 32, 32), np.float32))
    x = np.random.default_rng(3).random((1, 3, 64, 64), dtype=np.float32)
    a = eng(x).copy()
    b = eng(x)
    np.testing.assert_array_equal(a, b)          # buffers reused, results repeatable
    times = eng.profile(repeat=1, warmup=0)
    assert [t.index for t in times] == list(range(len(plan.ops))) and all(t.ms >= 0 for t in times)
    eng.close()
    eng.close()
    with pytest.raises(RuntimeError, match="closed"):
        eng(x)
