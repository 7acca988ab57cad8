"""The conversion report: per layer T, order, errors, parameters and FLOPs before/after; the
network's FLOPs, measured CPU latency and (when the calibration dataset has a ``val`` split and
``detector eval`` exists) mAP before/after. JSON plus a printed table.

Per-layer fields (``layers[]``): ``index``, ``kind``, ``action`` (convert | keep), ``reason``
(why kept), ``cin``, ``cout``, ``size``, ``stride``, ``in_hw``, ``out_hw``, ``order``
(dw_pw | pw_dw), ``terms`` (T; with per-channel allocation the mean terms per input channel),
``mid`` (middle channels), ``counts`` (terms of each input channel, per-channel allocation
only, after DD's reallocation), ``energy`` (singular-value energy kept), ``weight_err``
(sqrt(1 - energy)), ``candidates`` (T/energy/FLOPs of each order considered), ``err``,
``err_net``, ``err_nd`` (see ``refine``; null without calibration data), ``samples``,
``unknowns`` (of the data fit), ``als`` (rounds of DD's alternating refit run on the layer),
``params_before/after`` (all tensors of the layer, BN
included), ``flops_before/after`` (2 x multiply-adds at ``img_size``).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import numpy as np

from ..models.spec import ModelSpec
from .decouple import LayerPlan, layer_params


def layer_rows(plans: List[LayerPlan], stats: Dict[int, object], spec_before: ModelSpec,
               spec_after: ModelSpec) -> List[dict]:
    rows = []
    for p in plans:
        row = p.to_dict()
        st = stats.get(p.index)
        for key in ("err", "err_net", "err_nd", "samples", "unknowns", "als"):
            row[key] = getattr(st, key, None) if st is not None else None
        row["params_before"] = layer_params(spec_before, p.index)
        row["params_after"] = layer_params(spec_after, p.index)
        rows.append(row)
    return rows


def network_summary(rows: List[dict], spec_before: ModelSpec, spec_after: ModelSpec) -> dict:
    from ..models.params import param_shapes
    conv = [r for r in rows if r["action"] == "convert"]
    fb = sum(r["flops_before"] for r in rows)
    fa = sum(r["flops_after"] for r in rows)
    cb = sum(r["flops_before"] for r in conv)
    ca = sum(r["flops_after"] for r in conv)
    pb = sum(int(np.prod(s)) for s in param_shapes(spec_before).values())
    pa = sum(int(np.prod(s)) for s in param_shapes(spec_after).values())
    return {"flops_before": fb, "flops_after": fa, "flops_ratio": fb / fa if fa else None,
            "converted_layers": len(conv), "converted_flops_before": cb,
            "converted_flops_after": ca, "converted_flops_ratio": cb / ca if ca else None,
            "params_before": pb, "params_after": pa}


def measure_latency(spec: ModelSpec, state: Dict[str, np.ndarray], names: List[str], size: int,
                    runs: int = 5, backend: str = "ort") -> float:
    """Median ms of ``runs`` forward passes (after one warm-up) on the CPU with the same
    runner ``detector.load`` builds for ``backend``."""
    from ..engine.backends import make_runner
    from ..engine.plan import lower
    options = {}
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "ort":                 # keep one-off graphs out of the user's cache
            options["cache_dir"] = tmp
        runner = make_runner(backend, spec, state, lambda: lower(spec, state, size, names),
                             "cpu", **options)
        blob = np.random.default_rng(0).random((1, spec.channels, size, size), np.float32)
        runner(blob)
        times = []
        for _ in range(max(1, runs)):
            t = time.perf_counter()
            runner(blob)
            times.append((time.perf_counter() - t) * 1000.0)
        del runner
    return float(statistics.median(times))


def eval_available() -> bool:
    """True once the project has ``detector eval`` (the lead's evaluation command)."""
    try:
        from .. import cli
    except ImportError:
        return False
    return hasattr(cli, "cmd_eval")


def evaluate_map(weights: str, data: str, split: str = "val", cfg: Optional[str] = None,
                 img_size: Optional[int] = None, timeout: float = 3600.0) -> dict:
    """mAP of a model through the ``detector eval`` contract (DESIGN.md: ``--json`` gives
    ``voc07_map``, ``voc_map``, ...). Returns the JSON, or ``{"skipped": reason}``."""
    if not eval_available():
        return {"skipped": "detector eval is not available in this build"}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "eval.json")
        cmd = [sys.executable, "-m", "detector", "eval", "--weights", weights, "--data", data,
               "--split", split, "--json", out]
        if cfg:
            cmd += ["--cfg", cfg]
        if img_size:
            cmd += ["--img-size", str(img_size)]
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = pkg_root + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        if proc.returncode != 0 or not os.path.isfile(out):
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"skipped": f"detector eval failed: {tail[:200]}"}
        with open(out, encoding="utf-8") as f:
            return json.load(f)


