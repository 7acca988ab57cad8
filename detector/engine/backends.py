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
import threading
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


def physical_cores() -> int:
    """Physical cores this process may run on (SMT siblings counted once): the thread count
    for compute-bound inference (a second hyper-thread on a core adds contention, not FLOPs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        list(range(os.cpu_count() or 1))
    cores = set()
    for c in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") as f:
                cores.add(f.read().strip())
        except OSError:
            cores.add(str(c))
    return max(1, len(cores))


PRECISIONS = ("fp32", "int8")


class OrtRunner:
    """ONNX Runtime on the graph built from the plan.

    Options: ``pointwise`` = ``auto`` (the per-layer 1x1-Conv/GEMM choice measured on this
    machine by ``detector bench``, else all 1x1 Conv), ``conv``, ``matmul`` or a dict
    op-name -> form; ``threads``: a fixed intra-op thread count, or None (default) for
    adaptive threading: one session per physical core count and one single-threaded, and per
    call the one that is currently faster (engine/adaptive.py; what wins on an idle machine
    loses when other processes share the cores); ``precision`` ``fp32`` or ``int8`` (static
    quantization calibrated on synthetic frames, engine/quantize.py); ``spinning`` (ORT
    worker threads busy-wait between ops; default on).

    Per frame nothing is allocated but the returned copy: the output is bound once (IO
    binding) to a preallocated array, and the input is bound to the caller's blob where it
    lies (rebound only when a different array comes: ``Detector.preprocess`` reuses one), so
    it reaches ORT without a copy. Blobs that are not C-contiguous float32 are copied into a
    buffer of the runner's. (The runner keeps no public ``input_buffer``: the stream pipeline
    reads that as "preprocess only on the inference thread".)
    """
    name = "ort"

    def __init__(self, plan: Plan, device: str = "cpu", pointwise="auto",
                 cache_dir: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "fp32", spinning: bool = True):
        import onnxruntime as ort
        if precision not in PRECISIONS:
            raise UserError(f"precision {precision!r}: allowed values: {', '.join(PRECISIONS)}")
        cores = physical_cores()
        self.threads = int(threads) if threads else cores
        if pointwise == "auto":
            from .tune import tuned_forms
            pointwise = tuned_forms(plan, cache_dir, self.threads) or "conv"
        self.pointwise = pointwise
        self.precision = precision
        path = ort_model_path(plan, pointwise, cache_dir)
        if precision == "int8":
            from .quantize import quantized_model
            path = quantized_model(plan, path, cache_dir)
        self.path = path
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            have = ort.get_available_providers()
            if "CUDAExecutionProvider" not in have:
                raise UserError("--device cuda with --backend ort: this onnxruntime has no "
                                "CUDAExecutionProvider (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider"] + providers
        counts = [self.threads] if (threads or device == "cuda" or cores == 1) else [cores, 1]
        self.sessions = [ort.InferenceSession(path, session_options(n, spinning),
                                              providers=providers) for n in counts]
        self.session = self.sessions[0]
        self.input = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._input_buffer = np.zeros((1, plan.channels, plan.size, plan.size), np.float32)
        self.output = np.empty((1,) + tuple(plan.buffers[plan.output]), np.float32)
        self._bindings = []
        self._lock = threading.Lock()
        self.picker = None
        if device != "cuda":
            self._bindings = [s.io_binding() for s in self.sessions]
            for b in self._bindings:
                b.bind_output(self.output_name, "cpu", 0, np.float32, list(self.output.shape),
                              self.output.ctypes.data)
            self._bind_input(self._input_buffer)
            if len(self.sessions) > 1:
                from .adaptive import AdaptivePicker
                self.picker = AdaptivePicker(
                    [lambda s=s, b=b: s.run_with_iobinding(b)
                     for s, b in zip(self.sessions, self._bindings)],
                    [f"{n} thread{'s' if n > 1 else ''}" for n in counts])

    def _bind_input(self, arr: np.ndarray) -> None:
        for b in self._bindings:
            b.bind_input(self.input, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        self._bound = arr                       # keeps the bound memory alive

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        """Blob -> raw output (a new array; the bound output buffer is reused inside).
        Thread-safe: a call made while another is running takes ORT's plain path."""
        if not self._bindings or not self._lock.acquire(blocking=False):
            return self.session.run(None, {self.input: np.ascontiguousarray(blob, np.float32)})[0]
        try:
            return self._run_bound(blob)
        finally:
            self._lock.release()

    def _run_bound(self, blob: np.ndarray) -> np.ndarray:
        if blob is not self._bound:
            if blob.shape != self._input_buffer.shape:
                raise ValueError(f"input of shape {blob.shape}: this runner is built for "
                                 f"{self._input_buffer.shape}")
            if blob.dtype != np.float32 or not blob.flags.c_contiguous:
                np.copyto(self._input_buffer, blob)
                blob = self._input_buffer
            self._bind_input(blob)
        if self.picker is not None:
            self.picker()
        else:
            self.session.run_with_iobinding(self._bindings[0])
        return self.output.copy()


