"""Backends: turn a loaded model into a ``runner`` — a callable taking the preprocessed blob
``[1, 3, S, S]`` float32 and returning the raw region output ``[1, A*(5+C), S/32, S/32]``.

- ``torch``: the reference nn.Module (CPU or CUDA); needs the unfolded state dict.
- ``ort``: ONNX Runtime on the graph built from the lowered plan (cached on disk).
- ``cuda``: our CUDA kernels through pycuda (no torch at run time).
- ``emu``: the same kernels compiled for the CPU by the emulation header (for testing).

The backend is chosen once, when the detector is built.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Callable, List, Optional

import numpy as np

from ..errors import UserError
from .plan import Plan, default_cache_dir

BACKENDS = ("torch", "ort", "cuda", "emu")

Runner = Callable[[np.ndarray], np.ndarray]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def cuda_device_present() -> bool:
    """True when an NVIDIA driver is present (checked without importing pycuda or torch)."""
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvhost-ctrl")


def available_backends() -> List[str]:
    out = []
    if _has("torch"):
        out.append("torch")
    if _has("onnxruntime") and _has("onnx"):
        out.append("ort")
    if _has("pycuda") and cuda_device_present():
        out.append("cuda")
    out.append("emu")
    return out


def default_backend(device: Optional[str] = None) -> str:
    """The fastest backend available here: pycuda kernels on a GPU, else ONNX Runtime, else torch."""
    avail = available_backends()
    if device == "cuda":
        for b in ("cuda", "torch"):
            if b in avail:
                return b
        raise UserError("--device cuda: no CUDA backend available (install the 'cuda' extra "
                        "(pycuda) on a machine with an NVIDIA driver, or torch with CUDA)")
    for b in ("ort", "torch"):
        if b in avail:
            return b
    raise UserError("no CPU backend installed: pip install onnxruntime (or torch)")


def plan_digest(plan: Plan, extra: str = "") -> str:
    """Content hash of a plan (weights + structure + input size) for on-disk caches."""
    h = hashlib.sha256()
    h.update(json.dumps(plan.meta(), sort_keys=True).encode())
    h.update(extra.encode())
    for k in sorted(plan.tensors):
        h.update(k.encode())
        h.update(np.ascontiguousarray(plan.tensors[k]).tobytes())
    return h.hexdigest()[:24]


class TorchRunner:
    name = "torch"

    def __init__(self, spec, state, device: str = "cpu", channels_last: bool = False,
                 pointwise: str = "gemm"):
        import torch
        from ..models.yolov2 import YOLOv2, load_state
        if device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda: torch sees no CUDA device")
        self.torch = torch
        self.device = torch.device(device)
        self.model = load_state(YOLOv2(spec, pointwise), state).eval().to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            x = torch.from_numpy(blob).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


class OrtRunner:
    name = "ort"

    def __init__(self, plan: Plan, device: str = "cpu", pointwise="conv",
                 cache_dir: Optional[str] = None, threads: Optional[int] = None):
        import onnxruntime as ort
        path = onnx_cache_path(plan, pointwise, cache_dir)
        if not os.path.isfile(path):
            from ..io.atomic import atomic_write_bytes
            from .onnx_graph import plan_to_onnx
            atomic_write_bytes(path, plan_to_onnx(plan, pointwise).SerializeToString())
        self.path = path
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads or max(1, len(os.sched_getaffinity(0)))
        opts.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            have = ort.get_available_providers()
            if "CUDAExecutionProvider" not in have:
                raise UserError("--device cuda with --backend ort: this onnxruntime has no "
                                "CUDAExecutionProvider (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider"] + providers
        self.session = ort.InferenceSession(path, opts, providers=providers)
        self.input = self.session.get_inputs()[0].name

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: blob})[0]


def onnx_cache_path(plan: Plan, pointwise, cache_dir: Optional[str] = None) -> str:
    d = os.path.join(cache_dir or default_cache_dir(), "onnx")
    tag = json.dumps(pointwise, sort_keys=True)
    return os.path.join(d, plan_digest(plan, tag) + ".onnx")


def make_runner(backend: str, spec, state, plan_fn: Callable[[], Plan], device: Optional[str],
                **options) -> Runner:
    """Build the runner for ``backend``. ``plan_fn`` lowers the model on demand (not needed
    by torch)."""
    device = device or ("cuda" if backend == "cuda" else "cpu")
    if backend == "torch":
        if not _has("torch"):
            raise UserError("--backend torch needs PyTorch: pip install 'fastdsc-yolo[torch]'")
        if state is None:
            raise UserError("--backend torch needs unfolded weights; a lowered plan file runs "
                            "on ort, cuda or emu")
        return TorchRunner(spec, state, device, **options)
    if backend == "ort":
        if not (_has("onnxruntime") and _has("onnx")):
            raise UserError("--backend ort needs onnxruntime and onnx: pip install onnxruntime onnx")
        return OrtRunner(plan_fn(), device, **options)
    if backend in ("cuda", "emu"):
        try:
            from .kernel_engine import KernelEngine
        except ImportError as e:
            raise UserError(f"--backend {backend} is not available in this build ({e})") from None
        return KernelEngine(plan_fn(), backend=backend, **options)
    raise UserError(f"--backend {backend!r} is unknown; allowed values: {', '.join(BACKENDS)}")
