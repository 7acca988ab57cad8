"""Kernel table and launch configurations, the same for the ``cuda`` and ``emu`` backends.

``KERNELS`` names every kernel of ``kernels/all_kernels.cu`` with its argument signature
(pycuda's ``prepare`` format: ``P`` pointer, ``i`` int32, ``I`` uint32, ``f`` float32) and
whether it uses ``__syncthreads`` (the emulator then runs its threads as fibers). The emulator
checks the table against the compiled signatures when it loads.

``op_launches`` turns one plan op into the kernel launches that execute it, given where each
buffer lives (device addresses); the engine computes these once and replays them every frame.
Tile sizes come from ``kernels/fastdsc.cuh`` (``kernel_sources.constants``).
"""
from __future__ import annotations

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from .kernel_sources import constants
from .plan_ops import Concat, Conv, Gather, MaxPool, Op, Reorg, handler

DTYPES = ("fp32", "fp16")
SUFFIX = {"fp32": "f32", "fp16": "f16"}
ITEMSIZE = {"fp32": 4, "fp16": 2}
ACT = {"linear": 0, "leaky": 1, "relu": 2}
MAX_GRID_YZ = 65535


class KernelSpec(NamedTuple):
    name: str
    signature: str
    sync: bool


def _table() -> Dict[str, KernelSpec]:
    t: Dict[str, KernelSpec] = {}

    def add(base: str, sig: str, sync: bool = False) -> None:
        for d in SUFFIX.values():
            t[f"{base}_{d}"] = KernelSpec(f"{base}_{d}", sig, sync)

    add("gemm", "PPPPiiii", sync=True)
    add("dw3x3_s1", "PPPPiiiiiii", sync=True)
    add("dw3x3_s2", "PPPPiiiiiii", sync=True)
    add("conv_direct", "PPPPiiiiiiiiiii")
    add("im2col", "PPiiiiiiii")
    add("maxpool", "PPiiiiiiii")
    add("reorg", "PPiiii")
    add("copy", "PPi")
    add("gather", "PPPii")
    add("region", "PPPPiiii")
    add("preprocess", "PPiiiiiiiiff")
    add("preprocess_darknet", "PPiiiiiiiiff")
    t["f32_to_f16"] = KernelSpec("f32_to_f16", "PPi", False)
    t["f16_to_f32"] = KernelSpec("f16_to_f32", "PPi", False)
    return t


KERNELS: Dict[str, KernelSpec] = _table()


class Launch(NamedTuple):
    """One kernel launch: what cuLaunchKernel takes (arguments as Python numbers)."""
    kernel: str
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    shmem: int
    args: tuple


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _check_grid(kernel: str, grid: Tuple[int, int, int]) -> None:
    if grid[1] > MAX_GRID_YZ or grid[2] > MAX_GRID_YZ:
        raise UserError(f"{kernel}: layer too large for one launch (grid {grid}, CUDA allows "
                        f"at most {MAX_GRID_YZ} in y and z)")


def _elementwise(kernel: str, n: int, args: tuple) -> Launch:
    t = constants()["FDSC_EW_THREADS"]
    return Launch(kernel, (max(1, _cdiv(n, t)), 1, 1), (t, 1, 1), 0, args)


# ---- one launch per kernel ----------------------------------------------------------------

def gemm(dtype: str, w: int, x: int, bias: int, y: int, m: int, n: int, k: int, act: str) -> Launch:
    c = constants()
    name = "gemm_" + SUFFIX[dtype]
    grid = (_cdiv(n, c["FDSC_GEMM_BN"]), _cdiv(m, c["FDSC_GEMM_BM"]), 1)
    _check_grid(name, grid)
    return Launch(name, grid, (c["FDSC_GEMM_THREADS"], 1, 1), 0, (w, x, bias, y, m, n, k, ACT[act]))


def dw3x3_shared_bytes(stride: int) -> int:
    c = constants()
    return 4 * ((c["FDSC_DW_TH"] - 1) * stride + 3) * ((c["FDSC_DW_TW"] - 1) * stride + 3)


def dw3x3(dtype: str, x: int, w: int, bias: int, y: int, channels: int, h: int, wd: int, ho: int,
          wo: int, stride: int, mult: int, grouped_sum: bool, act: str) -> Launch:
    """``channels``: input channels (multiplier mode) or output channels (grouped-sum mode)."""
    c = constants()
    name = f"dw3x3_s{stride}_{SUFFIX[dtype]}"
    grid = (_cdiv(wo, c["FDSC_DW_TW"]), _cdiv(ho, c["FDSC_DW_TH"]), channels)
    _check_grid(name, grid)
    mode = c["FDSC_DW_GROUPED_SUM"] if grouped_sum else c["FDSC_DW_MULTIPLIER"]
    return Launch(name, grid, (c["FDSC_DW_TW"], c["FDSC_DW_TH"], 1), dw3x3_shared_bytes(stride),
                  (x, w, bias, y, h, wd, ho, wo, mult, mode, ACT[act]))


