"""The Detector: one frame through preprocess -> network (-> device decode) -> decode + NMS,
on any runner.

The runner says where each stage runs (``engine.runner``): a runner that preprocesses on
the device gets the frame itself, one that decodes on the device gives boxes and scores
instead of the raw output, and the Detector does the rest on the host. Nothing is copied on
the way: a runner's reused output is consumed before the next call.

``build_detector`` turns a read model (``engine.model_file``) into a Detector on the chosen
runtime; ``detector.load`` is the public way to call it.
"""
from __future__ import annotations

from typing import List, Optional, Union

import numpy as np

from ..detection import Detection
from ..errors import ParamError
from ..models.checks import check_input_size, check_model_size
from ..postprocess import Decoded, decode_region, detections
from ..preprocess import Letterbox, Preprocessor
from .cpu_choice import choose_cpu_runner
from .model_file import LoadedModel
from .plan import lower
from .runner import Runner
from .runners import default_backend, make_runner

NetOutput = Union[np.ndarray, Decoded]    # what ``infer`` gives and ``postprocess`` takes


class Detector:
    """Callable detector: ``det(frame_bgr) -> list[Detection]`` (boxes in frame pixels).

    The per-frame path in stages that the stream pipeline times and threads separately:
    ``preprocess`` (letterbox) -> ``infer`` (the network, plus the region decode where the
    runner decodes on the device) -> ``postprocess`` (decode on the host where the runner
    does not, threshold, NMS, letterbox inverse). ``forward`` is the network alone (raw
    output)."""

    def __init__(self, model: LoadedModel, runner: Runner, img_size: int,
                 conf: float = 0.25, nms_iou: float = 0.45):
        self.model = model
        self.spec = model.spec
        self.names = model.names
        self.runner = runner
        self.img_size = img_size
        self.conf = conf
        self.nms_iou = nms_iou
        self.anchors = list(model.spec.region.anchors)
        self.classes = model.spec.classes
        # Letterboxed here into one reused buffer, unless the runner does it on its device.
        self._host_preprocess = None if runner.device_preprocess else Preprocessor(img_size)

    @property
    def backend(self) -> str:
        """The user-facing backend: torch, ort, cuda or emu."""
        return self.runner.backend

    @property
    def precision(self) -> str:
        """The network's arithmetic: ``fp32``, ``fp16``, ``bf16`` or ``int8``."""
        return self.runner.precision

    def preprocess(self, frame: np.ndarray):
        """BGR uint8 frame -> (network input, Letterbox). The input is reused by the next
        call (a buffer of the Detector's, or the runner's own input on its device)."""
        if self._host_preprocess is None:
            return self.runner.preprocess(frame)
        return self._host_preprocess(frame)

    def forward(self, blob) -> np.ndarray:
        """Network input -> raw region output [1, A*(5+C), S/32, S/32] (float32 numpy; the
        runner's own buffer where it says ``reuses_output``)."""
        return self.runner(blob)

    def infer(self, blob) -> NetOutput:
        """The network stage of a frame: the raw output, or, where the runner decodes on
        the device, its ``Decoded`` boxes and scores (computed right after the network, on
        this thread). Either may be the runner's own buffers (``runner.reuses_output``)."""
        if self.runner.device_decode:
            return Decoded(*self.runner.forward_decoded(blob))
        return self.runner(blob)

    def postprocess(self, out: NetOutput, lb: Letterbox) -> List[Detection]:
        """What ``infer`` gave (or any raw output) -> detections in frame pixels."""
        if not isinstance(out, Decoded):
            out = decode_region(out[0] if out.ndim == 4 else out, self.anchors, self.classes)
        return detections(out, lb, self.names, self.conf, self.nms_iou)

    def __call__(self, frame: np.ndarray) -> List[Detection]:
        blob, lb = self.preprocess(frame)
        return self.postprocess(self.infer(blob), lb)

    def __repr__(self) -> str:
        return (f"Detector({self.spec.name}, backend={self.backend}, "
                f"precision={self.precision}, img_size={self.img_size}, classes={self.classes})")


def check_thresholds(conf: float, nms_iou: float) -> None:
    if not (isinstance(conf, (int, float)) and 0.0 <= conf < 1.0):
        raise ParamError("conf", "must be in [0, 1)", value=conf)
    if not (isinstance(nms_iou, (int, float)) and 0.0 < nms_iou <= 1.0):
        raise ParamError("nms_iou", "must be in (0, 1] (1 disables NMS)", value=nms_iou)


def build_detector(model: LoadedModel, backend: Optional[str] = None,
                   device: Optional[str] = None, img_size: Optional[int] = None,
                   conf: float = 0.25, nms_iou: float = 0.45, **backend_options) -> Detector:
    """A Detector for a read model (``read_model``).

    ``backend``: torch | ort | cuda | emu (default: the fastest available; on a CPU with
    native bfloat16, ORT float32 or torch bf16, whichever is faster for this model here,
    engine/cpu_choice.py). ``backend_options`` go to the runner,
    e.g. ``precision`` (torch: fp32 | bf16; ort: fp32 | int8), ``threads`` (ort).
    """
    check_thresholds(conf, nms_iou)
    weights = model.source
    if model.plan is not None and img_size and img_size != model.plan.size:
        raise ParamError("img_size", f"{weights} is a plan lowered for {model.plan.size} px; "
                         "another size needs the checkpoint it came from", value=img_size)
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
            backend, runner = choose_cpu_runner(plan_fn())
    if runner is None:
        runner = make_runner(backend, model.spec, model.state, plan_fn, device,
                             **backend_options)
    return Detector(model, runner, size, conf, nms_iou)
