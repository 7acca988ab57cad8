"""The Python API: ``detector.load(...)`` -> ``Detector``; ``det(frame_bgr)`` -> detections.

A Detector is the per-frame path in three stages, exposed separately so the stream pipeline
can time and thread them: ``preprocess`` (letterbox) -> ``forward`` (backend) ->
``postprocess`` (decode + NMS + letterbox inverse).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .detection import Detection
from .errors import UserError
from .models.spec import (VOC_NAMES, ModelSpec, check_input_size, check_model_size, is_zoo_name,
                          load_spec)
from .postprocess import postprocess
from .preprocess import Letterbox, Preprocessor


@dataclass
class LoadedModel:
    """What a weights argument resolves to: a spec with unfolded weights, or a lowered plan."""
    spec: ModelSpec
    state: Optional[Dict[str, np.ndarray]]
    names: List[str]
    source: str
    plan: Optional[object] = None          # engine.plan.Plan for lowered plan files


def read_names(path: str) -> List[str]:
    """Class names file: one name per line (darknet's .names)."""
    if not os.path.isfile(path):
        raise UserError(f"--names {path}: no such file")
    with open(path, encoding="utf-8", errors="replace") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise UserError(f"--names {path}: no class names in the file")
    return names


def read_model(weights: str, cfg: Optional[str] = None, names=None,
               seed: int = 0) -> LoadedModel:
    """Resolve ``weights`` (+ ``cfg``) to a LoadedModel. ``names`` is a list or a file path."""
    from .models.params import init_params
    if isinstance(names, str):
        names = read_names(names)
    if not isinstance(weights, str) or not weights:
        raise UserError("--weights: expected a file path or a zoo model name")
    if is_zoo_name(weights) or weights.endswith((".yaml", ".yml")):
        spec = load_spec(weights)
        if cfg:
            raise UserError(f"--cfg is for darknet .weights files, not the model {weights}")
        state = init_params(spec, seed)
        return LoadedModel(spec, state, _names(spec, names, weights), weights)
    if weights.endswith(".weights") or cfg:
        from .io.darknet_cfg import spec_from_cfg
        from .io.darknet_weights import read_weights
        if not cfg:
            raise UserError(f"{weights}: darknet weights need --cfg (the network's .cfg file)")
        if not os.path.isfile(weights):
            raise UserError(f"{weights}: no such file")
        spec = spec_from_cfg(cfg)
        _, state = read_weights(weights, spec)
        if names is None and spec.classes == len(VOC_NAMES):
            names = VOC_NAMES
        return LoadedModel(spec, state, _names(spec, names, weights), weights)
    if not os.path.exists(weights):
        hint = "" if os.sep in weights or "." in weights else \
            " (not a zoo model either; zoo: " + ", ".join(_zoo()) + ")"
        raise UserError(f"{weights}: no such file{hint}")
    if weights.endswith((".pt", ".pth")):
        raise UserError(f"{weights}: training state, not a deployable checkpoint; pass the "
                        f".safetensors written beside it (e.g. best.safetensors)")
    from .io.checkpoint import read_metadata
    from .engine.plan import PLAN_KEY, load_plan
    meta = read_metadata(weights)
    if PLAN_KEY in meta:
        plan = load_plan(weights)
        from .models.spec import spec_from_dict
        spec = spec_from_dict(plan.spec, f"{weights} (embedded spec)")
        return LoadedModel(spec, None, _names(spec, names or plan.names, weights), weights, plan)
    from .io.checkpoint import load_checkpoint
    spec, state, ck_names, _ = load_checkpoint(weights)
    return LoadedModel(spec, state, _names(spec, names or ck_names, weights), weights)


def _zoo():
    from .models.spec import zoo_names
    return zoo_names()


def _names(spec: ModelSpec, names, source: str) -> List[str]:
    if names is None:
        return spec.class_names()
    names = list(names)
    if len(names) != spec.classes:
        raise UserError(f"{len(names)} class names for {source}, which has {spec.classes} classes")
    return names


class Detector:
    """Callable detector: ``det(frame_bgr) -> list[Detection]`` (boxes in frame pixels)."""

    def __init__(self, model: LoadedModel, backend: str, runner, img_size: int,
                 conf: float = 0.25, nms_iou: float = 0.45):
        self.model = model
        self.spec = model.spec
        self.names = model.names
        self.backend = backend
        self.runner = runner
        self.img_size = img_size
        self.conf = conf
        self.nms_iou = nms_iou
        self.anchors = list(model.spec.region.anchors)
        self.classes = model.spec.classes
        # The cuda backend letterboxes on the GPU (only the frame's bytes are uploaded);
        # every other backend letterboxes here into one reused buffer.
        gpu_pre = getattr(runner, "preprocess_frame", None) if backend == "cuda" else None
        self._preprocess = gpu_pre or Preprocessor(img_size)

    @property
    def precision(self) -> str:
        """The network's arithmetic: ``fp32``, ``bf16`` or ``int8``."""
        return getattr(self.runner, "precision", "fp32")

    def preprocess(self, frame: np.ndarray):
        """BGR uint8 frame -> (network input, Letterbox). The input buffer is reused."""
        return self._preprocess(frame)

    def forward(self, blob: np.ndarray) -> np.ndarray:
        """Blob -> raw region output [1, A*(5+C), S/32, S/32] (float32 numpy)."""
        return self.runner(blob)

    def postprocess(self, raw: np.ndarray, lb: Letterbox) -> List[Detection]:
        return postprocess(raw, lb, self.anchors, self.classes, self.names, self.conf,
                           self.nms_iou)

    def __call__(self, frame: np.ndarray) -> List[Detection]:
        blob, lb = self.preprocess(frame)
        return self.postprocess(self.forward(blob), lb)

    def __repr__(self) -> str:
        return (f"Detector({self.spec.name}, backend={self.backend}, "
                f"precision={self.precision}, img_size={self.img_size}, classes={self.classes})")


def check_thresholds(conf: float, nms_iou: float) -> None:
    if not (isinstance(conf, (int, float)) and 0.0 <= conf < 1.0):
        raise UserError(f"--conf {conf!r} is invalid: must be in [0, 1)")
    if not (isinstance(nms_iou, (int, float)) and 0.0 < nms_iou <= 1.0):
        raise UserError(f"--nms-iou {nms_iou!r} is invalid: must be in (0, 1] (1 disables NMS)")


def load(weights, cfg: Optional[str] = None, names=None, backend: Optional[str] = None,
         device: Optional[str] = None, img_size: Optional[int] = None, conf: float = 0.25,
         nms_iou: float = 0.45, **backend_options) -> Detector:
    """Build a Detector.

    ``weights``: ``.safetensors`` checkpoint (spec and names embedded), a lowered plan file,
    darknet ``.weights`` with ``cfg=``, or a zoo name / spec YAML (random weights, seeded).
    ``backend``: torch | ort | cuda | emu (default: the fastest available; on a CPU with
    native bfloat16, ORT float32 or torch bf16, whichever is faster for this model here,
    engine/cpu_choice.py). ``backend_options`` go to the runner,
    e.g. ``precision`` (torch: fp32 | bf16; ort: fp32 | int8), ``threads`` (ort).
    """
    from .engine.backends import default_backend, make_runner
    from .engine.plan import lower
    check_thresholds(conf, nms_iou)
    model = read_model(weights, cfg, names)
    if model.plan is not None and img_size and img_size != model.plan.size:
        raise UserError(f"{weights}: plan is lowered for {model.plan.size} px; "
                        f"--img-size {img_size} needs the checkpoint it came from")
    size = check_input_size(img_size if img_size is not None else
                            (model.plan.size if model.plan is not None else model.spec.size))
    check_model_size(model.spec, size, weights if isinstance(weights, str) else None)

    def plan_fn():
        return model.plan if model.plan is not None else lower(model.spec, model.state, size,
                                                               model.names)

    runner = None
    if backend is None:
        precision = backend_options.get("precision")
        if precision in ("bf16", "int8"):
            backend = "torch" if precision == "bf16" else "ort"
        elif backend_options or device not in (None, "cpu"):
            backend = default_backend(device)
        else:                      # measured once per machine: ORT fp32 or torch bf16
            from .engine.cpu_choice import choose_cpu_runner
            backend, runner = choose_cpu_runner(plan_fn())
    if runner is None:
        runner = make_runner(backend, model.spec, model.state, plan_fn, device,
                             **backend_options)
    return Detector(model, backend, runner, size, conf, nms_iou)
