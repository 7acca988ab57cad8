"""Helpers of the kernel tests: plans made of independent single ops, float64 torch
references, and the per-dtype error bounds the kernels are held to (docs/kernels.md).

Error bounds, elementwise, with ``mag = |W| (*) |X| + |b|`` (the convolution of absolute
values: the scale the rounding errors are relative to) and ``n`` the accumulation length
(Cin/groups * k * k):

    fp32, every conv path:          |y - y64| <= (n + 2) u32 mag
    fp16, dw3x3 / direct (fp32 math): |y - y64| <= (n + 2) u32 mag + u16 |y64|
    fp16, GEMM (half2 over BK terms): |y - y64| <= (BK + 2) u16 mag + u16 |y64| + (n + 2) 2^-25

with u32 = 2^-24, u16 = 2^-11 (unit roundoffs), BK = 16; y64 is computed in float64 from the
same (for fp16: half-rounded) inputs. maxpool, reorg and concat are exact.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from detector.engine.plan import Plan
from detector.engine.plan_ops import Conv, Op

U32 = 2.0 ** -24
U16 = 2.0 ** -11
GEMM_BK = 16


def as_dtype(a: np.ndarray, dtype: str) -> np.ndarray:
    """What the engine sees of a float32 array: itself, or its fp16 rounding."""
    return a.astype(np.float16).astype(np.float64) if dtype == "fp16" else a.astype(np.float64)


class OpsPlan:
    """A plan of independent ops, each reading its own input buffers."""

    def __init__(self):
        self.buffers: List[Tuple[int, int, int]] = [(1, 1, 1)]   # buffer 0: unused input
        self.ops: List[Op] = []
        self.tensors: Dict[str, np.ndarray] = {}

    def buf(self, shape) -> int:
        self.buffers.append(tuple(int(v) for v in shape))
        return len(self.buffers) - 1

    def conv(self, src: int, cout: int, k: int, stride: int, pad: int, groups: int, act: str,
             weight: np.ndarray, bias: np.ndarray) -> int:
        cin, h, w = self.buffers[src]
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        dst = self.buf((cout, ho, wo))
        name = f"op{len(self.ops)}"
        self.tensors[name + ".weight"] = weight.astype(np.float32)
        self.tensors[name + ".bias"] = bias.astype(np.float32)
        self.ops.append(Conv(name=name, src=src, dst=dst, weight=name + ".weight",
                             bias=name + ".bias", size=k, stride=stride, pad=pad, groups=groups,
                             act=act))
        return dst

    def add(self, op_type, dst_shape, **fields) -> int:
        """An op of ``op_type`` (a plan_ops class) writing a new buffer of ``dst_shape``."""
        dst = self.buf(dst_shape)
        self.ops.append(op_type(name=f"op{len(self.ops)}", dst=dst, **fields))
        return dst

    def plan(self) -> Plan:
        return Plan(size=1, channels=1, buffers=list(self.buffers), ops=list(self.ops),
                    output=len(self.buffers) - 1, tensors=dict(self.tensors), anchors=[(1.0, 1.0)],
                    classes=1, names=["x"])


def torch_conv64(x, w, b, stride, pad, groups, act):
    """float64 torch reference (and the magnitude |w| (*) |x| + |b|)."""
    import torch
    import torch.nn.functional as F
    xt, wt, bt = (torch.from_numpy(np.asarray(a, np.float64)) for a in (x, w, b))
    y = F.conv2d(xt[None], wt, bt, stride, pad, 1, groups)[0]
    mag = F.conv2d(xt.abs()[None], wt.abs(), bt.abs(), stride, pad, 1, groups)[0]
    if act == "leaky":
        y = F.leaky_relu(y, 0.1)
    elif act == "relu":
        y = F.relu(y)
    return y.numpy(), mag.numpy()


def conv_bound(path: str, dtype: str, n: int, ref: np.ndarray, mag: np.ndarray) -> np.ndarray:
    if dtype == "fp32":
        return (n + 2) * U32 * mag + 1e-30
    if path in ("gemm", "im2col_gemm"):
        return (GEMM_BK + 2) * U16 * mag + U16 * np.abs(ref) + (n + 2) * 2.0 ** -25
    return (n + 2) * U32 * mag + U16 * np.abs(ref) + 2.0 ** -25


def assert_within(out: np.ndarray, ref: np.ndarray, bound: np.ndarray, what: str) -> float:
    """Checks |out - ref| <= bound everywhere; returns the largest error / bound ratio."""
    assert out.shape == ref.shape, (what, out.shape, ref.shape)
    err = np.abs(out.astype(np.float64) - ref)
    assert np.isfinite(out).all(), f"{what}: non-finite outputs"
    ratio = err / bound
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    assert ratio.max() <= 1.0, (f"{what}: error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst} "
                                f"(out {out[worst]!r}, ref {ref[worst]!r})")
    return float(ratio.max())
