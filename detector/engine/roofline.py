"""Roofline model of a plan on a GPU (default: Jetson TX2): per-op FLOPs and DRAM bytes as the
kernels execute them, and the predicted time ``max(flops / peak, bytes / bandwidth)``.

Bytes count what each kernel must move at least once: its inputs, weights and outputs in the
engine's dtype, plus the unfolded matrix a regular convolution writes and reads back
(im2col + GEMM); a gather reads each source channel it selects once (its small index array
is not counted); concats whose sources live inside the destination move nothing. Caches are
assumed perfect and launch overheads are ignored, so the prediction is a lower bound ("on
paper"); ``KernelEngine.profile`` measures the real per-op times with CUDA events.

    python -m detector.engine.roofline [--size 416] [--models yolov2-voc ...]
"""
from __future__ import annotations

import argparse
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from .launch import ITEMSIZE, conv_path
from .plan import Plan
from .plan_ops import Concat, Conv, Gather, MaxPool, Op, Reorg, handler


class Device(NamedTuple):
    name: str
    fp32_flops: float      # FLOP/s
    fp16_flops: float
    bandwidth: float       # bytes/s


TX2 = Device("Jetson TX2", 665e9, 1.33e12, 59.7e9)


class OpCost(NamedTuple):
    index: int
    name: str
    path: str
    flops: int
    bytes: int
    ms: float
    bound: str             # "compute" or "memory"


def op_bytes(plan: Plan, op: Op, dtype: str, aliased: Sequence[int] = ()) -> int:
    """Minimum DRAM traffic of one op as the kernels run it."""
    return handler(_BYTES, op)(plan, op, aliased) * ITEMSIZE[dtype]


def _values(plan: Plan, buf: int) -> int:
    c, h, w = plan.buffers[buf]
    return c * h * w


# ---- values moved per op type (times the item size: bytes) -----------------------------------

def _conv_values(plan: Plan, op: Conv, aliased: Sequence[int]) -> int:
    weights = plan.tensors[op.weight].size + plan.tensors[op.bias].size
    total = _values(plan, op.src) + _values(plan, op.dst) + weights
    if conv_path(plan.conv_kind(op), op) == "im2col_gemm":
        _, ho, wo = plan.buffers[op.dst]
        cin = plan.buffers[op.src][0]
        total += 2 * cin * op.size ** 2 * ho * wo      # col written, then read
    return total


def _copy_values(plan: Plan, op: Op, aliased: Sequence[int]) -> int:
    """maxpool and reorg: the input read, the output written."""
    return _values(plan, op.src) + _values(plan, op.dst)


def _gather_values(plan: Plan, op: Gather, aliased: Sequence[int]) -> int:
    """Each source channel it reads once, the output written once."""
    _, h, w = plan.buffers[op.src]
    return len(set(op.channels)) * h * w + _values(plan, op.dst)


def _concat_values(plan: Plan, op: Concat, aliased: Sequence[int]) -> int:
    """Sources copied into the destination (those placed inside it move nothing)."""
    return 2 * sum(_values(plan, s) for s in op.srcs if s not in aliased)


_BYTES: Dict[type, Callable[[Plan, Op, Sequence[int]], int]] = {
    Conv: _conv_values, MaxPool: _copy_values, Reorg: _copy_values, Gather: _gather_values,
    Concat: _concat_values}


def predict(plan: Plan, dtype: str = "fp32", device: Device = TX2) -> List[OpCost]:
    from .kernel_engine import concat_aliases, op_path
    aliased = list(concat_aliases(plan))
    peak = device.fp16_flops if dtype == "fp16" else device.fp32_flops
    out = []
    for i, op in enumerate(plan.ops):
        flops, nbytes = plan.flops(op), op_bytes(plan, op, dtype, aliased)
        tc, tm = flops / peak, nbytes / device.bandwidth
        out.append(OpCost(i, op.name, op_path(plan, op), flops, nbytes,
                          1e3 * max(tc, tm), "compute" if tc > tm else "memory"))
    return out


def frame_ms(costs: Sequence[OpCost]) -> float:
    return sum(c.ms for c in costs)


def zoo_plan(name: str, size: int = 416) -> Plan:
    """A zoo model lowered with random weights (costs do not depend on the values)."""
    from ..models.params import init_params
    from ..models.spec_yaml import load_spec
    from .plan import lower
    spec = load_spec(name)
    return lower(spec, init_params(spec), size)


def report(plan: Plan, dtype: str = "fp32", device: Device = TX2, per_op: bool = True) -> str:
    costs = predict(plan, dtype, device)
    lines = []
    if per_op:
        lines += ["| # | op | path | MFLOP | MB | ms | bound |", "|---|---|---|---:|---:|---:|---|"]
        lines += [f"| {c.index} | {c.name} | {c.path} | {c.flops / 1e6:.1f} | {c.bytes / 1e6:.2f} | "
                  f"{c.ms:.3f} | {c.bound} |" for c in costs]
    total_f, total_b = sum(c.flops for c in costs), sum(c.bytes for c in costs)
    lines.append(f"\n{dtype}: {total_f / 1e9:.2f} GFLOP, {total_b / 1e6:.1f} MB, predicted "
                 f"{frame_ms(costs):.2f} ms/frame on {device.name}")
    return "\n".join(lines)


def summary_table(models: Sequence[str], size: int = 416, device: Device = TX2) -> str:
    lines = [f"| model ({size}x{size}) | GFLOP | fp32 MB | fp32 ms | fp16 MB | fp16 ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for m in models:
        plan = zoo_plan(m, size)
        c32, c16 = predict(plan, "fp32", device), predict(plan, "fp16", device)
        lines.append(f"| {m} | {plan.total_flops() / 1e9:.2f} | {sum(c.bytes for c in c32) / 1e6:.0f} | "
                     f"{frame_ms(c32):.1f} | {sum(c.bytes for c in c16) / 1e6:.0f} | {frame_ms(c16):.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..models.spec_yaml import zoo_names
    ap = argparse.ArgumentParser(prog="python -m detector.engine.roofline",
                                 description="Predicted per-layer and per-frame time on a Jetson TX2")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--per-op", action="store_true", help="per-op tables too")
    args = ap.parse_args(argv)
    models = args.models or zoo_names()
    print(summary_table(models, args.size))
    if args.per_op:
        for m in models:
            plan = zoo_plan(m, args.size)
            for dt in ("fp32", "fp16"):
                print(f"\n### {m} {dt}\n")
                print(report(plan, dt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
