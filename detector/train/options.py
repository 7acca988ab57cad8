"""What a training run is asked to do: :class:`TrainOptions` and the checks of its values.

The command line builds the options (``detector train``); the training state saves them as a
plain dict, and ``resume`` continues a run with the options it was started with. Errors name
the field (:class:`detector.errors.ParamError`), e.g. ``jitter=0.5: must be in [0, 0.45]``.

The recipe fields (optimizer, lr, schedule, burn_in, ema, batch, multiscale, jitter, hsv,
mosaic, iou_thresh, anchors) default to None (``"auto"`` for optimizer and schedule): the
trainer fills them from the recipe it chooses for the run (train/recipe.py); a field that is
set wins. ``time`` (minutes) replaces ``epochs``: the run fits its length to that budget
(train/budget.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Dict, Optional

from ..errors import ParamError
from ..models.checks import check_input_size
from .schedule import POLICIES

AMP_MODES = ("auto", "on", "off")
MAX_JITTER = 0.45
MAX_MINUTES = 365 * 24 * 60


@dataclass
class TrainOptions:
    data: str
    out: str
    model: Optional[str] = None
    weights: Optional[str] = None
    cfg: Optional[str] = None
    epochs: Optional[int] = None
    time: Optional[float] = None          # minutes: a schedule fitted to end then, not epochs
    batch: Optional[int] = None           # None: the recipe's
    accumulate: int = 1
    img_size: Optional[int] = None
    multiscale: Optional[bool] = None     # None: the recipe's
    final_size: Optional[int] = None      # the last ``final_epochs`` epochs train at this size
    final_epochs: int = 0
    val_size: Optional[int] = None        # validation (and saved checkpoints') input size
    jitter: Optional[float] = None        # crop jitter (None: the recipe's, else the spec's)
    hsv: Optional[bool] = None            # hue/saturation/exposure distortion (the spec's)
    mosaic: Optional[float] = None        # probability of a four-image mosaic sample (0: none)
    iou_thresh: Optional[float] = None    # other anchors a truth overlaps by more also learn it
    lr: Optional[float] = None
    burn_in: Optional[float] = None       # fraction of the run; None: the recipe's or spec's
    device: Optional[str] = None
    workers: Optional[int] = None         # None: 0 on <= 2 cores, else up to 4 (device.py)
    seed: int = 0
    val_every: Optional[int] = None       # None: 1, or about 4 validations in a timed run
    save_every: int = 0                   # also save every N steps (0: only at epoch ends)
    max_val_images: Optional[int] = None
    clip_grad: float = 10.0               # max gradient norm (0: off); guards early steps
    anchors: Optional[str] = None         # "spec", or "auto": k-means on the training boxes
    optimizer: str = "auto"               # "sgd" (darknet's recipe), "adamw", "auto"
    schedule: str = "auto"                # "steps" (darknet's), "cosine", "auto"
    ema: Optional[float] = None           # decay of the weight average (train/ema.py); 0: off
    amp: str = "auto"                     # mixed precision: "auto", "on", "off" (amp_dtype)
    tensorboard: bool = True
    resume: bool = False
    extra: Dict[str, str] = field(default_factory=dict)


# Fields with a fixed set of values, and bounds of the numeric ones.
CHOICES = {"anchors": (None, "spec", "auto"), "optimizer": ("sgd", "adamw", "auto"),
           "schedule": POLICIES + ("auto",), "amp": AMP_MODES,
           "device": (None, "auto", "cpu", "cuda")}
AT_LEAST_ONE = ("accumulate", "val_every", "epochs", "max_val_images")   # None: default
NOT_NEGATIVE = ("final_epochs", "save_every", "clip_grad", "workers")
INPUT_SIZES = ("img_size", "final_size", "val_size")


def check_options(opts: TrainOptions) -> None:
    """Raise :class:`ParamError` naming the first field with a bad value."""
    if opts.jitter is not None and not 0.0 <= opts.jitter <= MAX_JITTER:
        raise ParamError("jitter", f"must be in [0, {MAX_JITTER}]", value=opts.jitter)
    if opts.mosaic is not None and not 0.0 <= opts.mosaic <= 1.0:
        raise ParamError("mosaic", "a probability, in [0, 1]", value=opts.mosaic)
    if opts.iou_thresh is not None and not 0.0 < opts.iou_thresh <= 1.0:
        raise ParamError("iou_thresh", "an IoU in (0, 1] (1: the best anchor only)",
                         value=opts.iou_thresh)
    if opts.final_epochs and not opts.final_size:
        raise ParamError("final_epochs", "needs final_size (the size those epochs train at)")
    if opts.ema is not None and not 0.0 <= opts.ema < 1.0:
        raise ParamError("ema", "the decay must be in [0, 1) (0: off; e.g. 0.998)", value=opts.ema)
    batch = opts.accumulate if opts.batch is None else opts.batch
    if batch < 1 or opts.accumulate < 1 or batch % opts.accumulate:
        raise ParamError("batch", f"must be a positive multiple of accumulate ({opts.accumulate})",
                         value=opts.batch)
    _check_time(opts)
    for name, allowed in CHOICES.items():
        if getattr(opts, name) not in allowed:
            raise ParamError(name, "allowed values: " + ", ".join(a for a in allowed if a),
                             value=getattr(opts, name))
    for name in AT_LEAST_ONE + NOT_NEGATIVE:
        v = getattr(opts, name)
        if v is not None and v < (1 if name in AT_LEAST_ONE else 0):
            raise ParamError(name, "must be at least 1" if name in AT_LEAST_ONE else
                             "must not be negative", value=v)
    for name in INPUT_SIZES:
        if getattr(opts, name) is not None:
            check_input_size(getattr(opts, name), name)
    if opts.lr is not None and not opts.lr > 0:
        raise ParamError("lr", "must be positive", value=opts.lr)
    if opts.burn_in is not None and not 0.0 <= opts.burn_in <= 1.0:
        raise ParamError("burn_in", "must be a fraction of the run in [0, 1]", value=opts.burn_in)


def _check_time(opts: TrainOptions) -> None:
    if opts.time is None:
        return
    if opts.epochs is not None:
        raise ParamError("time", "replaces epochs: give one of them", value=opts.time)
    if not 0.0 < opts.time <= MAX_MINUTES:
        raise ParamError("time", f"must be positive minutes, at most {MAX_MINUTES} (a year)",
                         value=opts.time)


def resumed_options(given: TrainOptions, saved: dict) -> TrainOptions:
    """The options a run continues with: those it was started with (``saved``, as the
    training state keeps them, the recipe it chose included), with this call's ``workers``
    and, when given, ``epochs`` (which turns a timed run into one of that many epochs)."""
    known = {f.name for f in fields(TrainOptions)}
    opts = TrainOptions(**{k: v for k, v in saved.items() if k in known})
    opts.resume, opts.workers = True, given.workers
    if "amp" not in saved:
        opts.amp = "off"          # a state from before mixed precision: it trained in fp32
    if saved.get("iou_thresh") is None:
        opts.iou_thresh = 1.0     # a state from before: each truth on its best anchor only
    if given.epochs:
        opts.epochs, opts.time = given.epochs, None
    return opts
