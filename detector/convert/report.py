"""The conversion report: per layer T, order, errors, parameters and FLOPs before/after; the
network's FLOPs, measured CPU latency and (when the calibration dataset has a ``val`` split)
mAP before/after (``measure``). JSON plus a printed table.

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

With calibration footage the report has ``agreement``: ``detector compare``'s figures of the
converted model against the original on the held-out part of the footage
(``detector.eval.compare``); after a distillation, ``distill`` (epochs, run directory, the
agreement before it and the best one reached).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ..io.atomic import atomic_write_json
from ..models.params import param_shapes
from ..models.spec import ModelSpec
from .decouple import LayerPlan, layer_params
from .options import ConvertOptions


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


def build_report(options: ConvertOptions, size: int, spec_before: ModelSpec,
                 spec_after: ModelSpec, rows: List[dict], calibration: Optional[dict],
                 seconds: Dict[str, float]) -> dict:
    """The report without the measurements (``latency`` and ``map`` are None until taken)."""
    return {"source": options.weights, "cfg": options.cfg, "out": options.out,
            "method": options.method, "selection": options.selection, "order": options.order,
            "allocate": options.allocate, "img_size": size, "model_before": spec_before.name,
            "model_after": spec_after.name, "layers": rows,
            "network": network_summary(rows, spec_before, spec_after),
            "calibration": calibration, "latency": None, "map": None, "seconds": seconds}


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
        split = f" ({cal['split']})" if cal.get("split") else ""
        lines.append(f"calibration: {cal['images']} images from {cal['data']}{split}, "
                     f"{cal['fit_images']} fit / {cal['eval_images']} measured; network output "
                     f"error {_fmt_num(cal.get('output_err'))}")
    lines += _agreement_lines(report)
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


def _agreement_lines(report: dict) -> List[str]:
    """The agreement with the original on the held-out footage, before and after a
    distillation."""
    lines = []
    d = report.get("distill")
    if d:
        lines.append(f"distillation: {d['epochs']} epochs ({d['run']}); held-out agreement "
                     f"{_fmt_num((d.get('before') or {}).get('agreement'))} before, best "
                     f"{_fmt_num(d.get('best_agreement'))}")
    ag = report.get("agreement")
    if ag:
        lines.append(f"agreement with the original on {ag['frames']} held-out frames "
                     f"(mAP@0.5 vs its boxes >= {ag['conf']:g}): {_fmt_num(ag['agreement'])}, "
                     f"mean IoU {_fmt_num(ag['mean_iou'])} ({ag['reference_boxes']} boxes)")
    return lines


def write_report(report: dict, path: str) -> None:
    atomic_write_json(path, report)