def conv_direct(dtype: str, x: int, w: int, bias: int, y: int, cin: int, h: int, wd: int,
                cout: int, ho: int, wo: int, k: int, stride: int, pad: int, groups: int,
                act: str) -> Launch:
    return _elementwise("conv_direct_" + SUFFIX[dtype], cout * ho * wo,
                        (x, w, bias, y, cin, h, wd, cout, ho, wo, k, stride, pad, groups, ACT[act]))


def im2col(dtype: str, x: int, col: int, cin: int, h: int, wd: int, ho: int, wo: int, k: int,
           stride: int, pad: int) -> Launch:
    return _elementwise("im2col_" + SUFFIX[dtype], cin * k * k * ho * wo,
                        (x, col, cin, h, wd, ho, wo, k, stride, pad))


def maxpool(dtype: str, x: int, y: int, ch: int, h: int, wd: int, ho: int, wo: int, size: int,
            stride: int, pad_before: int) -> Launch:
    return _elementwise("maxpool_" + SUFFIX[dtype], ch * ho * wo,
                        (x, y, ch, h, wd, ho, wo, size, stride, pad_before))


def reorg(dtype: str, x: int, y: int, ch: int, h: int, wd: int, stride: int) -> Launch:
    return _elementwise("reorg_" + SUFFIX[dtype], ch * h * wd, (x, y, ch, h, wd, stride))


def copy(dtype: str, src: int, dst: int, n: int) -> Launch:
    return _elementwise("copy_" + SUFFIX[dtype], n, (src, dst, n))


def gather(dtype: str, src: int, dst: int, channels: int, hw: int, n: int) -> Launch:
    """``channels``: device address of the int32 source channel of each destination channel."""
    return _elementwise("gather_" + SUFFIX[dtype], n, (src, dst, channels, hw, n))


def convert(src_dtype: str, src: int, dst: int, n: int) -> Launch:
    name = "f32_to_f16" if src_dtype == "fp32" else "f16_to_f32"
    return _elementwise(name, n, (src, dst, n))


def region(dtype: str, raw: int, anchors: int, boxes: int, scores: int, num: int, classes: int,
           h: int, wd: int) -> Launch:
    return _elementwise("region_" + SUFFIX[dtype], num * h * wd,
                        (raw, anchors, boxes, scores, num, classes, h, wd))


def preprocess(dtype: str, frame: int, out: int, frame_w: int, frame_h: int, net_w: int,
               net_h: int, new_w: int, new_h: int, left: int, top: int,
               resize: str = "opencv") -> Launch:
    """The letterbox kernel: OpenCV's resize, or darknet's (``resize="darknet"``, which takes
    darknet's float32 sampling scales (src - 1) / (dst - 1))."""
    grid = (_cdiv(net_w, 32), _cdiv(net_h, 8), 1)
    if resize == "darknet":
        scale = [float(np.float32(src - 1) / np.float32(dst - 1)) if dst > 1 else 0.0
                 for src, dst in ((frame_w, new_w), (frame_h, new_h))]
        return Launch("preprocess_darknet_" + SUFFIX[dtype], grid, (32, 8, 1), 0,
                      (frame, out, frame_w, frame_h, net_w, net_h, new_w, new_h, left, top,
                       scale[0], scale[1]))
    return Launch("preprocess_" + SUFFIX[dtype], grid, (32, 8, 1), 0,
                  (frame, out, frame_w, frame_h, net_w, net_h, new_w, new_h, left, top,
                   frame_w / new_w, frame_h / new_h))


# ---- plan ops -> launches --------------------------------------------------------------------

def conv_path(kind: str, op: Conv) -> str:
    """How a conv op runs: ``gemm`` (pointwise), ``dw3x3`` (depthwise / grouped-sum 3x3,
    stride 1 or 2, pad 1), ``im2col_gemm`` (regular) or ``direct`` (anything else)."""
    if kind == "pointwise":
        return "gemm"
    if kind in ("depthwise", "grouped_sum") and op.size == 3 and op.pad == 1 \
            and op.stride in (1, 2):
        return "dw3x3"
    if kind == "regular":
        return "im2col_gemm"
    return "direct"


