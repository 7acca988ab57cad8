"""The Detector: one frame through preprocess -> network -> decode + NMS, on any runner.

``build_detector`` turns a read model (``engine.model_file``) into a Detector on the chosen
runtime; ``detector.load`` is the public way to call it.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np

from ..detection import Detection
from ..errors import UserError
from ..models.spec import check_input_size, check_model_size
from ..postprocess import postprocess
from ..preprocess import Letterbox, Preprocessor
from .model_file import LoadedModel


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


def build_detector(model: LoadedModel, backend: Optional[str] = None,
                   device: Optional[str] = None, img_size: Optional[int] = None,
                   conf: float = 0.25, nms_iou: float = 0.45, **backend_options) -> Detector:
    """A Detector for a read model (``read_model``).

    ``backend``: torch | ort | cuda | emu (default: the fastest available; on a CPU with
    native bfloat16, ORT float32 or torch bf16, whichever is faster for this model here,
    engine/cpu_choice.py). ``backend_options`` go to the runner,
    e.g. ``precision`` (torch: fp32 | bf16; ort: fp32 | int8), ``threads`` (ort).
    """
    from .backends import default_backend, make_runner
    from .plan import lower
    check_thresholds(conf, nms_iou)
    weights = model.source
    if model.plan is not None and img_size and img_size != model.plan.size:
        raise UserError(f"{weights}: plan is lowered for {model.plan.size} px; "
                        f"--img-size {img_size} needs the checkpoint it came from")
    size = check_input_size(img_size if img_size is not None else
                            (model.plan.size if model.plan is not None else model.spec.size))
    check_model_size(model.spec, size, weights)

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
            from .cpu_choice import choose_cpu_runner
            backend, runner = choose_cpu_runner(plan_fn())
    if runner is None:
        runner = make_runner(backend, model.spec, model.state, plan_fn, device,
                             **backend_options)
    return Detector(model, backend, runner, size, conf, nms_iou)
