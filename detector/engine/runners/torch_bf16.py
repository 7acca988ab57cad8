"""The ``torch-bf16`` runner: the lowered plan on PyTorch's oneDNN convolutions, in bfloat16
(or float32).

The ``torch`` backend at precision ``bf16``: the plan's ops (BN already folded) run as
oneDNN convolutions with the bias and the activation fused in
(``mkldnn._convolution_pointwise``, the op PyTorch's own compiler emits, with the weights
reordered once into oneDNN's blocked layout), on channels-last bfloat16 tensors. On CPUs that
compute bf16 in hardware (AVX512-BF16, AMX) a bf16 GEMM runs at about twice the float32
rate, and the FastDSC networks are GEMM-bound, so this path is often faster than ONNX
Runtime's float32 graph (``engine.cpu_choice`` measures which one is, per model and
machine). Accumulation is float32 inside oneDNN; the raw output differs from float32 by
well under 1 % (relative L2); docs/performance.md ("bf16") gives the speed and mAP figures.

Everything per model is prepared once: weights converted and laid out, the input buffer
allocated. Per frame: one copy of the float32 blob into the bf16 input, the ops, and one
conversion of the output to float32 in the plain NCHW layout (a new array; nothing is
reused). The ops' outputs come from torch's allocator (the fused op has no ``out=`` form);
glibc hands the blocks freed by the previous frame back, and keeping freed memory in the
heap (``detector.heap``) made no measurable difference. Without the fused op (another
PyTorch build) a conv is ``F.conv2d`` followed by the activation, the same arithmetic in two
passes.
"""
from __future__ import annotations

import threading
from typing import Callable, List, Optional, Tuple

import numpy as np

from ...errors import ParamError
from ...host import bf16_native
from ..plan import Plan
from ..plan_ops import Concat, Conv, Gather, MaxPool, Op, Reorg, handler
from ..runner import Runner

DTYPES = ("bf16", "fp32")


def bf16_supported() -> bool:
    """This PyTorch can run oneDNN's bf16 convolutions on this CPU at all (natively or by
    oneDNN's own conversion: AVX512-BW/VL/DQ, AVX-NE-CONVERT or AMX); elsewhere a bf16 conv
    raises at its first call."""
    try:
        import torch
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return bf16_native()


def _fused_conv():
    import torch
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


