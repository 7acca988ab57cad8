"""Optional int8 graph for ONNX Runtime on the CPU: static quantization (QDQ, per-channel int8
weights, uint8 activations) calibrated on synthetic frames, built once and cached.

Opt-in only (``detector.load(..., backend="ort", precision="int8")``): the default stays fp32.
``detector bench --int8`` measures its speed and what it costs in accuracy (agreement of its
raw outputs and detections with the fp32 graph on frames it was not calibrated on).
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import List, Optional

import numpy as np

from ..host import cache_dir as user_cache_dir
from ..io.atomic import atomic_path
from ..preprocess import letterbox
from .frames import synthetic_frame
from .plan import Plan

QUANT_VERSION = 1
CALIB_FRAMES = 16
CALIB_SEED = 1000          # calibration frames use seeds from here; benchmarks use 0..


def calibration_blobs(plan: Plan, count: int = CALIB_FRAMES, seed: int = CALIB_SEED) -> List[np.ndarray]:
    """Letterboxed synthetic frames of several aspect ratios, as the detector feeds them."""
    sizes = [(640, 480), (1280, 720), (480, 640), (800, 600)]
    out = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        blob, _ = letterbox(synthetic_frame(w, h, seed + i), plan.size)
        out.append(blob.copy())
    return out


def quantized_model(plan: Plan, fp32_path: str, cache_dir: Optional[str] = None) -> str:
    """Path of the int8 version of the fp32 graph at ``fp32_path`` (built on first use)."""
    stem = os.path.splitext(os.path.basename(fp32_path))[0]
    path = os.path.join(cache_dir or user_cache_dir(), "onnx",
                        f"{stem}.int8v{QUANT_VERSION}.onnx")
    if os.path.isfile(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)    # its advice to pre-process: measured, no faster here
    try:
        _quantize(plan, fp32_path, path)
    finally:
        root.setLevel(level)
    return path


def _quantize(plan: Plan, fp32_path: str, path: str) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.blobs = iter(calibration_blobs(plan))

        def get_next(self):
            b = next(self.blobs, None)
            return None if b is None else {"images": b}

    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(
            prefix=".quant-", dir=os.path.dirname(path)) as work:
        # quantize_static writes side files beside its output: build in a private directory
        out = os.path.join(work, "model.onnx")
        quantize_static(fp32_path, out, Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"CalibTensorRangeSymmetric": False})
        os.replace(out, tmp)
