"""The pycuda backend on a real GPU (marked ``cuda``: skipped without pycuda or a device).
Results are compared with the emulator running the same kernels."""
from __future__ import annotations

import numpy as np
import pytest
from gpu_kernels import gpu_available

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def plan():
    if not gpu_available():
        pytest.skip("no CUDA GPU with pycuda")
    from detector.engine.plan import lower
    from detector.models.params import init_params
    from detector.models.spec import load_spec
    spec = load_spec("yolov2-voc-fastdsc")
    return lower(spec, init_params(spec, seed=1), 160)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_cuda_matches_emulator(plan, dtype):
    from detector.engine.kernel_engine import KernelEngine
    x = np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32)
    with KernelEngine(plan, "emu", dtype) as emu:
        want = emu(x).copy()
        wb, ws = (a.copy() for a in emu.decode())
    with KernelEngine(plan, "cuda", dtype) as gpu:
        got = gpu(x).copy()
        gb, gs = gpu.decode()
        tol = {"fp32": 1e-4, "fp16": 2e-2}[dtype] * np.abs(want).max()
        assert np.abs(got - want).max() <= tol
        np.testing.assert_allclose(gs, ws, atol=tol)
        times = gpu.profile(repeat=3)
        assert len(times) == len(plan.ops) and all(t.ms > 0 for t in times)


def test_cuda_preprocess_matches_emulator(plan):
    from detector.engine.kernel_engine import KernelEngine
    frame = np.random.default_rng(1).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    from test_kernels_ops import letterbox_geometry
    from collections import namedtuple
    lb = namedtuple("LB", "frame_w frame_h net_w net_h new_w new_h left top")(
        *letterbox_geometry(200, 120, 160))
    out = []
    for backend in ("emu", "cuda"):
        with KernelEngine(plan, backend) as eng:
            dev, _ = eng.preprocess_frame(frame, lb)
            out.append(eng.execute({}, [0])[0])
            raw = eng(dev).copy()
            assert raw.shape == eng.output_shape
    np.testing.assert_allclose(out[0], out[1], atol=1.01 / 255)


def test_context_is_released_and_reusable(plan):
    from detector.engine.kernel_engine import KernelEngine
    for _ in range(2):
        eng = KernelEngine(plan, "cuda")
        eng(np.zeros((1, 3, 160, 160), np.float32))
        eng.close()
