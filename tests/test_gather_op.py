"""The plan op ``gather`` (dst channel j = src channel channels[j]) in every backend that runs a
Plan: ONNX Runtime (both graph forms), torch/oneDNN, the kernel engine on the emulator (fp32,
fp16, and the AddressSanitizer build), a GPU when there is one; checked against a float64
reference of the same computation. The plans are built by hand: conv -> gather (repeats and a
skipped channel) -> depthwise (groups = len(channels)) -> pointwise, and a gather of the input
as the last op (it writes the output itself)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from detector.engine.plan import Plan
from detector.engine.plan_ops import Conv, Gather
from detector.errors import UserError
from emu_sanitized import SanitizedEmu

torch = pytest.importorskip("torch")
F = torch.nn.functional

SIZE = 12
CHANNELS = [0, 0, 0, 2, 2, 3]        # a variable multiplier: 3, 0 (channel 1 skipped), 2, 1
# max |error| / max |reference|: fp32 rounding only; fp16 storage of every value
TOL = {"fp32": 2e-5, "fp16": 2e-2}


def _conv(name, src, dst, cout, cin_per_group, k, groups, act, rng, tensors):
    tensors[name + ".weight"] = (rng.standard_normal((cout, cin_per_group, k, k))
                                 / np.sqrt(cin_per_group * k * k)).astype(np.float32)
    tensors[name + ".bias"] = rng.uniform(-0.5, 0.5, cout).astype(np.float32)
    return Conv(name=name, layer=0, src=src, dst=dst, weight=name + ".weight",
                bias=name + ".bias", size=k, stride=1, pad=k // 2, groups=groups, act=act)


def chain_plan(channels=CHANNELS, seed=0) -> Plan:
    """conv 3x3 (3 -> 4) -> gather -> depthwise 3x3 -> pointwise (-> 5)."""
    rng = np.random.default_rng(seed)
    m = len(channels)
    tensors = {}
    ops = [_conv("layers.0", 0, 1, 4, 3, 3, 1, "leaky", rng, tensors),
           Gather(name="layers.1.gather", layer=1, src=1, dst=2, channels=list(channels)),
           _conv("layers.1.dw", 2, 3, m, 1, 3, m, "leaky", rng, tensors),
           _conv("layers.1.pw", 3, 4, 5, m, 1, 1, "linear", rng, tensors)]
    buffers = [(3, SIZE, SIZE), (4, SIZE, SIZE), (m, SIZE, SIZE), (m, SIZE, SIZE), (5, SIZE, SIZE)]
    return Plan(size=SIZE, channels=3, buffers=buffers, ops=ops, output=4, tensors=tensors,
                anchors=[(1.0, 1.0)], classes=0, names=[])


def input_gather_plan() -> Plan:
    """One gather of the input that is also the last op."""
    ops = [Gather(name="layers.0.gather", layer=0, src=0, dst=1, channels=[2, 2, 0, 2])]
    return Plan(size=SIZE, channels=3, buffers=[(3, SIZE, SIZE), (4, SIZE, SIZE)], ops=ops,
                output=1, tensors={}, anchors=[(1.0, 1.0)], classes=0, names=[])


def reference(plan: Plan, blob: np.ndarray) -> np.ndarray:
    """The plan in float64 torch, the gather as numpy fancy indexing."""
    bufs = {0: blob.astype(np.float64)}
    for op in plan.ops:
        x = bufs[op.src]
        if isinstance(op, Gather):
            y = x[:, np.asarray(op.channels)]
        else:
            w = torch.from_numpy(plan.tensors[op.weight]).double()
            b = torch.from_numpy(plan.tensors[op.bias]).double()
            t = F.conv2d(torch.from_numpy(x), w, b, op.stride, op.pad, 1, op.groups)
            if op.act == "leaky":
                t = F.leaky_relu(t, 0.1)
            y = t.numpy()
        bufs[op.dst] = y
    return bufs[plan.output]


def blob(seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)


def check(out, ref, tol):
    assert out.shape == ref.shape
    err = np.abs(np.asarray(out, np.float64) - ref).max() / np.abs(ref).max()
    assert err <= tol, err


PLANS = {"chain": chain_plan, "input": input_gather_plan}


def test_reference_uses_every_gathered_channel_and_skips_one():
    """The chain is sensitive to the gather: another channel order changes the output."""
    x = blob()
    ref = reference(chain_plan(), x)
    assert np.abs(ref).max() > 0
    other = chain_plan([0, 0, 1, 2, 2, 3])        # same weights, channel 1 instead of a 0
    assert np.abs(reference(other, x) - ref).max() > 1e-2 * np.abs(ref).max()


# ---- ONNX Runtime --------------------------------------------------------------------------

@pytest.mark.parametrize("which", PLANS)
def test_ort_runner(which, tmp_path):
    from detector.engine.runners.ort import OrtRunner
    plan = PLANS[which]()
    x = blob()
    r = OrtRunner(plan, cache_dir=str(tmp_path), threads=1)
    check(r(x), reference(plan, x), TOL["fp32"])


def test_onnx_graph_forms_and_dynamic_batch():
    """The export graph (TensorRT op set) with a dynamic batch: Gather along channels for
    every image of the batch; the indices are one int64 initializer."""
    import onnx
    import onnxruntime as ort
    from detector.engine.onnx_graph import plan_to_onnx
    plan = chain_plan()
    model = plan_to_onnx(plan, "matmul", dynamic_batch=True)
    gathers = [n for n in model.graph.node if n.op_type == "Gather"]
    assert len(gathers) == 1 and gathers[0].name == "layers.1.gather"
    assert onnx.helper.get_attribute_value(gathers[0].attribute[0]) == 1
    init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    idx = init[gathers[0].input[1]]
    assert idx.dtype == np.int64 and idx.tolist() == CHANNELS
    x = np.concatenate([blob(1), blob(2)])
    out = ort.InferenceSession(model.SerializeToString()).run(None, {"images": x})[0]
    check(out[:1], reference(plan, x[:1]), TOL["fp32"])
    check(out[1:], reference(plan, x[1:]), TOL["fp32"])


# ---- torch / oneDNN ------------------------------------------------------------------------

@pytest.mark.parametrize("which", PLANS)
@pytest.mark.parametrize("fused", [True, False])
def test_onednn_runner_fp32(which, fused):
    from detector.engine.runners.torch_bf16 import OneDnnRunner
    plan = PLANS[which]()
    x = blob()
    check(OneDnnRunner(plan, "fp32", fused=fused)(x), reference(plan, x), 1e-5)


def test_onednn_runner_bf16():
    from detector.engine.runners.torch_bf16 import OneDnnRunner, bf16_supported
    if not bf16_supported():
        pytest.skip("no oneDNN bf16 convolutions on this CPU")
    plan = chain_plan()
    x = blob()
    check(OneDnnRunner(plan, "bf16")(x), reference(plan, x), 3e-2)


def test_onednn_gather_is_channels_last():
    from detector.engine.runners.torch_bf16 import _gather
    x = torch.randn(1, 4, 5, 7).contiguous(memory_format=torch.channels_last)
    idx = torch.tensor(CHANNELS)
    for src in (x, x.contiguous()):
        y = _gather(src, idx)
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(y, x[:, idx])


# ---- kernel engine (emulator) --------------------------------------------------------------

@pytest.mark.parametrize("which", PLANS)
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_kernel_engine_emu(which, dtype):
    from detector.engine.kernel_engine import KernelEngine
    plan = PLANS[which]()
    x = blob()
    with KernelEngine(plan, "emu", dtype) as eng:
        check(eng(x), reference(plan, x), TOL[dtype])
        paths = [t.path for t in eng.profile(repeat=1, warmup=0)]
        assert "gather" in paths
        if which == "chain":
            assert paths == ["im2col_gemm", "gather", "dw3x3", "gemm"]
            # the gathered buffer: exactly the selected channels of its source (a copy)
            bufs = eng.execute({0: x}, [1, 2])
            np.testing.assert_array_equal(bufs[2], bufs[1][CHANNELS])


@pytest.fixture(scope="module")
def asan(tmp_path_factory):
    worker = SanitizedEmu(str(tmp_path_factory.mktemp("emu-gather")))
    yield worker
    worker.close()


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_kernel_engine_emu_sanitized(asan, dtype):
    """Under AddressSanitizer (the plan goes through a plan file: ``load_plan`` checks it)."""
    plan = chain_plan()
    x = blob()
    out = asan.execute(plan, {0: x}, [2, 4], dtype)
    check(out[4][None], reference(plan, x), TOL[dtype])
    assert out[2].shape == (len(CHANNELS), SIZE, SIZE)


def _engine_error(plan, match):
    from detector.engine.kernel_engine import KernelEngine
    with pytest.raises(UserError, match=match):
        KernelEngine(plan, "emu")


def _with_channels(plan: Plan, channels) -> Plan:
    """The plan with the gather's channel list replaced (ops are immutable values)."""
    plan.ops[1] = dataclasses.replace(plan.ops[1], channels=channels)
    return plan


