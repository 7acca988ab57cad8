#!/usr/bin/env python3
"""Roofline predictions of frame rates on a Jetson board, for docs/jetson.md.

For every op of the lowered plan (BN folded, as the ``cuda`` backend runs it) the time is
bounded below by ``max(flops / peak, bytes / bandwidth)``, where bytes are the op's input and
output activations plus its weights, each touched once (perfect on-chip reuse). The sum over
ops is a lower bound on the network time, so the frame rates printed here are upper bounds:
PREDICTIONS, not measurements. Measure on the board with ``detector bench``.

    python scripts/jetson_roofline.py                       # the TX2 table in docs/jetson.md
    python scripts/jetson_roofline.py --peak-fp32 1410 --peak-fp16 2820 --bandwidth 136.5

Needs numpy and the package (no torch, no GPU).
"""
from __future__ import annotations

import argparse
import sys
from typing import Dict, List, Optional

# Jetson TX2 (Pascal, 256 CUDA cores at 1.30 GHz in MAXN; 128-bit LPDDR4-1866).
TX2 = {"peak_fp32": 665e9, "peak_fp16": 1330e9, "bandwidth": 59.7e9}
MODELS = ("yolov2-voc", "yolov2-voc-fastdsc", "yolov2-tiny-voc", "yolov2-tiny-voc-fastdsc")


def op_bytes(plan, op, elem: int) -> int:
    """Bytes an op reads and writes at least once: activations in and out, weights, bias."""
    from detector.engine.plan_ops import Conv

    def size(buf: int) -> int:
        c, h, w = plan.buffers[buf]
        return c * h * w

    n = sum(size(s) for s in op.sources) + size(op.dst)
    if isinstance(op, Conv):
        n += plan.tensors[op.weight].size + plan.tensors[op.bias].size
    return n * elem


def predict(plan, peak: float, bandwidth: float, elem: int) -> Dict[str, float]:
    """Roofline lower bound on the time of one frame (batch 1) and what bounds it."""
    t = t_compute = t_memory = 0.0
    for op in plan.ops:
        tc = plan.flops(op) / peak
        tm = op_bytes(plan, op, elem) / bandwidth
        t += max(tc, tm)
        t_compute += tc
        t_memory += tm
    return {"seconds": t, "compute_s": t_compute, "memory_s": t_memory,
            "fps": 1.0 / t if t > 0 else float("inf")}


def model_plan(name: str, size: int):
    from detector.engine.plan import lower
    from detector.models.params import init_params
    from detector.models.spec_yaml import load_spec
    spec = load_spec(name)
    return lower(spec, init_params(spec, 0), size)


def rows(models=MODELS, size: int = 416, peak_fp32: float = TX2["peak_fp32"],
         peak_fp16: float = TX2["peak_fp16"], bandwidth: float = TX2["bandwidth"]) -> List[dict]:
    out = []
    for name in models:
        plan = model_plan(name, size)
        params = sum(v.size for v in plan.tensors.values())
        acts = sum(c * h * w for c, h, w in plan.buffers)
        fp32 = predict(plan, peak_fp32, bandwidth, 4)
        fp16 = predict(plan, peak_fp16, bandwidth, 2)
        out.append({"model": name, "size": size, "gflops": plan.total_flops() / 1e9,
                    "params_m": params / 1e6, "weights_mb_fp32": params * 4 / 1e6,
                    "activations_mb_fp32": acts * 4 / 1e6,
                    "fp32_ms": fp32["seconds"] * 1e3, "fp32_fps": fp32["fps"],
                    "fp16_ms": fp16["seconds"] * 1e3, "fp16_fps": fp16["fps"]})
    return out


def markdown(table: List[dict]) -> str:
    lines = ["| model | input | GFLOPs | params (M) | fp32 bound (ms) | fp32 FPS <= | "
             "fp16 bound (ms) | fp16 FPS <= |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        lines.append(f"| {r['model']} | {r['size']} | {r['gflops']:.2f} | {r['params_m']:.1f} | "
                     f"{r['fp32_ms']:.1f} | {r['fp32_fps']:.0f} | {r['fp16_ms']:.1f} | "
                     f"{r['fp16_fps']:.0f} |")
    return "\n".join(lines)


def memory_markdown(table: List[dict]) -> str:
    lines = ["| model | input | weights fp32 (MB) | activation buffers fp32 (MB) | total (MB) |",
             "| --- | --- | --- | --- | --- |"]
    for r in table:
        total = r["weights_mb_fp32"] + r["activations_mb_fp32"]
        lines.append(f"| {r['model']} | {r['size']} | {r['weights_mb_fp32']:.0f} | "
                     f"{r['activations_mb_fp32']:.0f} | {total:.0f} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--peak-fp32", type=float, default=TX2["peak_fp32"] / 1e9, help="GFLOP/s")
    p.add_argument("--peak-fp16", type=float, default=TX2["peak_fp16"] / 1e9, help="GFLOP/s")
    p.add_argument("--bandwidth", type=float, default=TX2["bandwidth"] / 1e9, help="GB/s")
    a = p.parse_args(argv)
    table = rows(a.models, a.img_size, a.peak_fp32 * 1e9, a.peak_fp16 * 1e9, a.bandwidth * 1e9)
    print(markdown(table))
    print()
    print(memory_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
