"""``convert``: regular-conv weights -> FastDSC weights (ND, optionally refined by DD) + report.

    from detector.convert import ConvertOptions, convert
    res = convert(ConvertOptions("yolov2-voc.weights", "dd", cfg="yolov2-voc.cfg", energy=0.9,
                                 calib="data/voc.yaml", out="yolov2-voc-dd.safetensors",
                                 report="r.json"))
    res.spec, res.state, res.report

The output is an ordinary checkpoint: the spec (with ``fastdsc`` layers: ``mid_bn: false``,
``mid_act: linear``, the original BN/activation after the block), class names and input size
in the metadata, plus ``convert`` metadata recording what was done.

The steps: read the model, plan and decouple every convertible layer (``decouple``), measure
or refit on calibration images (``refine``), assemble the converted spec and state, save it,
then report (``report``) with the latency and mAP measured before and after (``measure``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..engine.model_file import LoadedModel, read_model
from ..errors import UserError
from ..io.checkpoint import save_checkpoint
from ..models.checks import check_input_size
from ..models.spec import ModelSpec
from .calib import load_calibration
from .decouple import (LayerPlan, LayerWeights, converted_spec, converted_state, decouple,
                       plan_layers)
from .measure import latency_before_after, map_before_after
from .options import ConvertOptions
from .refine import LayerStats, RefineOptions, refine
from .report import build_report, format_table, layer_rows, write_report

Seconds = Dict[str, float]


@dataclass
class ConvertResult:
    spec: ModelSpec
    state: Dict[str, np.ndarray]
    names: List[str]
    report: dict
    out: Optional[str] = None

    @property
    def table(self) -> str:
        return format_table(self.report)


@contextmanager
def _timed(seconds: Seconds, step: str) -> Iterator[None]:
    """Record the seconds the block takes as ``seconds[step]``."""
    t = time.perf_counter()
    yield
    seconds[step] = time.perf_counter() - t


def convert(options: ConvertOptions) -> ConvertResult:
    """Convert the regular KxK convs of ``options.weights`` into decoupled FastDSC blocks
    (see :class:`ConvertOptions`); saves ``options.out`` and ``options.report`` when given."""
    options.check()
    seconds: Seconds = {}
    t0 = time.perf_counter()
    with _timed(seconds, "load"):
        model, size = _read(options)
    with _timed(seconds, "decouple"):
        plans, lweights = _decouple(options, model, size)
    stats: Dict[int, LayerStats] = {}
    calibration = None
    if options.calib:
        stats, calibration = _calibrate(options, model, size, plans, lweights, seconds)
    converted = _assemble(options, model, plans, lweights)
    if options.out:
        with _timed(seconds, "save"):
            _save(options, model, converted, plans)
    seconds["convert_total"] = time.perf_counter() - t0
    report = build_report(options, size, model.spec, converted.spec,
                          layer_rows(plans, stats, model.spec, converted.spec), calibration,
                          seconds)
    if options.latency_runs:
        with _timed(seconds, "latency"):
            report["latency"] = latency_before_after(model, converted, size,
                                                     options.latency_runs)
    if options.map_eval and options.calib:
        with _timed(seconds, "map"):
            report["map"] = map_before_after(model, converted, options.calib, size,
                                             options.progress)
    if options.report:
        write_report(report, options.report)
    return ConvertResult(converted.spec, converted.state, model.names, report, options.out)


def _read(options: ConvertOptions) -> Tuple[LoadedModel, int]:
    """The model to convert (with its unfolded weights) and the input size to work at."""
    model = read_model(options.weights, options.cfg, options.names)
    if model.state is None:
        raise UserError(f"{options.weights}: a lowered plan has BN folded in; convert the "
                        "checkpoint it came from")
    size = check_input_size(options.img_size if options.img_size is not None
                            else model.spec.size)
    return model, size


def _decouple(options: ConvertOptions, model: LoadedModel, size: int
              ) -> Tuple[List[LayerPlan], Dict[int, LayerWeights]]:
    """ND: the plan of every layer and the decoupled weights of those it converts."""
    plans, factors = plan_layers(model.spec, model.state, options.terms, options.energy,
                                 options.order, size, bn_weighted=options.bn_weighted,
                                 keep_first=options.keep_first, allocate=options.allocate)
    return plans, decouple(model.spec, model.state, plans, factors,
                           bn_weighted=options.bn_weighted)


def _calibrate(options: ConvertOptions, model: LoadedModel, size: int, plans: List[LayerPlan],
               lweights: Dict[int, LayerWeights], seconds: Seconds
               ) -> Tuple[Dict[int, LayerStats], dict]:
    """DD's refit (method dd) or the errors only (nd) on the calibration images: per-layer
    stats and the report's ``calibration`` entry. ``lweights`` are refitted in place."""
    with _timed(seconds, "calib_load"):
        images, split = load_calibration(options.calib, options.calib_images, size,
                                         options.calib_split, options.seed)
    fit = options.method == "dd"
    refine_options = RefineOptions(alpha=float(options.alpha), batch=options.batch,
                                   seed=options.seed, progress=options.progress,
                                   gsvd=options.gsvd, als=options.als)
    with _timed(seconds, "refine" if fit else "measure"):
        stats, summary = refine(model.spec, model.state, plans, lweights, images, fit=fit,
                                options=refine_options)
    return stats, dict(summary, data=options.calib, split=split)


def _assemble(options: ConvertOptions, model: LoadedModel, plans: List[LayerPlan],
              lweights: Dict[int, LayerWeights]) -> LoadedModel:
    """The converted model: its spec (named ``<model>-<method>``, the class names of the
    source) and state."""
    for p in plans:                       # DD may have moved terms between input channels
        lw = lweights.get(p.index)
        if lw is not None and lw.counts is not None:
            p.counts = [int(t) for t in lw.counts]
    spec = converted_spec(model.spec, plans, name=f"{model.spec.name}-{options.method}")
    spec.names = list(model.names)          # the checkpoint carries the class names
    state = converted_state(model.spec, model.state, spec, lweights)
    return LoadedModel(spec, state, model.names, options.out or f"{options.weights} (converted)")


def _save(options: ConvertOptions, model: LoadedModel, converted: LoadedModel,
          plans: List[LayerPlan]) -> None:
    """Write the converted checkpoint with ``convert`` metadata recording what was done."""
    meta = {"source": options.weights, "method": options.method,
            "selection": options.selection, "order": options.order,
            "allocate": options.allocate,
            "layers": [p.index for p in plans if p.action == "convert"],
            "calib": options.calib}
    save_checkpoint(options.out, converted.spec, converted.state, model.names,
                    extra={"convert": meta})
