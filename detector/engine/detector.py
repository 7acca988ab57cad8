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

from typing import List, Optional, Sequence, Union

import numpy as np

from ..detection import Detection
from ..errors import ParamError, UserError
from ..models.checks import check_input_size, check_model_size
from ..postprocess import NMS_MODES, Decoded, decode_region, detections
from ..preprocess import RESIZES, Letterbox, Preprocessor
from .cpu_choice import choose_cpu_runner
from .model_file import LoadedModel
from .plan import lower
from .runner import Runner
from .runners import check_max_batch, default_backend, make_runner

NetOutput = Union[np.ndarray, Decoded]    # what ``infer`` gives and ``postprocess`` takes


class Detector:
    """Callable detector: ``det(frame_bgr) -> list[Detection]`` (boxes in frame pixels).

    The per-frame path in stages that the stream pipeline times and threads separately:
    ``preprocess`` (letterbox) -> ``infer`` (the network, plus the region decode where the
    runner decodes on the device) -> ``postprocess`` (decode on the host where the runner
    does not, threshold, NMS, letterbox inverse). ``forward`` is the network alone (raw
    output). Where the runner batches (``max_batch`` > 1), ``preprocess(frame, slot=i)``
    and ``infer_batch`` run several frames through the network in one call.

    Darknet's semantics where ours differ: ``resize`` (``opencv`` or ``darknet``; default:
    what the weights expect, ``spec.resize``), ``nms`` (``opencv``, or ``darknet``: its
    box mapping and NMS on unclipped boxes, ``detector.postprocess``). A WordTree model
    (YOLO9000) names one class per box by darknet's walk down the tree with threshold
    ``hier_thresh``, or, with ``tree_map``, scores the classes its region ``map`` lists
    (``names`` are then theirs)."""

    def __init__(self, model: LoadedModel, runner: Runner, img_size: int,
                 conf: float = 0.25, nms_iou: float = 0.45, resize: Optional[str] = None,
                 nms: str = "opencv", hier_thresh: float = 0.5, tree_map: bool = False):
        self.model = model
        self.spec = model.spec
        self.runner = runner
        self.img_size = img_size
        self.conf = conf
        self.nms_iou = nms_iou
        self.anchors = list(model.spec.region.anchors)
        self.classes = model.spec.classes
        # how frames are resized (default: as the weights expect) and boxes come out
        self.resize = resize or model.spec.resize
        self.nms, self.hier_thresh = nms, hier_thresh
        self.tree = model.spec.tree
        self.mapping = model.spec.region.map if tree_map else None
        self.names = model.names if self.mapping is None else \
            [model.names[m] for m in self.mapping]
        # Letterboxed here into one reused buffer, unless the runner does it on its device.
        self._host_preprocess = None if runner.device_preprocess else \
            Preprocessor(img_size, resize=self.resize)
        # a WordTree is decoded on the host (the device decode is the flat softmax)
        self._device_decode = runner.device_decode and self.tree is None
        self._batch_blob: Optional[np.ndarray] = None       # [max_batch, 3, S, S], on demand
        self._slots: List[Preprocessor] = []

    @property
    def backend(self) -> str:
        """The user-facing backend: torch, ort, cuda or emu."""
        return self.runner.backend

    @property
    def precision(self) -> str:
        """The network's arithmetic: ``fp32``, ``fp16``, ``bf16`` or ``int8``."""
        return self.runner.precision

    @property
    def max_batch(self) -> int:
        """The most frames one ``infer_batch`` call takes (the runner's)."""
        return self.runner.max_batch

    def preprocess(self, frame: np.ndarray, slot: Optional[int] = None):
        """BGR uint8 frame -> (network input, Letterbox). The input is reused by the next
        call (a buffer of the Detector's, or the runner's own input on its device). ``slot``:
        the frame's place in the next ``infer_batch`` call (its own reused input per slot)."""
        if self._host_preprocess is None:
            return self.runner.preprocess(frame, resize=self.resize) if slot is None else \
                self.runner.preprocess(frame, slot=slot, resize=self.resize)
        if slot is None:
            return self._host_preprocess(frame)
        return self._slot(slot)(frame)

    def new_preprocessor(self) -> Preprocessor:
        """A host letterbox of its own, the same as ``preprocess`` (for another thread; its
        blob is reused by its next call)."""
        return Preprocessor(self.img_size, resize=self.resize)

    def _slot(self, slot: int) -> Preprocessor:
        """The letterbox of batch slot ``slot``: into its row of the batch input."""
        if not 0 <= slot < self.max_batch:
            raise ValueError(f"slot {slot}: the runner takes {self.max_batch} frames a call")
        if self._batch_blob is None:
            self._batch_blob = np.empty((self.max_batch, 3, self.img_size, self.img_size),
                                        np.float32)
            self._slots = [Preprocessor(self.img_size, self._batch_blob[i:i + 1], self.resize)
                           for i in range(self.max_batch)]
        return self._slots[slot]

    def forward(self, blob) -> np.ndarray:
        """Network input -> raw region output [1, A*(5+C), S/32, S/32] (float32 numpy; the
        runner's own buffer where it says ``reuses_output``)."""
        return self.runner(blob)

    def infer(self, blob) -> NetOutput:
        """The network stage of a frame: the raw output, or, where the runner decodes on
        the device, its ``Decoded`` boxes and scores (computed right after the network, on
        this thread). Either may be the runner's own buffers (``runner.reuses_output``)."""
        if self._device_decode:
            return Decoded(*self.runner.forward_decoded(blob))
        return self.runner(blob)

    def infer_batch(self, inputs: Sequence) -> List[NetOutput]:
        """The network stage of several frames in one call: ``inputs[i]`` from
        ``preprocess(frame, slot=i)`` (or any blob [1, 3, S, S]); at most ``max_batch`` of
        them. One output per frame, as ``infer`` gives it (views of the runner's buffers
        where it reuses them)."""
        n = len(inputs)
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"{n} frames: the runner takes 1 to {self.max_batch} a call")
        runner = self.runner
        if runner.device_preprocess:
            batch = list(inputs)
        else:
            batch = self._stacked(inputs)
        if self._device_decode:
            boxes, scores = runner.forward_decoded(batch)
            return [Decoded(boxes[i], scores[i]) for i in range(n)]
        raw = runner(batch)
        return [raw[i:i + 1] for i in range(n)]

    def _stacked(self, blobs: Sequence[np.ndarray]) -> np.ndarray:
        """The blobs as one [n, 3, S, S] array: the batch input itself when they are its
        rows in order (``preprocess(frame, slot=i)``), else copied into it."""
        n = len(blobs)
        if self._batch_blob is None:
            self._slot(0)
        batch = self._batch_blob[:n]
        for i, b in enumerate(blobs):
            row = batch[i:i + 1]
            if not (isinstance(b, np.ndarray) and b.ctypes.data == row.ctypes.data
                    and b.shape == row.shape):
                np.copyto(row, b)
        return batch

    def postprocess(self, out: NetOutput, lb: Letterbox) -> List[Detection]:
        """What ``infer`` gave (or any raw output) -> detections in frame pixels."""
        if not isinstance(out, Decoded):
            out = decode_region(out[0] if out.ndim == 4 else out, self.anchors, self.classes,
                                self.tree, self.hier_thresh, self.mapping)
        return detections(out, lb, self.names, self.conf, self.nms_iou, self.nms)

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


