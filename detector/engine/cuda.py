"""The ``cuda`` backend: the engine's kernels on an NVIDIA GPU through pycuda.

- Context: created explicitly for the chosen device (never ``pycuda.autoinit``), popped after
  setup and pushed around every engine call (so another thread may run the engine), detached
  on ``close()``. pycuda is imported only when this backend is built.
- Kernels: one cubin of ``kernels/all_kernels.cu`` for the running GPU's ``sm_XY``. Looked up
  in the installed package (``detector/kernels/fastdsc-<hash>-sm_XY.cubin``, from
  ``scripts/compile_check.py --cubin-dir``), then in the user cache; otherwise compiled at first
  use (nvcc if found, else NVRTC) and cached. ``<hash>`` covers every kernel source, so a stale
  cubin is never loaded.
- Memory: device allocations made once; page-locked host staging buffers; one stream; every
  copy is asynchronous on it and the engine synchronises once per frame.
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, List

import numpy as np

from ..errors import UserError
from .kernel_sources import build_dir, kernel_dir, source_hash
from .launch import KERNELS, Launch


def cubin_name(arch: str) -> str:
    return f"fastdsc-{source_hash()}-{arch}.cubin"


def build_cubin(arch: str) -> bytes:
    """The kernels for ``arch`` ("sm_62"): packaged, cached, or compiled now (and cached)."""
    name = cubin_name(arch)
    for d in (kernel_dir(), build_dir("cubin")):
        path = os.path.join(d, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return f.read()
    from . import nvrtc
    out = os.path.join(build_dir("cubin"), name)
    fd, tmp = tempfile.mkstemp(suffix=".cubin", dir=os.path.dirname(out))
    os.close(fd)
    try:
        nvcc = nvrtc.find_nvcc()
        nvcc_error = "no nvcc (set CUDA_HOME)"
        if nvcc:
            try:
                nvrtc.nvcc_cubin(nvcc, arch, tmp)
                nvcc_error = None
            except RuntimeError as e:       # e.g. a newer nvcc that dropped this arch
                nvcc_error = "nvcc: " + str(e).strip().splitlines()[-1][:200]
        if nvcc_error:
            try:
                data, _ = nvrtc.Nvrtc().compile(arch, cubin=True)
            except (nvrtc.NvrtcError, OSError) as e:
                raise UserError(f"cannot compile the CUDA kernels for {arch}: {nvcc_error}; "
                                f"NVRTC: {str(e).splitlines()[0][:200]}") from None
            with open(tmp, "wb") as f:
                f.write(data)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    with open(out, "rb") as f:
        return f.read()


class CudaBackend:
    name = "cuda"

    def __init__(self, device: int = 0):
        try:
            import pycuda.driver as cuda
        except ImportError:
            raise UserError("backend 'cuda' needs pycuda: pip install 'fastdsc-yolo[cuda]' "
                            "(on Jetson: pip install pycuda with the JetPack CUDA on PATH)") from None
        self.cuda = cuda
        try:
            cuda.init()
            count = cuda.Device.count()
        except cuda.Error as e:
            raise UserError(f"backend 'cuda': no usable CUDA driver ({e})") from None
        if not 0 <= device < count:
            raise UserError(f"backend 'cuda': no CUDA device {device} ({count} found)")
        dev = cuda.Device(device)
        major, minor = dev.compute_capability()
        self.arch = f"sm_{major}{minor}"
        self.device_name = dev.name()
        self.ctx = dev.make_context()          # pushed: current until the pop below
        self._allocs: List[object] = []
        self._closed = False
        try:
            self.stream = cuda.Stream()
            self.module = cuda.module_from_buffer(build_cubin(self.arch))
            self._functions = {}
        finally:
            self.ctx.pop()

    # ---- context -------------------------------------------------------------------------
    def activate(self):
        return _Current(self.ctx)

    # ---- memory --------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        a = self.cuda.mem_alloc(max(int(nbytes), 1))
        self._allocs.append(a)
        return int(a)

    def host_buffer(self, shape, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def upload(self, dev: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(dev, host, self.stream)

    def download(self, host: np.ndarray, dev: int) -> None:
        self.cuda.memcpy_dtoh_async(host, dev, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    # ---- kernels -------------------------------------------------------------------------
    def prepare(self, launch: Launch) -> Callable[[], None]:
        spec = KERNELS[launch.kernel]
        fn = self._functions.get(launch.kernel)
        if fn is None:
            fn = self.module.get_function(launch.kernel)
            fn.prepare(spec.signature)
            self._functions[launch.kernel] = fn
        grid, block, stream, shmem = launch.grid, launch.block, self.stream, launch.shmem
        args = tuple(np.uintp(a) if c == "P" else a for c, a in zip(spec.signature, launch.args))

        def run():
            fn.prepared_async_call(grid, block, stream, *args, shared_size=shmem)
        return run

    # ---- timing --------------------------------------------------------------------------
    def event(self):
        e = self.cuda.Event()
        e.record(self.stream)
        return e

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return end.time_since(start)

    # ---- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.ctx.push()
        try:
            self.stream.synchronize()
            for a in self._allocs:
                a.free()
            self._allocs = []
            self.module = None
            self._functions = {}
        finally:
            self.ctx.pop()
            self.ctx.detach()


class _Current:
    """Makes a context current for a ``with`` block."""

    def __init__(self, ctx):
        self.ctx = ctx

    def __enter__(self):
        self.ctx.push()
        return self

    def __exit__(self, *exc):
        self.ctx.pop()
        return False
