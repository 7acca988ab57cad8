"""Which recipe a run trains with, chosen from the run itself (``optimizer="auto"``,
``schedule="auto"`` and every other recipe field left unset).

Two recipes:

- **fast**: AdamW, a cosine schedule after a short burn-in, a weight average, small batches
  at a fixed input size, half of darknet's crop jitter and no colour distortion, and anchors
  fitted to the training boxes (k-means) unless the starting weights bring a detection head
  trained with their own anchors. Each truth trains every anchor of its cell whose shape
  overlaps its own by more than :data:`FAST_IOU_THRESH` (darknet's [yolo] ``iou_thresh``),
  not only its best one (but a pretrained head keeps its own best-anchor assignment): more
  predictions learn from each image. It learns the most per minute on short runs and from
  scratch (the synthetic benchmark, docs/performance.md "Training"). A run that passes over
  its images :data:`MOSAIC_EPOCHS` times or more trains on four-image mosaics (but its last
  tenth of epochs): they help where the same images come back many times, and cost where a
  run sees its images a few times only (mosaics measured both ways: docs/history/
  2026-12-03-training-recipe.md).
- **darknet**: darknet's own: SGD with momentum, burn-in and steps, the spec's learning rate,
  batch, crop jitter, colour distortion, multi-scale input and anchors; each truth on its
  best anchor (the region layer); no weight average. Made for fine-tuning pretrained weights
  over tens of thousands of iterations.

The rule (:func:`choose_recipe`): a run that starts from pretrained weights (darknet
backbone or whole model, a converted model, a checkpoint) and is long, at least
:data:`LONG_RUN` iterations of :data:`NOMINAL_BATCH` images (ultralytics' ``optimizer=auto``
threshold, counted the same way), keeps darknet's recipe; every other run gets the fast one.
The device sets the fast recipe's batch (8 on a CPU, 16 on a GPU). A run of a fixed number
of epochs too short for :data:`MIN_UPDATES` updates at that batch gets smaller batches (down
to :data:`MIN_BATCH`): a detector from scratch learns more per image from more updates. A
timed run (``--time``) keeps the device's batch: each update has a fixed cost (the optimizer
and the weight average over every parameter), so in a fixed time smaller batches train on
fewer images (at 320 px on the 2-core CPU, batch 4 ran 19.5 images/s where batch 8 runs
56-60). Each batch comes with its learning rate and weight average.

Every field of a recipe can be set explicitly (a field of :class:`TrainOptions`); a set field
wins over the recipe (:func:`apply_recipe`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import List, Optional, Tuple

NOMINAL_BATCH = 64          # iterations are counted in batches of this many images
LONG_RUN = 10000            # iterations from which a fine-tune keeps darknet's recipe
STARTS = ("random", "backbone", "detector")   # what the starting weights cover

# The value that leaves a field to the recipe, where it is not None.
UNSET = {"optimizer": "auto", "schedule": "auto"}
# The recipe fields, in the order the recipe line lists them.
FIELDS = ("optimizer", "lr", "schedule", "burn_in", "ema", "batch", "multiscale", "jitter",
          "hsv", "mosaic", "iou_thresh", "anchors")


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str                  # "sgd" or "adamw"
    lr: Optional[float]             # None: the spec's learning rate
    schedule: str                   # "steps" or "cosine"
    burn_in: Optional[float]        # fraction of the run; None: the spec's
    ema: float                      # weight average decay; 0: none
    batch: Optional[int]            # None: the spec's batch
    multiscale: bool
    jitter: Optional[float]         # None: the spec's crop jitter
    hsv: bool                       # colour distortion (the spec's)
    mosaic: float                   # probability of a four-image mosaic sample
    iou_thresh: float               # a truth also teaches the other anchors of its cell whose
                                    # shape overlaps its own by more (1: the best anchor only)
    anchors: str                    # "spec" or "auto" (k-means on the training boxes)


@dataclass(frozen=True)
class RunFacts:
    """What the rule looks at: how long the run is, what it starts from, where it runs."""
    iterations: Optional[int]       # images the run trains on / NOMINAL_BATCH; None: unknown
                                    # (a timed run before it is measured: not a long one)
    start: str                      # one of STARTS
    device: str                     # "cpu" or "cuda"
    timed: bool = False             # the run's length is a time budget (--time)
    epochs: Optional[float] = None  # passes over the training images; None: unknown


# The fast recipe's batch per device, and the learning rate and weight average of each batch
# (measured on the synthetic set: batch 16 and 8 on its 4000-image benchmark, 8 and 4 on 30
# epochs of 800 images; docs/history/2026-12-03-training-recipe.md).
FAST_BATCH = {"cpu": 8, "cuda": 16}
FAST_PAIRS = {16: dict(lr=0.003, ema=0.998), 8: dict(lr=0.002, ema=0.999),
              4: dict(lr=0.004, ema=0.9995)}
MIN_BATCH = 4
MIN_UPDATES = 4000          # updates a fast run gets from smaller batches where it can
MOSAIC_EPOCHS = 20          # passes over the images from which a fast run uses mosaics

# The fast recipe's iou_thresh: about two anchors learn each truth (0.5 and 0.213 measured,
# docs/performance.md "Training").
FAST_IOU_THRESH = 0.5

DARKNET = Recipe(name="darknet", optimizer="sgd", lr=None, schedule="steps", burn_in=None,
                 ema=0.0, batch=None, multiscale=True, jitter=None, hsv=True, mosaic=0.0,
                 iou_thresh=1.0, anchors="spec")


def fast_batch(device: str, iterations: Optional[int], timed: bool = False) -> int:
    """The device's batch; for a run of fixed length, halved while it would make fewer than
    MIN_UPDATES updates (down to MIN_BATCH)."""
    batch = FAST_BATCH["cuda" if device == "cuda" else "cpu"]
    while not timed and iterations is not None and batch > MIN_BATCH and \
            iterations * NOMINAL_BATCH < MIN_UPDATES * batch:
        batch //= 2
    return batch


def fast_recipe(facts: RunFacts, anchors: str) -> Recipe:
    """The fast recipe for a run; ``anchors`` "spec" (a pretrained detection head) also
    keeps the head's assignment of each truth to its best anchor."""
    batch = fast_batch(facts.device, facts.iterations, facts.timed)
    many = facts.epochs is not None and facts.epochs >= MOSAIC_EPOCHS
    return Recipe(name="fast", optimizer="adamw", schedule="cosine", burn_in=0.02,
                  batch=batch, multiscale=False, jitter=0.1, hsv=False,
                  mosaic=1.0 if many else 0.0,
                  iou_thresh=1.0 if anchors == "spec" else FAST_IOU_THRESH, anchors=anchors,
                  **FAST_PAIRS[batch])


