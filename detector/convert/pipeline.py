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
or refit on the fitted part of the calibration footage (``calib``, ``refine``), assemble the
converted spec and state, save it, optionally distil it against the original
(``detector.distill``), then report (``report``) with the agreement with the original on the
held-out part of the footage, the latency and mAP measured before and after (``measure``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from ..data.footage import Footage, concat, is_dataset_yaml
from ..distill import DistillOptions, distill
from ..engine.model_file import LoadedModel, read_model
from ..errors import UserError
from ..io.checkpoint import save_checkpoint
from ..models.checks import check_input_size
from ..models.spec import ModelSpec
from ..stream.footage import footage_texts
from .calib import calibration_footage, describe, letterboxed
from .decouple import (LayerPlan, LayerWeights, converted_spec, converted_state, decouple,
                       plan_layers)
from .measure import held_out_agreement, latency_before_after, map_before_after
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
    calibration = footage = None
    if options.calib:
        with _timed(seconds, "calib_load"):
            footage = calibration_footage(options.calib, options.calib_images,
                                          options.calib_split, options.seed, options.holdout)
        stats, calibration = _calibrate(options, model, size, plans, lweights, seconds,
                                        footage)
    converted = _assemble(options, model, plans, lweights)
    if options.out:
        with _timed(seconds, "save"):
            _save(options, model, converted, plans)
    distilled = None
    if options.distill_epochs:
        converted, distilled = _distill(options, model, converted, size, footage, seconds)
    seconds["convert_total"] = time.perf_counter() - t0
    report = build_report(options, size, model.spec, converted.spec,
                          layer_rows(plans, stats, model.spec, converted.spec), calibration,
                          seconds)
    if distilled is not None:
        report["distill"] = distilled
    _measure(options, model, converted, size, footage, report, seconds)
    if options.report:
        write_report(report, options.report)
    return ConvertResult(converted.spec, converted.state, model.names, report, options.out)


def _measure(options: ConvertOptions, model: LoadedModel, converted: LoadedModel, size: int,
             footage: Optional[Tuple[Footage, Footage]], report: dict, seconds: Seconds) -> None:
    """The report's measurements: agreement with the original on the held-out footage,
    latency and mAP before and after."""
    if footage is not None:
        with _timed(seconds, "agreement"):
            report["agreement"] = held_out_agreement(model, converted, footage[1], size,
                                                     options.progress)
    if options.latency_runs:
        with _timed(seconds, "latency"):
            report["latency"] = latency_before_after(model, converted, size,
                                                     options.latency_runs)
    if options.map_eval and options.calib:
        with _timed(seconds, "map"):
            report["map"] = map_before_after(model, converted, options.calib, size,
                                             options.progress)


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
               lweights: Dict[int, LayerWeights], seconds: Seconds,
               footage: Tuple[Footage, Footage]) -> Tuple[Dict[int, LayerStats], dict]:
    """DD's refit (method dd) on the fitted part of the footage, measured on the held-out
    part, or the errors only (nd, on all of it): per-layer stats and the report's
    ``calibration`` entry. ``lweights`` are refitted in place."""
    fit_part, held = footage
    with _timed(seconds, "letterbox"):
        images = letterboxed(concat([fit_part, held]), size, model.spec.resize)
    fit = options.method == "dd"
    refine_options = RefineOptions(alpha=float(options.alpha), batch=options.batch,
                                   seed=options.seed, progress=options.progress,
                                   gsvd=options.gsvd, als=options.als)
    n = len(fit_part)
    split = (np.arange(n), np.arange(n, len(images)))
    with _timed(seconds, "refine" if fit else "measure"):
        stats, summary = refine(model.spec, model.state, plans, lweights, images, fit=fit,
                                options=refine_options, split=split)
    return stats, dict(summary, data=describe(options.calib), split=_split_name(options),
                       footage=concat([fit_part, held]).describe())


def _split_name(options: ConvertOptions) -> Optional[str]:
    """The split the dataset YAMLs among the footage were read from (None without one)."""
    from ..data.dataset_yaml import load_dataset_yaml
    for text in footage_texts(options.calib):
        if is_dataset_yaml(text):
            splits = load_dataset_yaml(text).splits
            return options.calib_split or ("train" if "train" in splits else next(iter(splits)))
    return None


def _distill(options: ConvertOptions, model: LoadedModel, converted: LoadedModel, size: int,
             footage: Tuple[Footage, Footage], seconds: Seconds) -> Tuple[LoadedModel, dict]:
    """Distil the saved converted model (``out``) against the original on the fitted part
    of the footage; ``out`` becomes the best distilled model (by agreement on the held-out
    part). Returns it and the report's ``distill`` entry (with the agreement before)."""
    with _timed(seconds, "agreement_before_distill"):
        before = held_out_agreement(model, converted, footage[1], size, options.progress)
    opts = DistillOptions(out=options.out, teacher=options.weights, teacher_cfg=options.cfg,
                          student=options.out, data=footage_texts(options.calib),
                          epochs=options.distill_epochs, batch=options.distill_batch,
                          img_size=size, frames=options.calib_images, holdout=options.holdout,
                          split=options.calib_split, seed=options.seed)
    log = print if options.progress else (lambda *_: None)
    with _timed(seconds, "distill"):
        row = distill(opts, log, footage)
    done = read_model(options.out, None, converted.names)
    return done, {"epochs": options.distill_epochs, "batch": options.distill_batch,
                  "run": opts.run, "before": before,
                  "best_agreement": row.get("best_agreement"),
                  "last_agreement": row.get("agreement")}


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