def session_options(threads: int, spinning: bool = True):
    """ORT options of the fast CPU path: all graph optimizations (BN already folded; ORT
    fuses Conv/Gemm + activation and runs convolutions in its blocked NCHWc layout), one
    inference at a time on ``threads`` intra-op threads (not pinned), worker threads spinning
    only while a run is in progress. Denormals are not flushed: ORT's
    ``session.set_denormal_as_zero`` also sets flush-to-zero on the *calling* thread, which
    would leak into the user's own numpy/float code after ``detector.load(...)(frame)``."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    # Spin between the ops of a run only: when Run() returns, the workers sleep, so they do
    # not take the cores from the rest of the frame (letterbox, NMS), from the other session
    # of adaptive threading, or from other processes.
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    return opts


def ort_model_path(plan: Plan, pointwise="conv", cache_dir: Optional[str] = None,
                   ort_ops: bool = True) -> str:
    """The fp32 ONNX graph of ``plan`` in the given pointwise form(s), built once and cached:
    the ``ort`` backend's graph, or with ``ort_ops=False`` the graph ``detector export``
    writes (TensorRT-8 op set)."""
    path = onnx_cache_path(plan, pointwise, cache_dir, ort_ops)
    if not os.path.isfile(path):
        from ..io.atomic import atomic_write_bytes
        from .onnx_graph import plan_to_onnx
        atomic_write_bytes(path, plan_to_onnx(plan, pointwise, ort_ops=ort_ops)
                           .SerializeToString())
    return path


def onnx_cache_path(plan: Plan, pointwise, cache_dir: Optional[str] = None,
                    ort_ops: bool = True) -> str:
    from .onnx_graph import GRAPH_VERSION
    d = os.path.join(cache_dir or default_cache_dir(), "onnx")
    tag = json.dumps({"pointwise": pointwise, "graph": GRAPH_VERSION, "ort_ops": ort_ops},
                     sort_keys=True)
    return os.path.join(d, plan_digest(plan, tag) + ".onnx")


def make_runner(backend: str, spec, state, plan_fn: Callable[[], Plan], device: Optional[str],
                **options) -> Runner:
    """Build the runner for ``backend``. ``plan_fn`` lowers the model on demand (not needed
    by torch)."""
    device = device or ("cuda" if backend == "cuda" else "cpu")
    if backend == "torch":
        if not _has("torch"):
            raise UserError("--backend torch needs PyTorch: pip install 'fastdsc-yolo[torch]'")
        precision = options.pop("precision", "fp32")
        if precision == "bf16":
            if device != "cpu":
                raise UserError(f"--precision bf16 runs on the CPU (not --device {device})")
            if options:
                raise UserError(f"--precision bf16 takes no other backend options (got "
                                f"{', '.join(sorted(options))})")
            from .onednn import OneDnnRunner
            return OneDnnRunner(plan_fn(), "bf16")
        if precision != "fp32":
            raise UserError(f"--precision {precision} with --backend torch: allowed values: "
                            "fp32, bf16")
        if state is None:
            raise UserError("--backend torch needs unfolded weights; a lowered plan file runs "
                            "on ort, cuda or emu (or on torch with --precision bf16)")
        return TorchRunner(spec, state, device, **options)
    if backend == "ort":
        if not (_has("onnxruntime") and _has("onnx")):
            raise UserError("--backend ort needs onnxruntime and onnx: pip install onnxruntime onnx")
        return OrtRunner(plan_fn(), device, **options)
    if backend in ("cuda", "emu"):
        precision = options.pop("precision", "fp32")
        if precision != "fp32":
            raise UserError(f"--precision {precision} is for the torch (bf16) and ort (int8) "
                            f"backends; --backend {backend} runs fp32")
        try:
            from .kernel_engine import KernelEngine
        except ImportError as e:
            raise UserError(f"--backend {backend} is not available in this build ({e})") from None
        return KernelEngine(plan_fn(), backend=backend, **options)
    raise UserError(f"--backend {backend!r} is unknown; allowed values: {', '.join(BACKENDS)}")