def _fmt_flops(v: Optional[float]) -> str:
    return "-" if v is None else f"{v / 1e9:.2f}G" if v >= 1e8 else f"{v / 1e6:.1f}M"


def _fmt_num(v: Optional[float], spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _fmt_terms(row: dict) -> str:
    """T, or for per-channel terms their mean and range (``4.0 (0-9)``)."""
    counts = row.get("counts")
    if counts:
        return f"{sum(counts) / len(counts):.1f} ({min(counts)}-{max(counts)})"
    return str(row["terms"])


def format_table(report: dict) -> str:
    """The report as a plain-text table (one row per conv layer, then totals)."""
    head = (f"{'layer':>5} {'action':<8} {'cin':>5} {'cout':>5} {'order':<6} {'T':>9} "
            f"{'energy':>7} {'w_err':>7} {'err':>7} {'err_nd':>7} {'err_net':>7} "
            f"{'params':>17} {'FLOPs':>17}")
    lines = [f"convert {report['source']} -> {report.get('out') or '(not saved)'} "
             f"[{report['method']}, {report['selection']}]", head, "-" * len(head)]
    for r in report["layers"]:
        if r["action"] == "convert":
            lines.append(
                f"{r['index']:>5} {'convert':<8} {r['cin']:>5} {r['cout']:>5} {r['order']:<6} "
                f"{_fmt_terms(r):>9} {r['energy']:>7.4f} {r['weight_err']:>7.4f} "
                f"{_fmt_num(r['err']):>7} {_fmt_num(r['err_nd']):>7} {_fmt_num(r['err_net']):>7} "
                f"{r['params_before']:>8}>{r['params_after']:<8} "
                f"{_fmt_flops(r['flops_before']):>8}>{_fmt_flops(r['flops_after']):<8}")
        else:
            lines.append(f"{r['index']:>5} {'keep':<8} {r['cin']:>5} {r['cout']:>5} "
                         f"{'':<6} {'':>9} {r['reason']}")
    n = report["network"]
    lines.append("-" * len(head))
    lines.append(f"network FLOPs {_fmt_flops(n['flops_before'])} -> {_fmt_flops(n['flops_after'])}"
                 f" (x{n['flops_ratio']:.2f}); converted layers "
                 f"{_fmt_flops(n['converted_flops_before'])} -> "
                 f"{_fmt_flops(n['converted_flops_after'])} (x{n['converted_flops_ratio']:.2f});"
                 f" params {n['params_before'] / 1e6:.2f}M -> {n['params_after'] / 1e6:.2f}M")
    lat = report.get("latency") or {}
    if lat.get("before_ms") is not None:
        lines.append(f"CPU latency ({lat['backend']}, {lat['img_size']} px, median of "
                     f"{lat['runs']}): {lat['before_ms']:.1f} ms -> {lat['after_ms']:.1f} ms")
    cal = report.get("calibration")
    if cal:
        lines.append(f"calibration: {cal['images']} images from {cal['data']} ({cal['split']}), "
                     f"{cal['fit_images']} fit / {cal['eval_images']} measured; network output "
                     f"error {_fmt_num(cal.get('output_err'))}")
    m = report.get("map") or {}
    if "before" in m:
        lines.append(f"mAP ({m['split']}, VOC07): {_fmt_num(m['before'].get('voc07_map'))} -> "
                     f"{_fmt_num(m['after'].get('voc07_map'))}")
    elif m.get("skipped"):
        lines.append(f"mAP: skipped ({m['skipped']})")
    t = report.get("seconds", {})
    if t:
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)


def write_report(report: dict, path: str) -> None:
    from ..io.atomic import atomic_write_bytes
    atomic_write_bytes(path, (json.dumps(report, indent=2) + "\n").encode())
