"""The CPU emulator itself: real barriers, per-block shared memory, 3-D indexing, half
precision, and that AddressSanitizer and the runtime's own checks catch kernel bugs."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from emu_sanitized import SanitizedEmu, WorkerCrashed


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    worker = SanitizedEmu(str(tmp_path_factory.mktemp("emu-selftest")))
    yield worker
    worker.close()


def test_barrier_and_static_shared_memory_per_block(emu):
    x = np.arange(700, dtype=np.float32)
    out, status = emu.selftest("st_reverse", (3, 1, 1), (256, 1, 1), 0, ["x", "y", 700],
                               {"x": ("float32", x.tolist()), "y": ("float32", [0.0] * 700)})
    assert status == "ok"
    want = np.concatenate([np.pad(x, (0, 68))[i * 256:(i + 1) * 256][::-1] for i in range(3)])[:700]
    np.testing.assert_array_equal(out["y"], want)


def test_many_barriers_and_dynamic_shared_memory(emu):
    x = np.random.default_rng(0).integers(0, 10, 300).astype(np.float32)
    out, status = emu.selftest("st_scan", (3, 1, 1), (128, 1, 1), 128 * 4, ["x", "y", 300],
                               {"x": ("float32", x.tolist()), "y": ("float32", [0.0] * 300)})
    assert status == "ok"
    want = np.concatenate([np.cumsum(x[i:i + 128]) for i in range(0, 300, 128)])
    np.testing.assert_array_equal(out["y"], want)


def test_grid_and_block_indices_in_3d(emu):
    n = 2 * 3 * 2 * 4 * 2 * 3
    out, status = emu.selftest("st_index", (2, 3, 2), (4, 2, 3), 0, ["o"], {"o": ("int32", [-1] * n)})
    assert status == "ok"
    np.testing.assert_array_equal(out["o"], np.arange(n))


def test_half_conversions_round_like_ieee(emu):
    vals = [0.0, -0.0, 1.0, 1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 65504.0, 65519.0, 65520.0, 1e6,
            2 ** -24, 2 ** -25, 3 * 2 ** -26, 6e-8, 1e-4, -3.14159, 0.1, 2 ** -14, 2 ** -14 - 2 ** -25]
    x = np.array(vals + list(np.random.default_rng(1).standard_normal(200) * 100), np.float32)
    n = len(x)
    out, status = emu.selftest("st_half", (1, 1, 1), (256, 1, 1), 0, ["x", "y", "f", n],
                               {"x": ("float32", x.tolist()), "y": ("float32", [0.0] * n),
                                "f": ("float32", [0.0] * n)})
    assert status == "ok"
    with np.errstate(over="ignore"):
        h = x.astype(np.float16)
    np.testing.assert_array_equal(out["y"], h.astype(np.float32))
    fma = (h.astype(np.float64) * 0.5 + 1.0).astype(np.float16).astype(np.float32) * 2
    np.testing.assert_array_equal(out["f"], fma)


def test_divergent_barrier_is_an_error(emu):
    _, status = emu.selftest("st_divergent", (1, 1, 1), (8, 1, 1), 0, ["y"], {"y": ("float32", [0.0] * 8)})
    assert "divergent __syncthreads" in status


def test_out_of_bounds_shared_memory_is_caught(emu):
    _, status = emu.selftest("st_shared_oob", (1, 1, 1), (8, 1, 1), 32, ["y", 0],
                             {"y": ("float32", [0.0] * 8)})
    assert status == "ok"
    with pytest.raises(WorkerCrashed, match="heap-buffer-overflow"):
        emu.selftest("st_shared_oob", (1, 1, 1), (8, 1, 1), 32, ["y", 1], {"y": ("float32", [0.0] * 8)})


def test_out_of_bounds_device_memory_is_caught(emu):
    with pytest.raises(WorkerCrashed, match="heap-buffer-overflow"):
        emu.selftest("st_index", (2, 1, 1), (4, 1, 1), 0, ["o"], {"o": ("int32", [0] * 7)})
    # the next request gets a fresh worker
    out, status = emu.selftest("st_index", (2, 1, 1), (4, 1, 1), 0, ["o"], {"o": ("int32", [0] * 8)})
    np.testing.assert_array_equal(out["o"], np.arange(8))


def test_runtime_rejects_barrier_without_fibers_and_bad_launches():
    from detector.engine.emu import library
    lib = library(False)
    fn, idx = lib.lib, lib.index["gemm_f32"]
    zero = ctypes.c_int32(0)
    args = (ctypes.c_void_p * 8)(*([ctypes.cast(ctypes.pointer(zero), ctypes.c_void_p)] * 8))
    # All arguments point at one int 0 (M = N = K = 0): nothing is read, only the checks act.
    assert fn.emu_launch(idx, 1, 1, 1, 2048, 1, 1, 0, 1, args) == -1
    assert "exceeds CUDA's limits" in fn.emu_last_error().decode()
    assert fn.emu_launch(idx, 1, 70000, 1, 256, 1, 1, 0, 1, args) == -1
    assert fn.emu_launch(idx, 1, 1, 1, 256, 1, 1, 64 * 1024, 1, args) == -1
    assert "48 KiB" in fn.emu_last_error().decode()
    dw = lib.index["dw3x3_s1_f32"]
    x = (ctypes.c_float * 16)()
    ptr = ctypes.c_void_p(ctypes.addressof(x))
    ints = [ctypes.c_int32(v) for v in (1, 1, 1, 1, 1, 0, 0)]   # 1x1 image, mult 1, mode 0
    dargs = (ctypes.c_void_p * 11)(*([ctypes.cast(ctypes.pointer(ptr), ctypes.c_void_p)] * 4
                                     + [ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in ints]))
    assert fn.emu_launch(dw, 1, 1, 1, 32, 8, 1, 4096, 0, dargs) == -1   # sync kernel, no fibers
    assert "without barrier support" in fn.emu_last_error().decode()
    assert fn.emu_launch(dw, 1, 1, 1, 32, 8, 1, 4096, 1, dargs) == 0