def choose_recipe(facts: RunFacts) -> Tuple[Recipe, str]:
    """(recipe, why) for a run: darknet's for a long run from pretrained weights, the fast
    one otherwise."""
    if facts.start not in STARTS:
        raise ValueError(f"start {facts.start!r}: one of {', '.join(STARTS)}")
    n = f"{facts.iterations} iterations of {NOMINAL_BATCH} images"
    if facts.start == "random":
        return (fast_recipe(facts, "auto"),
                f"{n} from random weights on {facts.device}: a run from scratch learns fastest "
                "per minute with it" + _smaller_batch(facts) + _mosaics(facts))
    source = "a pretrained detector" if facts.start == "detector" else "a pretrained backbone"
    if facts.iterations is not None and facts.iterations >= LONG_RUN:
        return (DARKNET, f"{n} from {source} on {facts.device}: a long fine-tune "
                         f"(>= {LONG_RUN}) keeps darknet's recipe")
    anchors = "spec" if facts.start == "detector" else "auto"
    return (fast_recipe(facts, anchors),
            f"{n} from {source} on {facts.device}: a short fine-tune (< {LONG_RUN}) learns "
            "fastest per minute with it" + _smaller_batch(facts) + _mosaics(facts) +
            ("; anchors: the detector's own, each truth on its best one" if anchors == "spec"
             else ""))


def _smaller_batch(facts: RunFacts) -> str:
    batch = fast_batch(facts.device, facts.iterations, facts.timed)
    full = FAST_BATCH["cuda" if facts.device == "cuda" else "cpu"]
    return f"; batch {batch}, not {full}: for {MIN_UPDATES} updates" if batch < full else ""


def _mosaics(facts: RunFacts) -> str:
    if facts.epochs is None or facts.epochs < MOSAIC_EPOCHS:
        return ""
    return f"; mosaics: {facts.epochs:.3g} epochs (>= {MOSAIC_EPOCHS}) over the same images"


def nominal_iterations(images: float) -> int:
    """Iterations of NOMINAL_BATCH images that ``images`` training images make."""
    return max(1, int(math.ceil(images / NOMINAL_BATCH)))


def apply_recipe(opts, recipe: Recipe, spec_batch: int, split: int = 1):
    """``opts`` with every recipe field it leaves unset (None) taken from ``recipe`` (the
    batch rounded up to a multiple of ``split``, the micro-batches of one step); and the
    names of the fields that were set explicitly."""
    given = [f for f in FIELDS if getattr(opts, f) not in (None, UNSET.get(f))]
    values = {f: getattr(recipe, f) for f in FIELDS if f not in given}
    if "batch" in values:
        b = values["batch"] or spec_batch
        values["batch"] = int(math.ceil(b / split) * split)
    return replace(opts, **values), given


def describe_recipe(recipe: Recipe, opts, given: List[str]) -> str:
    """What a run trains with, as the recipe line shows it: the recipe's name and the
    values of its fields in ``opts`` (explicitly set ones marked)."""
    def show(f: str) -> str:
        v = getattr(opts, f)
        text = {"optimizer": lambda: {"sgd": "SGD", "adamw": "AdamW"}.get(v, v),
                "lr": lambda: "lr " + ("the spec's" if v is None else f"{v:g}"),
                "burn_in": lambda: "burn-in " + ("the spec's" if v is None else f"{v:g}"),
                "ema": lambda: f"weight average {v:g}" if v else "no weight average",
                "batch": lambda: f"batch {v}",
                "multiscale": lambda: "multi-scale" if v else "fixed size",
                "jitter": lambda: "jitter " + ("the spec's" if v is None else f"{v:g}"),
                "hsv": lambda: "colour distortion" if v else "no colour distortion",
                "mosaic": lambda: f"mosaic {v:g}" if v else "no mosaic",
                "iou_thresh": lambda: "truths on their best anchor" if v >= 1 else
                              f"truths on anchors over IoU {v:g}",
                "anchors": lambda: "anchors fitted" if v == "auto" else "the spec's anchors",
                }.get(f, lambda: str(v))()
        return text + (" (set)" if f in given else "")
    return f"{recipe.name} ({', '.join(show(f) for f in FIELDS)})"
