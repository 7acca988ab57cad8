"""Every engine kernel against a float64 torch reference, run by the emulator under
AddressSanitizer (an out-of-bounds access kills the worker and fails the test), on random
shapes that include sizes which are not multiples of the tile sizes; where a GPU is present
(marker ``cuda``) the same cases run on it with the same bounds. Bounds: kernel_cases.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from detector.engine import plan_ops as ops
from emu_sanitized import SanitizedEmu
from gpu_kernels import CudaKernels, gpu_available
from kernel_cases import OpsPlan, as_dtype, assert_within, conv_bound, torch_conv64

torch = pytest.importorskip("torch")

DTYPES = ["fp32", "fp16"]


@pytest.fixture(scope="module", params=["emu-asan", pytest.param("cuda", marks=pytest.mark.cuda)])
def emu(request, tmp_path_factory):
    """The kernels under test: the emulator under AddressSanitizer, or (marked ``cuda``) the
    pycuda backend on a real GPU running the same cases."""
    if request.param == "cuda":
        if not gpu_available():
            pytest.skip("no CUDA GPU with pycuda")
        worker = CudaKernels()
    else:
        worker = SanitizedEmu(str(tmp_path_factory.mktemp("emu")))
    yield worker
    worker.close()


def _rand(rng, shape, scale=1.0):
    return (rng.uniform(-1, 1, size=shape) * scale).astype(np.float32)


def _run_convs(emu, dtype, cases, seed):
    """cases: (cin, h, w, cout, k, stride, pad, groups, act, expected path)."""
    rng = np.random.default_rng(seed)
    p, data = OpsPlan(), []
    for cin, h, w, cout, k, s, pad, g, act, path in cases:
        x = _rand(rng, (cin, h, w))
        wt = _rand(rng, (cout, cin // g, k, k), np.sqrt(2.0 / (cin // g * k * k)))
        b = _rand(rng, (cout,), 0.5)
        src = p.buf((cin, h, w))
        dst = p.conv(src, cout, k, s, pad, g, act, wt, b)
        data.append((src, dst, x, wt, b, s, pad, g, act, path, cin // g * k * k))
    plan = p.plan()
    from detector.engine.kernel_engine import op_path
    assert [op_path(plan, op) for op in plan.ops] == [c[-1] for c in cases]
    out = emu.execute(plan, {d[0]: d[2] for d in data}, [d[1] for d in data], dtype)
    worst = 0.0
    for (_, dst, x, wt, b, s, pad, g, act, path, n), case in zip(data, cases):
        ref, mag = torch_conv64(as_dtype(x, dtype), as_dtype(wt, dtype), as_dtype(b, dtype), s, pad, g, act)
        worst = max(worst, assert_within(out[dst], ref, conv_bound(path, dtype, n, ref, mag),
                                         f"{dtype} {case}"))
    return worst


def _shapes(seed, n, fn):
    rng = np.random.default_rng(seed)
    return [fn(rng) for _ in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_gemm(emu, dtype):
    # M (Cout), N (H*W) and K (Cin) around and off the 64 x 64 x 16 tiles, plus random ones.
    fixed = [(1, 1, 1, 1), (16, 8, 8, 64), (37, 5, 7, 70), (64, 8, 8, 64), (3, 13, 13, 125),
             (300, 3, 11, 65), (17, 1, 129, 129)]
    rand = _shapes(1, 5, lambda r: (int(r.integers(1, 200)), int(r.integers(1, 20)),
                                    int(r.integers(1, 20)), int(r.integers(1, 150))))
    acts = ["linear", "leaky", "relu"]
    cases = [(cin, h, w, cout, 1, 1, 0, 1, acts[i % 3], "gemm")
             for i, (cin, h, w, cout) in enumerate(fixed + rand)]
    _run_convs(emu, dtype, cases, seed=10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_3x3(emu, dtype):
    # Multiplier (groups = Cin, Cout = Cin*T) and grouped-sum (groups = Cout, Cin = Cout*T),
    # stride 1 and 2, sizes below/above the 32 x 8 output tile and odd sizes (one channel
    # would be a regular conv: groups = 1).
    shapes = [(2, 1, 1, 1, 1), (3, 9, 33, 1, 1), (2, 17, 40, 2, 1), (4, 8, 32, 3, 2),
              (3, 19, 65, 2, 2), (5, 5, 5, 1, 2), (2, 34, 7, 4, 1)]
    shapes += _shapes(2, 4, lambda r: (int(r.integers(2, 6)), int(r.integers(1, 40)),
                                       int(r.integers(1, 70)), int(r.integers(1, 4)),
                                       int(r.integers(1, 3))))
    acts = ["leaky", "linear", "relu"]
    cases = []
    for i, (c, h, w, t, s) in enumerate(shapes):
        cases.append((c, h, w, c * t, 3, s, 1, c, acts[i % 3], "dw3x3"))         # multiplier
        cases.append((c * t, h, w, c, 3, s, 1, c, acts[(i + 1) % 3], "dw3x3"))   # grouped sum
    _run_convs(emu, dtype, cases, seed=20)


@pytest.mark.parametrize("dtype", DTYPES)
def test_regular_conv_im2col_gemm(emu, dtype):
    cases = [(3, 20, 20, 16, 3, 1, 1, 1, "leaky", "im2col_gemm"),      # a first layer
             (5, 9, 11, 70, 3, 2, 1, 1, "linear", "im2col_gemm"),
             (8, 7, 7, 9, 1, 2, 0, 1, "relu", "im2col_gemm"),          # 1x1 stride 2
             (4, 6, 5, 3, 5, 1, 2, 1, "leaky", "im2col_gemm"),
             (66, 5, 5, 33, 3, 1, 1, 1, "leaky", "im2col_gemm")]
    _run_convs(emu, dtype, cases, seed=30)


@pytest.mark.parametrize("dtype", DTYPES)
def test_direct_conv_for_other_shapes(emu, dtype):
    cases = [(6, 9, 10, 4, 3, 1, 1, 2, "leaky", "direct"),        # grouped, neither dw nor gs
             (4, 11, 12, 8, 5, 1, 2, 4, "linear", "direct"),      # depthwise 5x5
             (3, 13, 9, 3, 3, 3, 1, 3, "relu", "direct"),         # depthwise stride 3
             (6, 8, 8, 3, 3, 1, 0, 3, "leaky", "direct")]         # grouped-sum, no padding
    _run_convs(emu, dtype, cases, seed=40)


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool_reorg_concat_exact(emu, dtype):
    from detector.models.blocks import MaxPoolDarknet, Reorg
    rng = np.random.default_rng(50)
    p, checks = OpsPlan(), []
    for c, h, w, size, stride in [(3, 8, 8, 2, 2), (2, 7, 9, 2, 2), (4, 5, 5, 2, 1), (2, 6, 7, 3, 1),
                                  (1, 13, 13, 3, 2)]:
        x = _rand(rng, (c, h, w))
        src = p.buf((c, h, w))
        pad = size - 1
        ho, wo = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
        dst = p.add(ops.MaxPool, (c, ho, wo), src=src, size=size, stride=stride,
                    pad_before=pad // 2, pad_after=pad - pad // 2)
        ref = MaxPoolDarknet(size, stride)(torch.from_numpy(as_dtype(x, dtype))[None])[0].numpy()
        checks.append((src, x, dst, ref))
    for c, h, w, s in [(8, 6, 4, 2), (4, 6, 6, 2), (18, 9, 6, 3)]:
        x = _rand(rng, (c, h, w))
        src = p.buf((c, h, w))
        dst = p.add(ops.Reorg, (c * s * s, h // s, w // s), src=src, stride=s)
        ref = Reorg(s)(torch.from_numpy(as_dtype(x, dtype))[None])[0].numpy()
        checks.append((src, x, dst, ref))
    # concat: sources placed inside the destination (aliased) and copied (the input buffer 0
    # and a source used by two concats are never aliased).
    xs = [_rand(rng, (c, 3, 5)) for c in (2, 3, 1)]
    srcs = [p.buf(x.shape) for x in xs]
    d1 = p.add(ops.Concat, (5, 3, 5), srcs=[srcs[0], srcs[1]])
    d2 = p.add(ops.Concat, (6, 3, 5), srcs=[srcs[1], srcs[2], srcs[0]])
    plan = p.plan()
    inputs = {s: x for s, x, _, _ in checks}
    inputs.update({s: x for s, x in zip(srcs, xs)})
    out = emu.execute(plan, inputs, [d for _, _, d, _ in checks] + [d1, d2], dtype)
    for _, _, dst, ref in checks:
        np.testing.assert_array_equal(out[dst], ref.astype(np.float32))
    x64 = [as_dtype(x, dtype) for x in xs]
    np.testing.assert_array_equal(out[d1], np.concatenate([x64[0], x64[1]]).astype(np.float32))
    np.testing.assert_array_equal(out[d2], np.concatenate([x64[1], x64[2], x64[0]]).astype(np.float32))


def test_concat_aliasing_rules():
    from detector.engine.kernel_engine import concat_aliases
    p = OpsPlan()
    a, b, c = p.buf((2, 3, 3)), p.buf((1, 3, 3)), p.buf((4, 3, 3))
    d1 = p.add(ops.Concat, (3, 3, 3), srcs=[a, b])
    d2 = p.add(ops.Concat, (8, 3, 3), srcs=[c, d1, 0])   # 0 is the input: copied
    p.buffers[0] = (1, 3, 3)
    alias = concat_aliases(p.plan())
    assert alias == {a: (d1, 0), b: (d1, 18), c: (d2, 0)}          # d1 is a concat dst: copied


def _region_ref(raw, anchors, classes):
    a = len(anchors)
    ch, gh, gw = raw.shape
    p = raw.reshape(a, 5 + classes, gh, gw).astype(np.float64)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    col, row = np.arange(gw)[None, None, :], np.arange(gh)[None, :, None]
    anc = np.asarray(anchors, np.float64)
    boxes = np.stack([(col + sig(p[:, 0])) / gw, (row + sig(p[:, 1])) / gh,
                      np.exp(p[:, 2]) * anc[:, 0, None, None] / gw,
                      np.exp(p[:, 3]) * anc[:, 1, None, None] / gh], -1).reshape(-1, 4)
    e = np.exp(p[:, 5:] - p[:, 5:].max(1, keepdims=True))
    scores = (sig(p[:, 4])[:, None] * e / e.sum(1, keepdims=True)).transpose(0, 2, 3, 1)
    return boxes, scores.reshape(-1, classes)


@pytest.mark.parametrize("dtype", DTYPES)
def test_region_decode(emu, dtype):
    from detector.engine.plan import Plan
    rng = np.random.default_rng(60)
    anchors = [(1.08, 1.19), (3.42, 4.41), (6.63, 11.38)]
    classes, gh, gw = 7, 5, 6
    raw = (rng.standard_normal((len(anchors) * (5 + classes), gh, gw)) * 3).astype(np.float32)
    plan = Plan(size=gh * 32, channels=raw.shape[0], buffers=[raw.shape], ops=[], output=0,
                tensors={}, anchors=anchors, classes=classes, names=[str(i) for i in range(classes)])
    out, boxes, scores = emu.call(plan, raw[None], dtype)
    rb, rs = _region_ref(as_dtype(raw, dtype), anchors, classes)
    # fp32 math (expf, one division per value): a few ulps.
    np.testing.assert_allclose(boxes, rb, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(scores, rs, rtol=2e-6, atol=1e-7)
    try:
        from detector.postprocess import decode_region
    except ImportError:
        return
    pb, ps = decode_region(as_dtype(raw, dtype).astype(np.float32), anchors, classes)
    np.testing.assert_allclose(boxes, pb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, ps, rtol=1e-5, atol=1e-6)


def letterbox_geometry(fw, fh, net):
    """darknet's letterbox rule (as detector/preprocess computes it)."""
    if net / fw < net / fh:
        nw, nh = net, (fh * net) // fw
    else:
        nw, nh = (fw * net) // fh, net
    nw, nh = max(nw, 1), max(nh, 1)
    return (fw, fh, net, net, nw, nh, (net - nw) // 2, (net - nh) // 2)


def letterbox_ref(frame, lb):
    import cv2
    fw, fh, net_w, net_h, nw, nh, left, top = lb
    out = np.full((3, net_h, net_w), 0.5, np.float64)
    img = frame if (nw, nh) == (fw, fh) else cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out[:, top:top + nh, left:left + nw] = img[:, :, ::-1].transpose(2, 0, 1) / 255.0
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fw,fh", [(96, 64), (50, 77), (64, 64), (200, 31), (7, 5), (128, 96)])
def test_preprocess_matches_opencv_letterbox(emu, dtype, fw, fh):
    from detector.engine.plan import Plan
    net = 64
    frame = np.random.default_rng(fw * 1000 + fh).integers(0, 256, (fh, fw, 3), dtype=np.uint8)
    frame[: fh // 2, : fw // 3] = 200   # flat areas and edges, not only noise
    lb = letterbox_geometry(fw, fh, net)
    plan = Plan(size=net, channels=3, buffers=[(3, net, net)], ops=[], output=0, tensors={},
                anchors=[(1.0, 1.0)], classes=1, names=["x"])
    blob = emu.preprocess(plan, frame, lb, dtype)
    ref = letterbox_ref(frame, lb)
    # fp32 bilinear weights vs OpenCV's fixed-point ones: at most one 8-bit level apart, on a
    # minority of pixels (mean error < 0.15 level); fp16 storage adds its rounding (<= 2^-11 of
    # a value <= 1).
    err = np.abs(blob.astype(np.float64) - ref)
    tol = 1 / 255 + (2.0 ** -11 if dtype == "fp16" else 1e-6)
    assert err.max() <= tol, err.max()
    assert err.mean() < 0.15 / 255, err.mean() * 255
    fill = np.ones((net, net), bool)
    fill[lb[7]:lb[7] + lb[5], lb[6]:lb[6] + lb[4]] = False
    assert (blob[:, fill] == 0.5).all()