def im2col_elems(plan, op: Op) -> int:
    """Scratch elements the op needs for its unfolded input (0 unless ``im2col_gemm``)."""
    if not isinstance(op, Conv) or conv_path(plan.conv_kind(op), op) != "im2col_gemm":
        return 0
    cin = plan.buffers[op.src][0]
    _, ho, wo = plan.buffers[op.dst]
    return cin * op.size ** 2 * ho * wo


def gather_key(op: Gather) -> str:
    """The name under which the engine keeps a gather op's int32 channel indices with the
    weights (``tensor_addr``); keyed by the destination buffer, which one op alone writes."""
    return f"#gather{op.dst}.channels"


class _Where(NamedTuple):
    """What an op's launches need besides the op: the plan, the dtype, device addresses."""
    plan: object
    dtype: str
    addr: Callable[[int], int]
    tensor_addr: Callable[[str], int]
    scratch: int


def op_launches(plan, op: Op, dtype: str, addr: Callable[[int], int],
                tensor_addr: Callable[[str], int], scratch: int = 0) -> List[Launch]:
    """The launches executing plan op ``op``. ``addr(buffer)`` and ``tensor_addr(name)``
    give device addresses (a gather's channel indices under ``gather_key(op)``); ``scratch``
    holds ``im2col_elems`` elements for regular convs."""
    return handler(_LAUNCHES, op)(op, _Where(plan, dtype, addr, tensor_addr, scratch))


def _conv_launches(op: Conv, at: _Where) -> List[Launch]:
    plan, dtype = at.plan, at.dtype
    cin, h, w = plan.buffers[op.src]
    cout, ho, wo = plan.buffers[op.dst]
    k, s, p, g, act = op.size, op.stride, op.pad, op.groups, op.act
    x, y = at.addr(op.src), at.addr(op.dst)
    wt, b = at.tensor_addr(op.weight), at.tensor_addr(op.bias)
    kind = plan.conv_kind(op)
    path = conv_path(kind, op)
    if path == "gemm":
        return [gemm(dtype, wt, x, b, y, cout, ho * wo, cin, act)]
    if path == "dw3x3":
        gs = kind == "grouped_sum"
        mult = cin // cout if gs else cout // cin
        return [dw3x3(dtype, x, wt, b, y, cout if gs else cin, h, w, ho, wo, s, mult, gs, act)]
    if path == "im2col_gemm":
        return [im2col(dtype, x, at.scratch, cin, h, w, ho, wo, k, s, p),
                gemm(dtype, wt, at.scratch, b, y, cout, ho * wo, cin * k * k, act)]
    return [conv_direct(dtype, x, wt, b, y, cin, h, w, cout, ho, wo, k, s, p, g, act)]


def _maxpool_launches(op: MaxPool, at: _Where) -> List[Launch]:
    cin, h, w = at.plan.buffers[op.src]
    _, ho, wo = at.plan.buffers[op.dst]
    return [maxpool(at.dtype, at.addr(op.src), at.addr(op.dst), cin, h, w, ho, wo, op.size,
                    op.stride, op.pad_before)]


def _reorg_launches(op: Reorg, at: _Where) -> List[Launch]:
    cin, h, w = at.plan.buffers[op.src]
    return [reorg(at.dtype, at.addr(op.src), at.addr(op.dst), cin, h, w, op.stride)]


def _gather_launches(op: Gather, at: _Where) -> List[Launch]:
    _, h, w = at.plan.buffers[op.src]
    cout, ho, wo = at.plan.buffers[op.dst]
    return [gather(at.dtype, at.addr(op.src), at.addr(op.dst), at.tensor_addr(gather_key(op)),
                   h * w, cout * ho * wo)]


def _concat_launches(op: Concat, at: _Where) -> List[Launch]:
    """One copy per source, into its slice of the destination."""
    out, offset = [], 0
    for s in op.srcs:
        c, sh, sw = at.plan.buffers[s]
        n = c * sh * sw
        out.append(copy(at.dtype, at.addr(s), at.addr(op.dst) + offset * ITEMSIZE[at.dtype], n))
        offset += n
    return out


_LAUNCHES: Dict[type, Callable[[Op, _Where], List[Launch]]] = {
    Conv: _conv_launches, MaxPool: _maxpool_launches, Reorg: _reorg_launches,
    Gather: _gather_launches, Concat: _concat_launches}


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise UserError(f"unknown engine dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return dtype


def kernel_names(names: Optional[Sequence[str]] = None) -> List[str]:
    return sorted(KERNELS if names is None else names)
