"""Compiling the kernels for a GPU architecture without a GPU: nvcc when present, else
NVRTC (ctypes over libnvrtc, e.g. from the PyPI wheel nvidia-cuda-nvrtc-cu12) for PTX and
cubins. Used by the ``cuda`` backend at first use and by scripts/compile_check.py."""
from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import tempfile
from typing import List, Optional, Sequence

from .kernel_sources import MAIN_SOURCE, kernel_dir

# C++14 keeps the sources honest for CUDA 10.2 (JetPack 4.6), whose nvcc knows nothing newer.
CUDA_STD = "-std=c++14"


def find_nvcc() -> Optional[str]:
    for base in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if base and os.path.isfile(os.path.join(base, "bin", "nvcc")):
            return os.path.join(base, "bin", "nvcc")
    return shutil.which("nvcc")


def _nvidia_wheel_paths(sub: str, pattern: str) -> List[str]:
    """Files of the nvidia-* PyPI wheels (``nvidia/<sub>/...``) on sys.path."""
    import sys
    out: List[str] = []
    for p in sys.path:
        out += glob.glob(os.path.join(p, "nvidia", sub, pattern))
    return out


def find_nvrtc() -> Optional[str]:
    env = os.environ.get("FASTDSC_NVRTC")
    if env:
        return env
    libs = sorted(_nvidia_wheel_paths("cuda_nvrtc", "lib/libnvrtc.so*"))
    libs = [p for p in libs if "builtins" not in p and ".alt." not in p]
    if libs:
        return libs[0]
    for base in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base:
            found = sorted(glob.glob(os.path.join(base, "lib64", "libnvrtc.so*")))
            if found:
                return found[0]
    return None


def find_cuda_include() -> Optional[str]:
    """Directory with cuda_fp16.h for NVRTC (wheel nvidia-cuda-runtime-cu12, or CUDA_HOME)."""
    found = _nvidia_wheel_paths("cuda_runtime", "include/cuda_fp16.h")
    if found:
        return os.path.dirname(found[0])
    for base in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if base and os.path.isfile(os.path.join(base, "include", "cuda_fp16.h")):
            return os.path.join(base, "include")
    return None


def find_ptxas() -> Optional[str]:
    found = _nvidia_wheel_paths("cuda_nvcc", "bin/ptxas")
    return found[0] if found else None


class NvrtcError(RuntimeError):
    pass


class Nvrtc:
    def __init__(self, path: Optional[str] = None):
        path = path or find_nvrtc()
        if not path:
            raise NvrtcError("NVRTC not found: pip install nvidia-cuda-nvrtc-cu12 (or set FASTDSC_NVRTC)")
        self.path = path
        self.lib = ctypes.CDLL(path)
        v = (ctypes.c_int(), ctypes.c_int())
        self.lib.nvrtcVersion(ctypes.byref(v[0]), ctypes.byref(v[1]))
        self.version = (v[0].value, v[1].value)

    def _check(self, status: int, what: str, prog=None) -> None:
        if status != 0:
            self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            msg = self.lib.nvrtcGetErrorString(status).decode()
            log = self._log(prog) if prog is not None else ""
            raise NvrtcError(f"{what}: {msg}\n{log}")

    def _log(self, prog) -> str:
        n = ctypes.c_size_t()
        self.lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value)
        self.lib.nvrtcGetProgramLog(prog, buf)
        return buf.value.decode(errors="replace")

    def compile(self, arch: str, source: Optional[str] = None, options: Sequence[str] = (),
                cubin: bool = False):
        """Compile ``source`` (default all_kernels.cu) for ``arch`` ("sm_62"): returns
        (PTX or cubin bytes, compiler log). ``cubin`` needs a real ``sm_`` target."""
        source = source or os.path.join(kernel_dir(), MAIN_SOURCE)
        with open(source, "rb") as f:
            text = f.read()
        prog = ctypes.c_void_p()
        self._check(self.lib.nvrtcCreateProgram(ctypes.byref(prog), text, os.path.basename(source).encode(),
                                                0, None, None), "nvrtcCreateProgram")
        try:
            target = arch if cubin else arch.replace("sm_", "compute_")
            opts = [f"--gpu-architecture={target}", CUDA_STD, f"--include-path={kernel_dir()}"]
            inc = find_cuda_include()
            if inc:
                opts.append(f"--include-path={inc}")
            opts += list(options)
            arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
            status = self.lib.nvrtcCompileProgram(prog, len(opts), arr)
            log = self._log(prog)
            self._check(status, f"NVRTC compile for {arch}", prog)
            n = ctypes.c_size_t()
            if cubin:
                self._check(self.lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)), "nvrtcGetCUBINSize")
                buf = ctypes.create_string_buffer(n.value)
                self._check(self.lib.nvrtcGetCUBIN(prog, buf), "nvrtcGetCUBIN")
                return buf.raw, log
            self._check(self.lib.nvrtcGetPTXSize(prog, ctypes.byref(n)), "nvrtcGetPTXSize")
            buf = ctypes.create_string_buffer(n.value)
            self._check(self.lib.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
            return buf.raw.rstrip(b"\0"), log
        finally:
            self.lib.nvrtcDestroyProgram(ctypes.byref(prog))


def nvcc_cubin(nvcc: str, arch: str, out_path: str, extra: Sequence[str] = ()) -> str:
    """Build all_kernels.cu into a cubin with nvcc; returns ptxas' -v report."""
    src = os.path.join(kernel_dir(), MAIN_SOURCE)
    cmd = [nvcc, "-cubin", f"-arch={arch}", CUDA_STD, "-O3", "-I", kernel_dir(), "-Xptxas", "-v",
           src, "-o", out_path] + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError("nvcc failed:\n" + " ".join(cmd) + "\n" + proc.stderr[-6000:])
    return proc.stderr


def ptxas_cubin(ptxas: str, ptx: bytes, arch: str, out_path: str) -> str:
    """Assemble PTX into a cubin for ``arch``; returns ptxas' -v report."""
    with tempfile.NamedTemporaryFile(suffix=".ptx", delete=False) as f:
        f.write(ptx)
        ptx_path = f.name
    try:
        proc = subprocess.run([ptxas, f"-arch={arch}", "-O3", "-v", ptx_path, "-o", out_path],
                              capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(ptx_path)
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas -arch={arch} failed:\n" + proc.stderr[-6000:])
    return proc.stderr
