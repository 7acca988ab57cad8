"""What the report measures on the model before and after conversion: the agreement of the
converted model with the original on the held-out calibration footage
(``detector.eval.compare``), CPU latency (the engine's runner for a backend, as
``detector.load`` builds it) and mAP on the ``val`` split of a calibration dataset YAML (the
eval package, in this process).
"""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Dict, List

import numpy as np

from ..engine.model_file import LoadedModel
from ..engine.plan import lower
from ..engine.runners import make_runner
from ..errors import UserError
from ..data.footage import Footage
from ..eval.compare import agreement, torch_detections
from ..eval.evaluate import evaluate_model
from ..models.spec import ModelSpec
from .calib import MAP_SPLIT, map_dataset

LATENCY_BACKEND = "ort"


def measure_latency(spec: ModelSpec, state: Dict[str, np.ndarray], names: List[str], size: int,
                    runs: int = 5, backend: str = LATENCY_BACKEND) -> float:
    """Median ms of ``runs`` forward passes (after one warm-up) on the CPU with the runner
    ``detector.load`` builds for ``backend``."""
    options = {}
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "ort":                 # keep one-off graphs out of the user's cache
            options["cache_dir"] = tmp
        runner = make_runner(backend, spec, state, lambda: lower(spec, state, size, names),
                             "cpu", **options)
        try:
            blob = np.random.default_rng(0).random((1, spec.channels, size, size), np.float32)
            runner(blob)
            times = []
            for _ in range(max(1, runs)):
                t = time.perf_counter()
                runner(blob)
                times.append((time.perf_counter() - t) * 1000.0)
        finally:
            runner.close()
    return float(statistics.median(times))


def latency_before_after(before: LoadedModel, after: LoadedModel, size: int, runs: int) -> dict:
    """The report's ``latency`` entry: median CPU ms of both models at ``size`` pixels."""
    ms = [measure_latency(m.spec, m.state, m.names, size, runs) for m in (before, after)]
    return {"backend": LATENCY_BACKEND, "device": "cpu", "img_size": size, "runs": runs,
            "before_ms": ms[0], "after_ms": ms[1]}


def map_before_after(before: LoadedModel, after: LoadedModel, calib, size: int,
                     progress: bool = True) -> dict:
    """The report's ``map`` entry: the metrics (``detector eval --json``'s format) of both
    models on the ``val`` split of the dataset YAML among the calibration footage ``calib``,
    or ``{"skipped": reason}``."""
    data = map_dataset(calib)
    if data is None:
        return {"skipped": f"no dataset YAML with a {MAP_SPLIT} split in the calibration "
                           "footage"}
    try:
        metrics = [evaluate_model(m, data, MAP_SPLIT, img_size=size, progress=progress).to_json()
                   for m in (before, after)]
    except UserError as e:
        return {"skipped": f"evaluation failed: {e}"}
    return {"split": MAP_SPLIT, "before": metrics[0], "after": metrics[1]}


def held_out_agreement(before: LoadedModel, after: LoadedModel, held: Footage, size: int,
                       progress: bool = True) -> dict:
    """The report's ``agreement`` entry: ``detector compare``'s figures of the converted
    model (B) against the original (A) on the held-out footage, both run by torch in fp32
    at ``size`` pixels."""
    import torch
    from ..models.yolov2 import YOLOv2, load_state
    found = []
    for m in (before, after):
        spec = m.spec.replace(size=size)
        spec.names = list(m.names)
        net = load_state(YOLOv2(spec, pointwise="conv"), m.state)
        with torch.inference_mode():
            found.append(torch_detections(net, spec, held, size, progress=progress))
    res = agreement(found[0], found[1], list(before.names))
    return dict(res.to_json(), footage=held.describe())
