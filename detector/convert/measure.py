"""What the report measures on the model before and after conversion: CPU latency (the
engine's runner for a backend, as ``detector.load`` builds it) and mAP on the calibration
dataset's ``val`` split (the eval package, in this process).
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
from ..eval.evaluate import evaluate_model
from ..models.spec import ModelSpec
from .calib import has_split

LATENCY_BACKEND = "ort"
MAP_SPLIT = "val"


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


def map_before_after(before: LoadedModel, after: LoadedModel, data: str, size: int,
                     progress: bool = True) -> dict:
    """The report's ``map`` entry: the metrics (``detector eval --json``'s format) of both
    models on the ``val`` split of the dataset YAML ``data``, or ``{"skipped": reason}``."""
    if not has_split(data, MAP_SPLIT):
        return {"skipped": f"{data} has no {MAP_SPLIT} split"}
    try:
        metrics = [evaluate_model(m, data, MAP_SPLIT, img_size=size, progress=progress).to_json()
                   for m in (before, after)]
    except UserError as e:
        return {"skipped": f"evaluation failed: {e}"}
    return {"split": MAP_SPLIT, "before": metrics[0], "after": metrics[1]}