def test_kernel_engine_rejects_a_channel_index_out_of_range():
    plan = _with_channels(chain_plan(), [0, 0, 0, 2, 4, 3])
    _engine_error(plan, r"layers\.1\.gather.*channel index 4 .* 4-channel source "
                        r"\(allowed: 0\.\.3\)")


@pytest.mark.parametrize("bad", [-1, 2.0, True])
def test_a_gather_refuses_an_index_that_is_no_channel(bad):
    """Negative, float or bool indices: the op itself refuses them, before any plan."""
    with pytest.raises(UserError, match=rf"layers\.1\.gather.*channel index {bad!r} "):
        _with_channels(chain_plan(), [0, 0, 0, 2, bad, 3])


def test_kernel_engine_rejects_a_gather_that_does_not_fit_its_buffers():
    plan = _with_channels(chain_plan(), CHANNELS[:-1])    # 5 channels into a 6-channel buffer
    _engine_error(plan, r"gather of 5 channels from 4x12x12 makes 5x12x12, but buffer 2 is 6x12x12")
    with pytest.raises(UserError, match="non-empty list"):
        _with_channels(chain_plan(), [])


# ---- launches and roofline -----------------------------------------------------------------

def test_gather_launch_and_roofline_bytes():
    from detector.engine import launch as L
    from detector.engine.roofline import op_bytes, predict
    plan = chain_plan()
    op = plan.ops[1]
    addrs = {1: 1000, 2: 2000}
    (la,) = L.op_launches(plan, op, "fp16", addrs.__getitem__, {L.gather_key(op): 3000}.__getitem__)
    n = len(CHANNELS) * SIZE * SIZE
    assert la.kernel == "gather_f16" and la.args == (1000, 2000, 3000, SIZE * SIZE, n)
    assert la.grid == (-(-n // 256), 1, 1) and la.block == (256, 1, 1)
    assert L.KERNELS["gather_f32"].signature == "PPPii"
    # reads source channels 0, 2, 3 once, writes 6 channels
    assert op_bytes(plan, op, "fp32") == 4 * (3 + 6) * SIZE * SIZE
    assert op_bytes(plan, op, "fp16") == 2 * (3 + 6) * SIZE * SIZE
    cost = predict(plan)[1]
    assert cost.path == "gather" and cost.flops == 0 and cost.bound == "memory"


# ---- GPU -----------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_kernel_engine_cuda(dtype):
    from gpu_kernels import gpu_available
    if not gpu_available():
        pytest.skip("no CUDA GPU with pycuda")
    from detector.engine.kernel_engine import KernelEngine
    plan = chain_plan()
    x = blob()
    with KernelEngine(plan, "cuda", dtype) as eng:
        check(eng(x), reference(plan, x), TOL[dtype])


def test_spec_with_per_channel_terms_lowers_to_a_gather(tmp_path):
    """A FastDSC block with per-channel terms lowers to gather -> depthwise -> pointwise; the
    plan file keeps the gather, its ORT run matches the torch block, and a plan file whose
    gather reads a channel that does not exist is refused as corrupt."""
    import json

    from safetensors.numpy import load_file, save_file

    from detector.engine.runners import make_runner
    from detector.engine.plan import PLAN_KEY, load_plan, lower
    from detector.io.checkpoint import read_safetensors
    from detector.models.params import init_params
    from detector.models.spec_yaml import spec_from_dict
    from detector.models.yolov2 import YOLOv2, load_state
    terms = [0, 3, 1, 2, 9, 0, 1, 4]
    spec = spec_from_dict({
        "name": "t", "input": {"size": 32, "channels": 3}, "classes": 1,
        "layers": [{"type": "conv", "filters": 8, "size": 3},
                   {"type": "fastdsc", "filters": 6, "terms": terms, "mid_bn": False,
                    "mid_act": "linear"},
                   {"type": "conv", "filters": 6, "size": 1, "bn": False, "act": "linear"}],
        "region": {"anchors": [[1.0, 1.0]]}})
    state = init_params(spec, 0)
    plan = lower(spec, state)
    gathers = [op for op in plan.ops if isinstance(op, Gather)]
    want = [c for c, t in enumerate(terms) for _ in range(t)]
    assert len(gathers) == 1 and list(gathers[0].channels) == want
    dw = next(op for op in plan.ops if op.name == "layers.1.dw")
    assert dw.groups == len(want) and plan.buffers[dw.src][0] == len(want)
    path = str(tmp_path / "t.plan.safetensors")
    plan.save(path)
    loaded = load_plan(path)
    blob = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    model = load_state(YOLOv2(spec), state).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(blob)).numpy()
    got = make_runner("ort", spec, state, lambda: loaded, "cpu",
                      cache_dir=str(tmp_path))(blob)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    meta = json.loads(read_safetensors(path)[1][PLAN_KEY])
    next(op for op in meta["ops"] if op["op"] == "gather")["channels"][0] = 8
    bad = str(tmp_path / "bad.plan.safetensors")
    save_file(load_file(path), bad, metadata={PLAN_KEY: json.dumps(meta)})
    with pytest.raises(UserError, match="corrupt plan.*gather"):
        load_plan(bad)
