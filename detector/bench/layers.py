"""Per-layer times (``detector bench --layers``): ORT's profiler per plan op in both pointwise
forms, and the kernel engine's per-op times for the ``cuda`` cases."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..engine.ort_session import ort_model_path
from ..engine.plan_ops import Conv
from ..engine.tune import LAYOUT, pointwise_ops, profile_ops, tuned_forms
from ..host import physical_cores


def ort_layers(plan, cache_dir: Optional[str], threads: Optional[int],
               runs: int = 10) -> List[dict]:
    """Per plan op: kind, output shape, GFLOPs, ORT kernel ms (fastest of ``runs``) with 1x1
    Conv and with GEMM pointwise forms (ORT profiler; the layout reorders a GEMM causes are
    charged to it), the form ``ort`` uses, achieved GFLOP/s; a last ``(layout)`` row holds
    what belongs to no op."""
    threads = threads or physical_cores()
    chosen = tuned_forms(plan, cache_dir, threads) or "conv"
    pw = set(pointwise_ops(plan))
    # the fastest of ``runs`` runs per op: on a busy machine the median is mostly the noise
    conv = profile_ops(ort_model_path(plan, "conv", cache_dir), plan, threads, runs, stat=np.min)
    mm = profile_ops(ort_model_path(plan, "matmul", cache_dir), plan, threads, runs,
                     charge_layout_to=pw, stat=np.min)
    rows = []
    for op in plan.ops:
        name = op.name
        form = None
        if name in pw:
            form = chosen.get(name, "conv") if isinstance(chosen, dict) else chosen
        gf = plan.flops(op) / 1e9
        ms = conv.get(name) if form != "matmul" else mm.get(name)
        rows.append({"op": name, "kind": op_kind(plan, op), "out": list(plan.buffers[op.dst]),
                     "gflops": gf, "conv_ms": conv.get(name),
                     "gemm_ms": mm.get(name) if name in pw else None, "form": form,
                     "gflops_per_s": gf / (ms / 1e3) if ms and gf else None})
    rows.append({"op": LAYOUT, "kind": "layout", "out": None, "gflops": 0.0,
                 "conv_ms": conv.get(LAYOUT), "gemm_ms": mm.get(LAYOUT), "form": None,
                 "gflops_per_s": None})
    return rows


def kernel_layers(engine, repeat: int = 10) -> List[dict]:
    """Per plan op of a kernel engine that has run (its last input is profiled): kind,
    kernel path, ms (mean of ``repeat`` runs: CUDA events on a GPU, wall time on the
    emulator), GFLOPs and achieved GFLOP/s."""
    plan = engine.plan
    rows = []
    for t in engine.profile(repeat):
        op = plan.ops[t.index]
        gf = plan.flops(op) / 1e9
        rows.append({"op": t.name, "kind": op_kind(plan, op), "path": t.path, "ms": t.ms,
                     "gflops": gf, "gflops_per_s": gf / (t.ms / 1e3) if t.ms and gf else None})
    return rows


def op_kind(plan, op) -> str:
    """``regular``, ``depthwise``, ``pointwise``, ... for a conv; the op type otherwise."""
    return plan.conv_kind(op) if isinstance(op, Conv) else op.KIND
