"""The ``ort`` runner: ONNX Runtime on the graph built from the lowered plan."""
from __future__ import annotations

import threading
from typing import Optional

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
    """
    name = "ort"
    backend = "ort"
    reuses_output = True
    precisions = PRECISIONS
    requires = ("onnxruntime", "onnx")
    needs = "onnxruntime and onnx: pip install onnxruntime onnx"

    @classmethod
    def create(cls, spec, state, plan_fn, device, precision="fp32", **options) -> "OrtRunner":
        return cls(plan_fn(), device or "cpu", precision=precision, **options)

    def __init__(self, plan: Plan, device: str = "cpu", pointwise="auto",
                 cache_dir: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "fp32", spinning: bool = True):
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
        path = ort_model_path(plan, pointwise, cache_dir)
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
        self._input_buffer = np.zeros((1, plan.channels, plan.size, plan.size), np.float32)
        self.output_shape = (1,) + tuple(plan.buffers[plan.output])
        self._bindings = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._bound_output: Optional[np.ndarray] = None
        self.picker = None
        if device != "cuda":
            self._bindings = [s.io_binding() for s in self.sessions]
            self._bind_input(self._input_buffer)
            if len(self.sessions) > 1:
                self.picker = AdaptivePicker(
                    [lambda s=s, b=b: s.run_with_iobinding(b)
                     for s, b in zip(self.sessions, self._bindings)],
                    [f"{n} thread{'s' if n > 1 else ''}" for n in counts])

    def _bind_input(self, arr: np.ndarray) -> None:
        for b in self._bindings:
            b.bind_input(self.input, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        self._bound = arr                       # keeps the bound memory alive

    def _thread_output(self) -> np.ndarray:
        """This thread's output array, bound as the sessions' output."""
        out = getattr(self._local, "output", None)
        if out is None:
            out = self._local.output = np.empty(self.output_shape, np.float32)
        if out is not self._bound_output:
            for b in self._bindings:
                b.bind_output(self.output_name, "cpu", 0, np.float32, list(out.shape),
                              out.ctypes.data)
            self._bound_output = out            # keeps the bound memory alive
        return out

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
            if blob.shape != self._input_buffer.shape:
                raise ValueError(f"input of shape {blob.shape}: this runner is built for "
                                 f"{self._input_buffer.shape}")
            if blob.dtype != np.float32 or not blob.flags.c_contiguous:
                np.copyto(self._input_buffer, blob)
                blob = self._input_buffer
            self._bind_input(blob)
        out = self._thread_output()
        if self.picker is not None:
            self.picker()
        else:
            self.session.run_with_iobinding(self._bindings[0])
        return out
