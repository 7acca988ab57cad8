"""The ``ort`` runner: ONNX Runtime on the graph built from the lowered plan."""
from __future__ import annotations

import threading
from typing import Dict, Optional

import numpy as np

from ...errors import ParamError
from ...host import physical_cores
from ..adaptive import AdaptivePicker
from ..ort_session import ort_model_path, session_options
from ..plan import Plan
from ..quantize import quantized_model
from ..runner import Runner
from ..tune import tuned_forms

PRECISIONS = ("fp32", "int8")


class OrtRunner(Runner):
    """ONNX Runtime on the graph built from the plan.

    Options: ``pointwise`` = ``auto`` (the per-layer 1x1-Conv/GEMM choice measured on this
    machine by ``detector bench``, else all 1x1 Conv), ``conv``, ``matmul`` or a dict
    op-name -> form; ``threads``: a fixed intra-op thread count, or None (default) for
    adaptive threading: one session per physical core count and one single-threaded, and per
    call the one that is currently faster (engine/adaptive.py; what wins on an idle machine
    loses when other processes share the cores); ``precision`` ``fp32`` or ``int8`` (static
    quantization calibrated on synthetic frames, engine/quantize.py); ``spinning`` (ORT
    worker threads busy-wait between ops; default on).

    Per frame nothing is allocated or copied: the output is bound once (IO binding) to a
    preallocated array, which is what the call returns (``reuses_output``; one such array
    per calling thread, so a thread's result is overwritten only by its own next call), and
    the input is bound to the caller's blob where it lies (rebound only when a different
    array comes: ``Detector.preprocess`` reuses one), so it reaches ORT without a copy.
    Blobs that are not C-contiguous float32 are copied into a buffer of the runner's. (With
    ``device="cuda"`` there is no binding and every call returns a new array.)

    ``max_batch`` > 1 runs the graph with a free batch axis (``onnx_graph``'s dynamic batch):
    a stacked blob ``[n, 3, S, S]`` is one call, its output the first ``n`` rows of the
    thread's output array (allocated for ``max_batch``).
    """
    name = "ort"
    backend = "ort"
    reuses_output = True
    batching = True
    precisions = PRECISIONS
    requires = ("onnxruntime", "onnx")
    needs = "onnxruntime and onnx: pip install onnxruntime onnx"

    @classmethod
    def create(cls, spec, state, plan_fn, device, precision="fp32", **options) -> "OrtRunner":
        return cls(plan_fn(), device or "cpu", precision=precision, **options)

    def __init__(self, plan: Plan, device: str = "cpu", pointwise="auto",
                 cache_dir: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "fp32", spinning: bool = True, max_batch: int = 1):
        import onnxruntime as ort
        if precision not in PRECISIONS:
            raise ParamError("precision", f"allowed values: {', '.join(PRECISIONS)}",
                             value=precision)
        cores = physical_cores()
        self.threads = int(threads) if threads else cores
        if pointwise == "auto":
            pointwise = tuned_forms(plan, cache_dir, self.threads) or "conv"
        self.pointwise = pointwise
        self.precision = precision
        self.max_batch = max_batch
        path = ort_model_path(plan, pointwise, cache_dir, dynamic_batch=max_batch > 1)
        if precision == "int8":
            path = quantized_model(plan, path, cache_dir)
        self.path = path
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ParamError("device", "the ort backend needs an onnxruntime with the "
                                 "CUDAExecutionProvider (install onnxruntime-gpu)", value=device)
            providers = ["CUDAExecutionProvider"] + providers
        counts = [self.threads] if (threads or device == "cuda" or cores == 1) else [cores, 1]
        self.sessions = [ort.InferenceSession(path, session_options(n, spinning),
                                              providers=providers) for n in counts]
        self.session = self.sessions[0]
        self.input = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self._input_buffer = np.zeros((max_batch, plan.channels, plan.size, plan.size),
                                      np.float32)
        self.output_shape = (max_batch,) + tuple(plan.buffers[plan.output])
        self._bindings = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._bound_output: Optional[np.ndarray] = None
        self._bound_rows = 0
        self.picker = None
        self._pickers: Dict[int, AdaptivePicker] = {}     # per batch size: like with like
        if device != "cuda":
            self._bindings = [s.io_binding() for s in self.sessions]
            self._bind_input(self._input_buffer[:1])
            if len(self.sessions) > 1:
                self._counts = counts
                self.picker = self._picker(1)

    def _picker(self, n: int) -> AdaptivePicker:
        """The adaptive choice of thread count for calls of ``n`` frames (the latencies of
        other batch sizes are not comparable)."""
        picker = self._pickers.get(n)
        if picker is None:
            picker = self._pickers[n] = AdaptivePicker(
                [lambda s=s, b=b: s.run_with_iobinding(b)
                 for s, b in zip(self.sessions, self._bindings)],
                [f"{k} thread{'s' if k > 1 else ''}" for k in self._counts])
        return picker

    def _bind_input(self, arr: np.ndarray) -> None:
        for b in self._bindings:
            b.bind_input(self.input, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        self._bound = arr                       # keeps the bound memory alive

    def _thread_output(self, n: int) -> np.ndarray:
        """The first ``n`` rows of this thread's output array, bound as the sessions'
        output."""
        out = getattr(self._local, "output", None)
        if out is None:
            out = self._local.output = np.empty(self.output_shape, np.float32)
        if out is not self._bound_output or n != self._bound_rows:
            for b in self._bindings:
                b.bind_output(self.output_name, "cpu", 0, np.float32, [n, *out.shape[1:]],
                              out.ctypes.data)
            self._bound_output, self._bound_rows = out, n   # keeps the bound memory alive
        return out if n == len(out) else out[:n]

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        """Blob -> raw output: this thread's output array, overwritten by its next call.
        Thread-safe: a call made while another is running takes ORT's plain path (and gets
        a new array)."""
        if not self._bindings or not self._lock.acquire(blocking=False):
            return self.session.run(None, {self.input: np.ascontiguousarray(blob, np.float32)})[0]
        try:
            return self._run_bound(blob)
        finally:
            self._lock.release()

    def _run_bound(self, blob: np.ndarray) -> np.ndarray:
        if blob is not self._bound:
            n = blob.shape[0] if blob.ndim == 4 else 0
            if blob.shape[1:] != self._input_buffer.shape[1:] or not 1 <= n <= self.max_batch:
                raise ValueError(f"input of shape {blob.shape}: this runner is built for "
                                 f"{(self.max_batch,) + self._input_buffer.shape[1:]} "
                                 f"(at most {self.max_batch} frames)")
            if blob.dtype != np.float32 or not blob.flags.c_contiguous:
                np.copyto(self._input_buffer[:n], blob)
                blob = self._input_buffer[:n]
            self._bind_input(blob)
        n = self._bound.shape[0]
        out = self._thread_output(n)
        if self.picker is not None:
            (self.picker if n == 1 else self._picker(n))()
        else:
            self.session.run_with_iobinding(self._bindings[0])
        return out
