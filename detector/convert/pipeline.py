"""``convert``: regular-conv weights -> FastDSC weights (ND, optionally refined by DD) + report.

    from detector.convert import convert
    res = convert("yolov2-voc.weights", "dd", cfg="yolov2-voc.cfg", energy=0.9,
                  calib="data/voc.yaml", out="yolov2-voc-dd.safetensors", report="r.json")
    res.spec, res.state, res.report

The output is an ordinary checkpoint: the spec (with ``fastdsc`` layers: ``mid_bn: false``,
``mid_act: linear``, the original BN/activation after the block), class names and input size
in the metadata, plus ``convert`` metadata recording what was done.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..errors import UserError
from ..models.spec import ModelSpec

METHODS = ("nd", "dd")


@dataclass
class ConvertResult:
    spec: ModelSpec
    state: Dict[str, np.ndarray]
    names: List[str]
    report: dict
    out: Optional[str] = None

    @property
    def table(self) -> str:
        from .report import format_table
        return format_table(self.report)


def convert(weights: str, method: str = "nd", cfg: Optional[str] = None, names=None,
            terms: Optional[int] = None, energy: Optional[float] = None, order: str = "auto",
            calib: Optional[str] = None, calib_split: Optional[str] = None,
            calib_images: int = 200, img_size: Optional[int] = None, out: Optional[str] = None,
            report: Optional[str] = None, latency_runs: int = 5, map_eval: bool = True,
            alpha: float = 1e-2, batch: int = 8, seed: int = 0, progress: bool = True,
            keep_first: bool = True, bn_weighted: bool = True,
            gsvd: bool = True, als: int = 2, allocate: str = "channel") -> ConvertResult:
    """Convert the regular KxK convs of ``weights`` into decoupled FastDSC blocks.

    ``method``: ``nd`` (Network Decoupling, no data) or ``dd`` (ND, then Depth-wise
    Decomposition on ``calib`` images). ``terms`` (fixed T) or ``energy`` (default 0.95) picks
    T per layer; ``allocate``: ``channel`` (default) shares a dw_pw layer's terms among its
    input channels by singular value, ``layer`` gives each the same T (see ``decouple``);
    ``order``: auto | dw_pw | pw_dw. With ``calib`` and ``nd`` the errors are
    measured but nothing is fitted. ``latency_runs=0`` skips the latency measurement;
    ``als``: rounds of DD's alternating refit (0: off; see ``refine``). ``map_eval``
    evaluates mAP before/after when ``calib`` has a ``val`` split and
    ``detector eval`` exists (needs ``out``).
    """
    from ..engine.model_file import read_model
    from ..models.spec import check_input_size
    from .decouple import converted_spec, converted_state, decouple, plan_layers
    from .report import (evaluate_map, layer_rows, measure_latency, network_summary,
                         write_report)
    if method not in METHODS:
        raise UserError(f"--method {method!r} is invalid: allowed values: nd, dd")
    if method == "dd" and not calib:
        raise UserError("--method dd needs --calib DATA.yaml (calibration images)")
    for name, v in (("--latency-runs", latency_runs), ("--batch", batch)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name[2] == "l" else 1):
            raise UserError(f"{name} {v!r} is invalid")
    if isinstance(als, bool) or not isinstance(als, int) or als < 0:
        raise UserError(f"--als {als!r} is invalid: must be an integer >= 0")
    if not (isinstance(alpha, (int, float)) and alpha >= 0):
        raise UserError(f"--alpha {alpha!r} is invalid: must be >= 0")
    seconds: Dict[str, float] = {}
    t0 = time.perf_counter()
    model = read_model(weights, cfg, names)
    if model.state is None:
        raise UserError(f"{weights}: a lowered plan has BN folded in; convert the checkpoint "
                        "it came from")
    spec, state = model.spec, model.state
    size = check_input_size(img_size if img_size is not None else spec.size)
    seconds["load"] = time.perf_counter() - t0

    t = time.perf_counter()
    plans, factors = plan_layers(spec, state, terms, energy, order, size,
                                 bn_weighted=bn_weighted, keep_first=keep_first,
                                 allocate=allocate)
    lweights = decouple(spec, state, plans, factors, bn_weighted=bn_weighted)
    del factors
    seconds["decouple"] = time.perf_counter() - t

    stats: dict = {}
    calib_info = None
    if calib:
        from .calib import load_calibration
        from .refine import RefineOptions, refine
        t = time.perf_counter()
        images, split = load_calibration(calib, calib_images, size, calib_split, seed)
        seconds["calib_load"] = time.perf_counter() - t
        t = time.perf_counter()
        opts = RefineOptions(alpha=float(alpha), batch=batch, seed=seed, progress=progress,
                             gsvd=gsvd, als=als)
        stats, summary = refine(spec, state, plans, lweights, images, fit=method == "dd",
                                options=opts)
        seconds["refine" if method == "dd" else "measure"] = time.perf_counter() - t
        del images
        calib_info = dict(summary, data=calib, split=split)

    for p in plans:                       # DD may have moved terms between input channels
        lw = lweights.get(p.index)
        if lw is not None and lw.counts is not None:
            p.counts = [int(t) for t in lw.counts]
    new_spec = converted_spec(spec, plans, name=f"{spec.name}-{method}")
    new_spec.names = list(model.names)          # the checkpoint carries the class names
    new_state = converted_state(spec, state, new_spec, lweights)
    converted = [p.index for p in plans if p.action == "convert"]
    selection = ("terms=" + (",".join(map(str, terms)) if isinstance(terms, (list, tuple))
                             else str(terms))) if terms is not None else \
        f"energy={energy if energy is not None else 0.95}"
    meta = {"source": weights, "method": method, "selection": selection, "order": order,
            "allocate": allocate, "layers": converted, "calib": calib}
    if out:
        from ..io.checkpoint import save_checkpoint
        t = time.perf_counter()
        save_checkpoint(out, new_spec, new_state, model.names, extra={"convert": meta})
        seconds["save"] = time.perf_counter() - t
    seconds["convert_total"] = time.perf_counter() - t0

    rows = layer_rows(plans, stats, spec, new_spec)
    rep = {"source": weights, "cfg": cfg, "out": out, "method": method, "selection": selection,
           "order": order, "allocate": allocate, "img_size": size,
           "model_before": spec.name,
           "model_after": new_spec.name, "layers": rows,
           "network": network_summary(rows, spec, new_spec), "calibration": calib_info,
           "latency": None, "map": None, "seconds": seconds}
    if latency_runs:
        t = time.perf_counter()
        before = measure_latency(spec, state, model.names, size, latency_runs)
        after = measure_latency(new_spec, new_state, model.names, size, latency_runs)
        rep["latency"] = {"backend": "ort", "device": "cpu", "img_size": size,
                          "runs": latency_runs, "before_ms": before, "after_ms": after}
        seconds["latency"] = time.perf_counter() - t
    if map_eval and calib:
        from .calib import has_split
        if not has_split(calib, "val"):
            rep["map"] = {"skipped": f"{calib} has no val split"}
        elif not out:
            rep["map"] = {"skipped": "no --out checkpoint to evaluate"}
        else:
            t = time.perf_counter()
            mb = evaluate_map(weights, calib, "val", cfg, size)
            ma = evaluate_map(out, calib, "val", None, size) if "skipped" not in mb else mb
            rep["map"] = {"skipped": mb["skipped"]} if "skipped" in mb else \
                {"split": "val", "before": mb, "after": ma}
            seconds["map"] = time.perf_counter() - t
    if report:
        write_report(rep, report)
    return ConvertResult(new_spec, new_state, model.names, rep, out)
