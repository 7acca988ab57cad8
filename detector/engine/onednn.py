"""The lowered plan on PyTorch's oneDNN convolutions, in bfloat16 (or float32).

``--backend torch --precision bf16``: the plan's ops (BN already folded) run as oneDNN
convolutions with the bias and the activation fused in (``mkldnn._convolution_pointwise``,
the op PyTorch's own compiler emits, with the weights reordered once into oneDNN's blocked
layout), on channels-last bfloat16 tensors. On CPUs that compute bf16 in hardware
(AVX512-BF16, AMX) a bf16 GEMM runs at about 1.8x the float32 peak, and the FastDSC
networks are GEMM-bound: yolov2-voc-fastdsc at 416 takes 17 ms on this project's 2-core
Zen 4 CPU against 26 ms for ONNX Runtime's float32 graph (docs/performance.md, "bf16").
Accumulation is float32 inside oneDNN; the raw output differs from float32 by about 0.15 %
(relative L2) and the mAP cost is measured in docs/performance.md.

Everything per model is prepared once: weights converted and laid out, the input buffer
allocated. Per frame: one copy of the float32 blob into the bf16 input, the ops, one output
conversion. The ops' outputs come from torch's allocator (the fused op has no ``out=``
form); glibc hands the blocks freed by the previous frame back, and keeping freed memory in
the heap (``detector.heap``) made no measurable difference (ad-hoc A/B, 2026-11-26).
Without the fused op (another PyTorch build) a conv is ``F.conv2d`` followed by the
activation, the same arithmetic in two passes.
"""
from __future__ import annotations

import threading
from typing import Callable, List

import numpy as np

from ..errors import UserError
from .plan import Plan

DTYPES = ("bf16", "fp32")


def cpu_bf16_native() -> bool:
    """The CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where oneDNN's bf16
    kernels are faster than float32 rather than emulated. From the kernel's CPU flags where
    there are any (no torch import: ``detector.load`` asks this before it knows it needs
    torch), else from torch."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    try:
        import torch
        cpu = torch.cpu
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (ImportError, AttributeError):
        return False


def bf16_supported() -> bool:
    """This PyTorch can run oneDNN's bf16 convolutions on this CPU at all (natively or by
    oneDNN's own conversion: AVX512-BW/VL/DQ, AVX-NE-CONVERT or AMX); elsewhere a bf16 conv
    raises at its first call."""
    try:
        import torch
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return cpu_bf16_native()


def _fused_conv():
    import torch
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):
        return None


class OneDnnRunner:
    """Runs a Plan on torch oneDNN ops. ``dtype``: ``bf16`` or ``fp32``. ``fused``: use the
    fused conv+bias+activation op when this PyTorch has it (False: conv2d, then the
    activation; for tests)."""
    name = "torch"

    def __init__(self, plan: Plan, dtype: str = "bf16", fused: bool = True):
        import torch
        if dtype not in DTYPES:
            raise UserError(f"precision {dtype!r}: allowed values: {', '.join(DTYPES)}")
        if dtype == "bf16" and not bf16_supported():
            raise UserError("--precision bf16: this CPU (or this PyTorch build) has no oneDNN "
                            "bfloat16 convolutions; use --precision fp32")
        self.torch = torch
        self.F = torch.nn.functional
        self.plan = plan
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        self.precision = dtype
        self.cl = torch.channels_last
        self.conv = _fused_conv() if fused else None
        self.fused = self.conv is not None
        self._steps: List[Callable] = [self._step(op) for op in plan.ops]
        self._lock = threading.Lock()
        self._input = torch.empty((1, plan.channels, plan.size, plan.size), dtype=self.dtype
                                  ).contiguous(memory_format=self.cl)

    # ---- per-op closures, built once ---------------------------------------------------
    def _step(self, op: dict) -> Callable:
        torch, F = self.torch, self.F
        kind = op["op"]
        if kind == "conv":
            w = torch.from_numpy(np.ascontiguousarray(self.plan.tensors[op["weight"]]))
            w = w.to(self.dtype).contiguous(memory_format=self.cl)
            b = torch.from_numpy(np.ascontiguousarray(self.plan.tensors[op["bias"]])) \
                .to(self.dtype)
            pad, stride, groups, act = op["pad"], op["stride"], op["groups"], op["act"]
            if self.fused:
                attr, scalars = {"leaky": ("leaky_relu", [0.1]), "relu": ("relu", []),
                                 "linear": ("none", [])}[act]
                conv = self.conv
                w = _prepacked(w, pad, stride, groups, (1,) + tuple(self.plan.buffers[op["src"]]))
                return lambda x: conv(x, w, b, [pad, pad], [stride, stride], [1, 1], groups,
                                      attr, scalars, "")
            if act == "leaky":
                return lambda x: F.leaky_relu_(F.conv2d(x, w, b, stride, pad, 1, groups), 0.1)
            if act == "relu":
                return lambda x: F.relu_(F.conv2d(x, w, b, stride, pad, 1, groups))
            return lambda x: F.conv2d(x, w, b, stride, pad, 1, groups)
        if kind == "maxpool":
            size, stride = op["size"], op["stride"]
            pb, pa = op["pad_before"], op["pad_after"]
            _, h, w_ = self.plan.buffers[op["src"]]
            if size == stride == 2 and pb == 0 and h % 2 == 0 and w_ % 2 == 0:
                return _pool2x2
            return lambda x: F.max_pool2d(
                F.pad(x, (pb, pa, pb, pa), value=float("-inf")) if pb or pa else x,
                size, stride)
        if kind == "reorg":
            from ..models.blocks import Reorg
            reorg = Reorg(op["stride"])
            return lambda x: reorg(x.contiguous()).contiguous(memory_format=self.cl)
        if kind == "gather":
            idx = torch.tensor(op["channels"], dtype=torch.long)
            return lambda x: _gather(x, idx)
        if kind == "concat":
            return lambda bufs: torch.cat([bufs[j] for j in op["srcs"]], 1)
        raise ValueError(f"plan op {kind!r} is unknown")

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        """Blob [1, C, S, S] -> raw output (a new float32 array). Thread-safe: a call made
        while another runs converts its input into a fresh tensor instead of the shared one."""
        torch = self.torch
        if blob.shape != tuple(self._input.shape):
            raise ValueError(f"input of shape {blob.shape}: this runner is built for "
                             f"{tuple(self._input.shape)}")
        mine = self._lock.acquire(blocking=False)
        try:
            with torch.inference_mode():
                x = self._input if mine else torch.empty_like(self._input)
                x.copy_(torch.from_numpy(np.asarray(blob, np.float32)))
                return self._run(x)
        finally:
            if mine:
                self._lock.release()

    def _run(self, x):
        bufs = {0: x}
        for op, step in zip(self.plan.ops, self._steps):
            bufs[op["dst"]] = step(bufs) if op["op"] == "concat" else step(bufs[op["src"]])
        return bufs[self.plan.output].float().contiguous().numpy()


def _prepacked(w, pad: int, stride: int, groups: int, input_size):
    """The weight reordered once into oneDNN's blocked layout for this conv (what PyTorch's
    compiler does), so no call reorders it again: 1.6x faster for a 1024x1024 1x1 conv at
    13x13, identical results. The plain weight where this build cannot."""
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