def check_darknet_options(model: LoadedModel, resize: Optional[str], nms: str,
                          hier_thresh: float, tree_map: bool) -> None:
    """ParamError for a resize or NMS mode, tree threshold or tree map the model cannot use;
    UserError for a classifier (it has no boxes)."""
    if model.spec.region is None:
        raise UserError(f"{model.source}: a classifier (no [region]): its weights can seed a "
                        "detector's backbone (detector train), it does not detect")
    if resize is not None and resize not in RESIZES:
        raise ParamError("resize", "allowed values: " + ", ".join(RESIZES), value=resize)
    if nms not in NMS_MODES:
        raise ParamError("nms", "allowed values: " + ", ".join(NMS_MODES), value=nms)
    if not (isinstance(hier_thresh, (int, float)) and 0.0 <= hier_thresh < 1.0):
        raise ParamError("hier_thresh", "must be in [0, 1)", value=hier_thresh)
    if tree_map and model.spec.region.map is None:
        raise ParamError("tree_map", f"{model.source} has no map of classes into its tree "
                         "(a region map=)", value=tree_map)


def build_detector(model: LoadedModel, backend: Optional[str] = None,
                   device: Optional[str] = None, img_size: Optional[int] = None,
                   conf: float = 0.25, nms_iou: float = 0.45, max_batch: int = 1,
                   resize: Optional[str] = None, nms: str = "opencv", hier_thresh: float = 0.5,
                   tree_map: bool = False, **backend_options) -> Detector:
    """A Detector for a read model (``read_model``).

    ``backend``: torch | ort | cuda | emu (default: the fastest available; on a CPU with
    native bfloat16, ORT float32 or torch bf16, whichever is faster for this model here,
    engine/cpu_choice.py). ``backend_options`` go to the runner,
    e.g. ``precision`` (torch: fp32 | bf16; ort: fp32 | int8), ``threads`` (ort).
    ``max_batch``: the most frames one ``infer_batch`` call will take (runtimes that do not
    batch take one; ``Detector.max_batch`` says). ``resize`` (default: the model's
    ``spec.resize``), ``nms``, ``hier_thresh`` and ``tree_map``: see ``Detector``.
    """
    check_thresholds(conf, nms_iou)
    check_darknet_options(model, resize, nms, hier_thresh, tree_map)
    check_max_batch(max_batch)
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
            backend, runner = choose_cpu_runner(plan_fn(), max_batch=max_batch)
    if runner is None:
        runner = make_runner(backend, model.spec, model.state, plan_fn, device,
                             max_batch=max_batch, **backend_options)
    return Detector(model, runner, size, conf, nms_iou, resize, nms, hier_thresh, tree_map)