class OneDnnRunner(Runner):
    """Runs a Plan on torch oneDNN ops. ``dtype``: ``bf16`` (what the registry builds) or
    ``fp32`` (for tests). ``fused``: use the fused conv+bias+activation op when this PyTorch
    has it (False: conv2d, then the activation; for tests). ``max_batch``: the most frames
    of a call (the input tensor is allocated for them). Each call returns a new array."""
    name = "torch-bf16"
    backend = "torch"
    batching = True
    precisions = ("bf16",)
    requires = ("torch",)
    needs = "PyTorch: pip install 'fastdsc-yolo[torch]'"

    @classmethod
    def create(cls, spec, state, plan_fn, device, precision="bf16", **options) -> "OneDnnRunner":
        if device not in (None, "cpu"):
            raise ParamError("precision", f"runs on the CPU (not device {device})",
                             value=precision)
        max_batch = options.pop("max_batch", 1)
        if options:
            raise ParamError("precision", "takes no other backend options (got "
                             f"{', '.join(sorted(options))})", value=precision)
        return cls(plan_fn(), precision, max_batch=max_batch)

    def __init__(self, plan: Plan, dtype: str = "bf16", fused: bool = True,
                 max_batch: int = 1):
        import torch
        if dtype not in DTYPES:
            raise ParamError("precision", f"allowed values: {', '.join(DTYPES)}", value=dtype)
        if dtype == "bf16" and not bf16_supported():
            raise ParamError("precision", "this CPU (or this PyTorch build) has no oneDNN "
                             "bfloat16 convolutions; use fp32", value=dtype)
        self.torch = torch
        self.F = torch.nn.functional
        self.plan = plan
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.precision = dtype
        self.cl = torch.channels_last
        self.conv = _fused_conv() if fused else None
        self.fused = self.conv is not None
        # (dst, src, step): step(bufs[src]), or step(bufs) where src is None (a concat)
        self._steps: List[Tuple[int, Optional[int], Callable]] = [
            (op.dst, None if isinstance(op, Concat) else op.src, self._step(op))
            for op in plan.ops]
        self._lock = threading.Lock()
        self.max_batch = max_batch
        self._input = torch.empty((max_batch, plan.channels, plan.size, plan.size),
                                  dtype=self.dtype).contiguous(memory_format=self.cl)

    # ---- per-op closures, built once ---------------------------------------------------
    def _step(self, op: Op) -> Callable:
        return handler(_STEPS, op)(self, op)

    def _conv_step(self, op: Conv) -> Callable:
        torch, F = self.torch, self.F
        w = torch.from_numpy(np.ascontiguousarray(self.plan.tensors[op.weight]))
        w = w.to(self.dtype).contiguous(memory_format=self.cl)
        b = torch.from_numpy(np.ascontiguousarray(self.plan.tensors[op.bias])).to(self.dtype)
        pad, stride, groups, act = op.pad, op.stride, op.groups, op.act
        if self.fused:
            attr, scalars = {"leaky": ("leaky_relu", [0.1]), "relu": ("relu", []),
                             "linear": ("none", [])}[act]
            conv = self.conv
            w = _prepacked(w, pad, stride, groups, (1,) + tuple(self.plan.buffers[op.src]))
            return lambda x: conv(x, w, b, [pad, pad], [stride, stride], [1, 1], groups,
                                  attr, scalars, "")
        if act == "leaky":
            return lambda x: F.leaky_relu_(F.conv2d(x, w, b, stride, pad, 1, groups), 0.1)
        if act == "relu":
            return lambda x: F.relu_(F.conv2d(x, w, b, stride, pad, 1, groups))
        return lambda x: F.conv2d(x, w, b, stride, pad, 1, groups)

    def _maxpool_step(self, op: MaxPool) -> Callable:
        F = self.F
        size, stride = op.size, op.stride
        pb, pa = op.pad_before, op.pad_after
        _, h, w_ = self.plan.buffers[op.src]
        if size == stride == 2 and pb == 0 and h % 2 == 0 and w_ % 2 == 0:
            return _pool2x2
        return lambda x: F.max_pool2d(
            F.pad(x, (pb, pa, pb, pa), value=float("-inf")) if pb or pa else x, size, stride)

    def _reorg_step(self, op: Reorg) -> Callable:
        from ...models.blocks import Reorg as ReorgLayer
        reorg = ReorgLayer(op.stride)
        return lambda x: reorg(x.contiguous()).contiguous(memory_format=self.cl)

    def _gather_step(self, op: Gather) -> Callable:
        idx = self.torch.tensor(op.channels, dtype=self.torch.long)
        return lambda x: _gather(x, idx)

    def _concat_step(self, op: Concat) -> Callable:
        cat, srcs = self.torch.cat, op.srcs
        return lambda bufs: cat([bufs[j] for j in srcs], 1)

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        """Blob [n, C, S, S] (n <= max_batch) -> raw output (a new float32 array).
        Thread-safe: a call made while another runs converts its input into a fresh tensor
        instead of the shared one."""
        torch = self.torch
        n = blob.shape[0] if blob.ndim == 4 else 0
        if blob.shape[1:] != tuple(self._input.shape[1:]) or not 1 <= n <= self.max_batch:
            raise ValueError(f"input of shape {blob.shape}: this runner is built for "
                             f"[1..{self.max_batch}, {', '.join(map(str, self._input.shape[1:]))}]")
        mine = self._lock.acquire(blocking=False)
        try:
            with torch.inference_mode():
                x = self._input[:n] if mine else torch.empty_like(self._input[:n])
                x.copy_(torch.from_numpy(np.asarray(blob, np.float32)))
                return self._run(x)
        finally:
            if mine:
                self._lock.release()

    def _run(self, x):
        bufs = {0: x}
        for dst, src, step in self._steps:
            bufs[dst] = step(bufs) if src is None else step(bufs[src])
        out = bufs[self.plan.output]
        return out.to(self.torch.float32, memory_format=self.torch.contiguous_format).numpy()


def _prepacked(w, pad: int, stride: int, groups: int, input_size):
    """The weight reordered once into oneDNN's blocked layout for this conv (what PyTorch's
    compiler does), so no call reorders it again (same results). The plain weight where this
    build cannot."""
    import torch
    try:
        return torch._C._nn.mkldnn_reorder_conv2d_weight(
            w.to_mkldnn(), [pad, pad], [stride, stride], [1, 1], groups, list(input_size))
    except (AttributeError, RuntimeError):
        return w


def _pool2x2(x):
    """2x2 stride-2 max pool as two elementwise maxima over the channels-last view: twice as
    fast as ``max_pool2d`` on bf16 channels-last tensors, and the same values."""
    import torch
    v = x.permute(0, 2, 3, 1)                                # N H W C, contiguous
    v = torch.maximum(v[:, 0::2], v[:, 1::2])
    v = torch.maximum(v[:, :, 0::2], v[:, :, 1::2])
    return v.permute(0, 3, 1, 2)


def _gather(x, idx):
    """Output channel j = input channel ``idx[j]``, selected on the channels-last view: one
    pass, and the result is channels-last (what the convolutions take) whatever ``x`` is."""
    import torch
    return torch.index_select(x.permute(0, 2, 3, 1), 3, idx).permute(0, 3, 1, 2)


# op type -> the method that builds its closure
_STEPS = {Conv: OneDnnRunner._conv_step, MaxPool: OneDnnRunner._maxpool_step,
          Reorg: OneDnnRunner._reorg_step, Gather: OneDnnRunner._gather_step,
          Concat: OneDnnRunner._concat_step}
