"""``detector train``: a detector trained on a dataset, with the recipe the run calls for.

A :class:`Trainer` runs in phases. *Setup* (the constructor): options (or those of the run
it resumes), device and processes, data, model, the recipe (train/recipe.py: chosen from
the run's length, starting weights and device, for every field the options leave unset),
optimizer, schedule, weight average, and the progress of a resumed run. A run with a time
budget first times its own first steps (train/probe.py, without changing the run) and fits
its length to the budget (train/budget.py); the fit is part of the training state.
*Step*: the learning rate of the images seen so far (burn-in, steps or cosine),
``accumulate`` micro-batches forward + backward, one optimizer update
(momentum, weight decay on conv weights), the weight average. *Epoch end* (main process):
*validate* (VOC07 mAP of the averaged weights), *checkpoint* (``RUN/best.safetensors``,
``RUN/last.safetensors``, a ``metrics.csv`` row, the training state ``RUN/last.pt``).

The training state is also written every ``save_every`` steps, atomically, and ``resume``
continues exactly where it was written: the data order, sizes and augmentation are functions
of (seed, epoch, step), so a resumed run computes what an uninterrupted run computes.

Multi-GPU / multi-node through ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on
GPU); rank 0 evaluates and writes files.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from typing import Dict, Iterator, Optional, Tuple

import torch

from ..data.augment import multiscale_sizes
from ..data.batches import MultiScaleBatches, TrainSet
from ..data.dataset import open_dataset
from ..errors import ParamError, UserError
from ..eval.evaluate import evaluate_torch_model
from ..heap import keep_freed_memory
from ..io.checkpoint import save_checkpoint
from ..models.yolov2 import state_numpy
from .budget import Costs, epochs_of, fit_budget, past_deadline
from .device import amp_dtype, default_workers, resolve_device
from .distributed import Dist
from .ema import WeightAverage
from .initial import fit_anchors, initial_model, resumed_model
from .loader import augment_config, epoch_loader, split_targets
from .metrics import MetricsLog, epoch_line, progress_bar
from .options import TrainOptions, check_options, resumed_options
from .probe import StepTiming, time_steps, unchanged
from .recipe import RunFacts, apply_recipe, choose_recipe, describe_recipe, nominal_iterations
from .region_loss import RegionLoss
from .schedule import LRSchedule
from .state import load_state, save_state

STATE_FILE = "last.pt"
CLOSE_MOSAIC = 0.1            # the last tenth of the epochs train on whole images
NEVER = 2 ** 62               # the final-size epochs of a run whose length is not known yet
PROBE_VAL_IMAGES = 16         # images a timed run validates on to time a validation


def train(opts: TrainOptions, log=print) -> dict:
    """Train; returns the metrics of the last epoch. Files go to ``opts.out``."""
    return Trainer(opts, log).run()


def param_groups(model: torch.nn.Module, decay: float):
    """Darknet decays conv weights only (not BN scales, not biases)."""
    conv_w = [p for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() == 4]
    other = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and p.dim() == 4)]
    return [{"params": conv_w, "weight_decay": decay}, {"params": other, "weight_decay": 0.0}]


def fused_kernels(model: torch.nn.Module) -> dict:
    """``{"fused": True}`` where PyTorch has one-kernel optimizer steps for the model's
    device (CUDA, and the CPU since PyTorch 2.4), else ``{}``. The per-tensor loop it
    replaces launches a dozen small ops per parameter tensor."""
    device = next(model.parameters()).device.type
    if device == "cuda" or (device == "cpu" and torch.__version__ >= (2, 4)):
        return {"fused": True}
    return {}


def make_optimizer(model: torch.nn.Module, name: str, train) -> torch.optim.Optimizer:
    """SGD with darknet's momentum and decay, or AdamW with the momentum as its beta 1; the
    learning rate is set before every step."""
    groups = param_groups(model, train.decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, betas=(train.momentum, 0.999),
                                 **fused_kernels(model))
    return torch.optim.SGD(groups, lr=0.0, momentum=train.momentum, **fused_kernels(model))


def _epochs_text(n: int) -> str:
    return "epoch" if n == 1 else f"{n} epochs"


def mosaic_free_epochs(epochs: int) -> int:
    """The last epochs of a run that see no mosaics: a tenth of them, at least one when
    there are two or more (ultralytics' ``close_mosaic``)."""
    return 0 if epochs < 2 else max(1, int(round(CLOSE_MOSAIC * epochs)))


def _endless(data: TrainSet, sampler: MultiScaleBatches, workers: int) -> Iterator:
    """The batches of ``sampler``'s epochs 0, 1, 2, ..."""
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from epoch_loader(data, sampler, workers)
        epoch += 1


class Trainer:
    """One training run: set up by the constructor, trained by :meth:`run`."""

    def __init__(self, opts: TrainOptions, log=print):
        self.log = log
        self.state_path = os.path.join(opts.out, STATE_FILE)
        self.opts, self.resumed = self._options(opts)
        self.device = resolve_device(self.opts.device)
        if self.device == "cpu":
            keep_freed_memory()         # faster steps on the CPU (detector/heap.py)
        if self.opts.workers is None:
            self.opts.workers = default_workers()
        self.dist = Dist(self.device)
        self.logger: Optional[MetricsLog] = None
        self.bar = None
        self.recipe_line: Optional[str] = None
        self.timing: Optional[StepTiming] = None    # the first steps of a timed run
        self.costs: Optional[Costs] = None          # what a timed run's parts cost
        try:
            self._setup()
        except BaseException:
            self.dist.close()
            raise

    # ---- setup -------------------------------------------------------------------------

    def _options(self, given: TrainOptions) -> Tuple[TrainOptions, Optional[dict]]:
        """The run's options (a copy) and the training state it resumes, if any."""
        resumed = None
        if given.resume:
            resumed = load_state(self.state_path)
            opts = resumed_options(given, resumed["options"])
        elif os.path.exists(self.state_path):
            raise ParamError("resume", f"not set, but {given.out} already holds a training run "
                             f"({STATE_FILE}): set it to continue that run, or write to another "
                             "directory")
        else:
            opts = dataclasses.replace(given)
        check_options(opts)
        return opts, resumed

    def _setup(self) -> None:
        self.progress = {"epoch": 0, "step": 0, "seen": 0, "best_map": -1.0, "elapsed": 0.0}
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self._setup_batches()
        if self.resumed is not None:
            self._restore(self.resumed)
        self.data = TrainSet(self.train_set, augment_config(self.spec, self.opts), self.opts.seed,
                             mosaic_until=self.mosaic_until)
        if self.opts.time is not None and self.total_steps is None:
            self._fit_budget()
            self.data.mosaic_until = self.mosaic_until
        if self.dist.main:
            self._open_run()

    def _setup_data(self) -> None:
        o = self.opts
        self.train_set = open_dataset(o.data, "train")
        self.names = list(self.train_set.names)
        try:
            self.val_set = open_dataset(o.data, "val", names=self.names)
        except UserError as e:
            if "split" not in str(e):
                raise
            self.val_set = None
            self.log(f"note: {o.data} has no 'val' split: no validation mAP, best = last")
        if len(self.train_set) < 1:
            raise UserError(f"{o.data}: the train split has no usable images")

    def _setup_model(self) -> None:
        """Spec, model (on the device, data-parallel under torchrun), the recipe, anchors,
        loss, weight average."""
        if self.resumed is not None:
            self.spec, self.model = resumed_model(self.resumed, self.state_path, self.opts.seed)
            self.note = f"resumed from {self.state_path}"
            self.recipe_line = self.resumed["progress"].get("recipe")
            self._place_model()
        else:
            self.spec, self.model, self.note, start = initial_model(self.opts, self.names)
            self._place_model()
            self._choose_recipe(start)
            if self.opts.anchors == "auto":
                self.spec = fit_anchors(self.spec, self.train_set, self.opts.seed)
                self.note += "; anchors " + ", ".join(f"{w:.2f}x{h:.2f}"
                                                      for w, h in self.spec.region.anchors)
        o, tr = self.opts, self.spec.train
        if o.time is None:
            o.epochs = o.epochs or max(1, round(tr.max_batches * tr.batch / len(self.train_set)))
            o.val_every = o.val_every or 1
        self.epochs = o.epochs
        self.loss_fn = RegionLoss.from_spec(self.spec, self.opts.iou_thresh).to(self.device)
        self.ema = WeightAverage(self.model, o.ema) if o.ema else None

    def _place_model(self) -> None:
        # Same parameters, faster kernels for training: FastDSC's pointwise GEMM as a 1x1 conv
        # and channels-last memory (docs/performance.md, "Training").
        self.model.set_pointwise("conv")
        self.model.to(self.device, memory_format=torch.channels_last)
        self.net = self.model
        if self.dist.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if self.device == "cuda" else None)

    def _choose_recipe(self, start: str) -> None:
        """Fill the recipe fields the options leave unset (train/recipe.py). A run of N
        epochs knows its length; a timed run is first measured with the recipe of a run of
        unknown length, and measured again when its length calls for another recipe."""
        given, tr, n = self.opts, self.spec.train, len(self.train_set)
        if given.time is None:
            images = given.epochs * n if given.epochs else tr.max_batches * tr.batch
            self._apply(given, *choose_recipe(RunFacts(nominal_iterations(images), start,
                                                       self.device, epochs=images / n)))
            return
        budget = given.time * 60.0
        self._apply(given, *choose_recipe(RunFacts(None, start, self.device)))
        for attempt in range(2):
            self.timing = self._probe(budget)
            images = budget * self.opts.batch / self.timing.step_seconds(self.spec.size)
            recipe, why = choose_recipe(RunFacts(nominal_iterations(images), start, self.device,
                                                 timed=True, epochs=images / n))
            why = f"{given.time:g} minutes, about {why}"
            changed = recipe != self.recipe
            self._apply(given, recipe, why)
            if not changed or attempt:
                break

    def _apply(self, given: TrainOptions, recipe, why: str) -> None:
        """The options: ``given`` with the fields it leaves unset from ``recipe``."""
        self.opts, fields_given = apply_recipe(given, recipe, self.spec.train.batch,
                                               split=given.accumulate * self.dist.world)
        self.recipe = recipe
        self.recipe_line = f"{describe_recipe(recipe, self.opts, fields_given)} for {why}"
        self.progress["recipe"] = self.recipe_line

    def _setup_optimizer(self) -> None:
        self.optimizer = make_optimizer(self.model, self.opts.optimizer, self.spec.train)
        self.autocast_dtype = amp_dtype(self.opts.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 \
            else None

    def _setup_batches(self) -> None:
        """Batch order and sizes, steps per epoch, the validation size, and the schedule
        when the run's length is known."""
        o = self.opts
        self.sampler, self.sizes = self._sampler(o)
        # validation, best.safetensors and last.safetensors at val_size (default: the size
        # the run ends at)
        self.val_spec = self.spec.replace(size=o.val_size or o.final_size or self.spec.size)
        self.steps = len(self.sampler) // o.accumulate
        if self.steps < 1:
            raise ParamError("batch", f"more than the {len(self.train_set)} training images of "
                             f"{o.data}: not one full step", value=o.batch)
        total = self.epochs * self.steps if o.time is None else \
            (self.resumed or {}).get("progress", {}).get("total_steps")
        self._set_length(total)

    def _sampler(self, o: TrainOptions) -> Tuple[MultiScaleBatches, list]:
        """The batch sampler of options ``o`` (its final-size epochs set by _set_length)."""
        world = self.dist.world
        if o.batch % (o.accumulate * world):
            raise ParamError("batch", f"must split into accumulate ({o.accumulate}) micro-batches "
                             f"on each of {world} processes", value=o.batch)
        size = self.spec.size
        sizes = multiscale_sizes(size) if o.multiscale else [size]
        # one step = `accumulate` micro-batches on every process; the size is redrawn every
        # 10 steps
        sampler = MultiScaleBatches(
            len(self.train_set), o.batch // (o.accumulate * world), sizes, o.seed,
            every=10 * o.accumulate * world, rank=self.dist.rank, world=world,
            final_size=o.final_size, final_from=NEVER)
        return sampler, sizes

    def _set_length(self, total_steps: Optional[int]) -> None:
        """The run's length in steps (None: not known yet, a timed run before its fit): its
        epochs (the last one possibly partial), final-size epochs and schedule."""
        o = self.opts
        self.total_steps = total_steps
        if total_steps is None:
            self.epochs, self.final_epochs, self.schedule = None, 0, None
            self.mosaic_until = None
            return
        self.epochs = epochs_of(total_steps, self.steps)
        self.mosaic_until = self.epochs - mosaic_free_epochs(self.epochs)
        self.final_epochs = min(o.final_epochs or (1 if o.final_size else 0), self.epochs)
        self.sampler.final_from = self.epochs - self.final_epochs
        self.schedule = LRSchedule.from_spec(self.spec.train, total_steps * o.batch, o.lr,
                                             o.burn_in, o.schedule)

    def epoch_steps(self, epoch: int) -> int:
        """Steps of ``epoch`` (all but the last epoch of a timed run are whole)."""
        return min(self.steps, self.total_steps - epoch * self.steps)

    def _restore(self, state: dict) -> None:
        """Optimizer, loss scaler, progress and weight average of the resumed run."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress.update(state["progress"])
        if self.progress.get("costs"):
            self.costs = Costs(*self.progress["costs"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])

    def _make_run_dir(self) -> None:
        try:
            os.makedirs(self.opts.out, exist_ok=True)
        except OSError as e:
            raise ParamError("out", f"cannot create the run directory: {e.strerror or e}",
                             value=self.opts.out) from None

    def _open_run(self) -> None:
        """The run directory, the recipe line, the run line and the metrics (main
        process)."""
        self._make_run_dir()
        if self.recipe_line:
            self.log(f"recipe {self.recipe_line}" +
                     (" (the run resumed)" if self.resumed is not None else ""))
        self.log(self._describe())
        self.logger = MetricsLog(self.opts.out, self.opts.tensorboard,
                                 append=self.resumed is not None,
                                 upto_epoch=self.progress["epoch"],
                                 comment=f"recipe {self.recipe_line}" if self.recipe_line else None)

    def _describe(self) -> str:
        o, size, sizes = self.opts, self.spec.size, self.sizes
        return (
            f"train {self.spec.name}: {len(self.train_set)} images, {len(self.names)} classes, "
            f"{self._length_text()} of {o.batch} at {size} px"
            f"{' (multi-scale %d..%d)' % (sizes[0], sizes[-1]) if len(sizes) > 1 else ''}"
            f"{', the last %d at %d px' % (self.final_epochs, o.final_size) if self.final_epochs else ''}"
            f"{', validated at %d px' % self.val_spec.size if self.val_spec.size != size else ''}"
            f"{', jitter %g' % o.jitter if o.jitter is not None else ''}"
            f"{', no HSV distortion' if not o.hsv else ''}{self._mosaic_text()} on {self.device}"
            f"{' x%d processes' % self.dist.world if self.dist.world > 1 else ''}"
            f"{', %s autocast' % str(self.autocast_dtype).split('.')[-1] if self.autocast_dtype else ''}"
            f"; {self.note}")

    def _mosaic_text(self) -> str:
        if not self.opts.mosaic:
            return ""
        whole = "" if self.mosaic_until is None or self.mosaic_until >= self.epochs else \
            f" (whole images in the last {self.epochs - self.mosaic_until})"
        return f", mosaic {self.opts.mosaic:g}{whole}"

    def _length_text(self) -> str:
        if self.opts.time is None:
            return f"{self.epochs} epochs x {self.steps} steps"
        last = self.total_steps - (self.epochs - 1) * self.steps
        return (f"{self.total_steps} steps fitted to {self.opts.time:g} minutes ({self.epochs} "
                f"epochs of {self.steps}{', the last of %d' % last if last < self.steps else ''}"
                f", validating every {_epochs_text(self.opts.val_every)})")

    # ---- a timed run: its first steps and its length -------------------------------------

    def _probe(self, budget: float) -> StepTiming:
        """The timing of the run's first steps with the options as they are now (its
        batches, sizes and augmentation), the model left as it was."""
        o = self.opts
        sampler, _ = self._sampler(o)
        data = TrainSet(self.train_set, augment_config(self.spec, o), o.seed)
        self.loss_fn = RegionLoss.from_spec(self.spec, self.opts.iou_thresh).to(self.device)
        self.autocast_dtype, self.scaler = amp_dtype(o.amp, self.device), None
        optimizer = make_optimizer(self.model, o.optimizer, self.spec.train)   # lr 0
        batches = _endless(data, sampler, o.workers)

        def step() -> int:
            for _ in range(o.accumulate):
                images, rows = next(batches)
                self._micro_batch(images, rows, sync=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if self.device == "cuda":
                torch.cuda.synchronize()
            return images.shape[-1]

        def stop(enough: bool) -> bool:
            return self.dist.from_main([enough], self.device)[0] > 0

        self.net.train()
        with unchanged(self.model):
            timing = time_steps(step, stop, budget)
        if self.timing is not None:       # a second probe: the run started at the first
            timing = dataclasses.replace(timing, started=self.timing.started)
        return timing

    def _fit_budget(self) -> None:
        """Fix the run's length so that it ends within the budget: the most steps whose
        expected time, with validations and epoch ends, fits in what is left of it."""
        o = self.opts
        self.costs = Costs(*self.dist.from_main(self._measure_costs(), self.device))
        left = o.time * 60.0 - (time.time() - self.timing.started)
        fit = fit_budget(left, self.steps, self.costs, o.final_epochs or
                         (1 if o.final_size else 0), o.val_every)
        if fit is None:
            raise ParamError("time", f"too short for this run: a step takes about "
                             f"{self.costs.step:.2g} s and a validation {self.costs.validation:.2g}"
                             f" s, {max(left, 0):.0f} s are left after measuring them",
                             value=o.time)
        o.val_every = fit.val_every
        self._set_length(fit.steps)
        self.progress.update(total_steps=fit.steps, costs=list(dataclasses.astuple(self.costs)))
        if self.dist.main:
            self.save_state()          # a resumed run continues this schedule

    def _measure_costs(self) -> list:
        """Seconds of a step at the run's sizes and at the final size, of a validation and
        of an epoch end (main process: it validates and writes; the others get its
        figures)."""
        o, t = self.opts, self.timing
        step = sum(t.step_seconds(s) for s in self.sizes) / len(self.sizes)
        final = t.step_seconds(o.final_size) if o.final_size else step
        if not self.dist.main:
            return [step, final, 0.0, 0.0]
        self._make_run_dir()
        start = time.perf_counter()
        self.save_state(self.state_path + ".timing")       # the run's state is written once
        os.remove(self.state_path + ".timing")             # its length is fixed
        write = time.perf_counter() - start
        validation = write
        if self.val_set is not None:
            n = min(len(self.val_set), o.max_val_images or len(self.val_set))
            k = min(n, PROBE_VAL_IMAGES)
            start = time.perf_counter()
            evaluate_torch_model(self.model, self.val_spec, self.val_set, self.device,
                                 max_images=k)
            validation += (time.perf_counter() - start) * n / k
        return [step, final, validation, 2 * write]

    def _out_of_time(self) -> bool:
        """Whether a timed run must stop now to end within its budget (all processes
        agree: the main process's clock decides)."""
        late = self.dist.main and past_deadline(time.time() - self.t_start,
                                                self.opts.time * 60.0, self.costs)
        return self.dist.from_main([late], self.device)[0] > 0

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> dict:
        """Train the remaining epochs; returns the metrics row of the last one."""
        started = self.timing.started if self.timing is not None else time.time()
        self.t_start = started - self.progress["elapsed"]
        final = {}
        try:
            while self.progress["epoch"] < self.epochs:
                epoch = self.progress["epoch"]
                row = self.train_epoch(epoch)
                if self.dist.main:
                    self.end_epoch(epoch, row)
                    final = row
                self.dist.barrier()
            if final and self.opts.time is not None and self.dist.main:
                self.log(f"time: {(time.time() - self.t_start) / 60:.2f} of "
                         f"{self.opts.time:g} minutes")
        finally:
            self.close()
        return final

    def train_epoch(self, epoch: int) -> dict:
        """The remaining steps of ``epoch``; returns its metrics row (without validation).
        A timed run that runs out of time ends here (the epoch becomes its last)."""
        o = self.opts
        steps = self.epoch_steps(epoch)
        self.sampler.set_epoch(epoch, start_batch=self.progress["step"] * o.accumulate)
        loader = epoch_loader(self.data, self.sampler, o.workers)
        self.net.train()
        self.bar = progress_bar(steps, self.progress["step"], f"epoch {epoch + 1}/{self.epochs}",
                                self.dist.main)
        t_epoch, images_epoch = time.time(), 0
        batches = iter(loader)
        lr, parts = 0.0, {}
        for step in range(self.progress["step"], steps):
            lr = self.schedule(self.progress["seen"])
            parts, size = self.step(batches, lr)
            if not math.isfinite(parts["loss"]):
                raise ParamError("lr", f"training diverged at epoch {epoch + 1} step {step + 1} "
                                 f"(loss {parts['loss']}); a lower one may converge")
            self.progress["seen"] += o.batch
            self.progress["step"] = step + 1
            images_epoch += o.batch
            if self.dist.main:
                self._report_step(lr, parts, size)
            if self.costs is not None and epoch * self.steps + step + 1 < self.total_steps \
                    and self._out_of_time():
                self._end_early(epoch, step + 1)
                break
            if self.dist.main and o.save_every and self.progress["step"] % o.save_every == 0 \
                    and self.progress["step"] < steps:
                self.progress["elapsed"] = time.time() - self.t_start
                self.save_state()
        if self.dist.main:
            self.bar.close()
        self.progress.update(epoch=epoch + 1, step=0, elapsed=time.time() - self.t_start)
        row = {"epoch": epoch + 1, "seen": self.progress["seen"], "lr": lr,
               "minutes": self.progress["elapsed"] / 60,
               "images_per_s": images_epoch / max(time.time() - t_epoch, 1e-9)}
        row.update(parts)
        return row

    def _end_early(self, epoch: int, step: int) -> None:
        """A timed run behind its estimate: ``epoch`` ends after ``step`` of its steps and
        is the last (a resume has nothing left to do)."""
        self.total_steps = epoch * self.steps + step
        self.epochs = epoch + 1
        self.progress["total_steps"] = self.total_steps
        if self.dist.main:
            self.log(f"\nnote: behind the time estimate; the run ends at step {self.total_steps}")

    def step(self, batches: Iterator, lr: float) -> Tuple[Dict[str, float], int]:
        """One optimizer step at learning rate ``lr`` on the next ``accumulate`` micro-batches
        of ``batches``; returns the loss parts (averaged over the micro-batches) and the input
        size it trained at."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        parts: Dict[str, float] = {}
        n = self.opts.accumulate
        for k in range(n):
            images, rows = next(batches)
            sync = k == n - 1 or self.dist.world == 1
            for key, v in self._micro_batch(images, rows, sync).items():
                parts[key] = parts.get(key, 0.0) + v / n
        self._update()
        return parts, images.shape[-1]

    def _micro_batch(self, images, rows, sync: bool) -> Dict[str, float]:
        """Forward and backward of one micro-batch (gradients synchronised across processes
        only when ``sync``); its loss parts."""
        images = torch.from_numpy(images).to(self.device, non_blocking=True).contiguous(
            memory_format=torch.channels_last)
        targets = split_targets(rows, len(images))
        with self.net.no_sync() if not sync else contextlib.nullcontext():
            with torch.autocast(self.device, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype is not None):
                raw = self.net(images)
            parts = self.loss_fn(raw.float(), targets, seen=self.progress["seen"])
            self._backward(parts.total)
        return parts.as_dict()

    def _backward(self, total) -> None:
        """Backward of one micro-batch's loss (its share of the step; scaled for fp16)."""
        loss = total / self.opts.accumulate
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _update(self) -> None:
        """The optimizer step on the accumulated gradients (unscaled, clipped), then the
        weight average."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.opts.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opts.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _report_step(self, lr: float, parts: Dict[str, float], size: int) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{parts['loss']:.3f}", lr=f"{lr:.2g}", size=size,
                             refresh=False)
        self.logger.step(self.progress["seen"], lr, parts)

    # ---- epoch end (main process) ------------------------------------------------------

    def end_epoch(self, epoch: int, row: dict) -> None:
        """Validate and write the weights (averaged, when there is an average), then the
        metrics row, then the training state."""
        with self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext():
            self.validate(epoch, row)
            self.save_weights("last.safetensors", {"epoch": str(epoch + 1)})
            if self.val_set is None:
                self.save_weights("best.safetensors", {"epoch": str(epoch + 1)})
        self.logger.epoch(row)          # before the state: a kill in between leaves a
        self.save_state()               # row that a resume drops and writes again
        self.log(epoch_line(row))

    def validate(self, epoch: int, row: dict) -> None:
        """VOC07 mAP on the val split every ``val_every`` epochs and after the last, into
        ``row``; a new best is written as ``best.safetensors``."""
        last = epoch + 1 == self.epochs
        if self.val_set is None or not ((epoch + 1) % self.opts.val_every == 0 or last):
            return
        res = evaluate_torch_model(self.model, self.val_spec, self.val_set, self.device,
                                   max_images=self.opts.max_val_images)
        row.update(voc07_map=res.voc07_map, voc_map=res.voc_map)
        if res.voc07_map is not None and res.voc07_map > self.progress["best_map"]:
            self.progress["best_map"] = res.voc07_map
            self.save_weights("best.safetensors", {"epoch": str(epoch + 1),
                                                   "voc07_map": f"{res.voc07_map:.6f}"})

    # ---- checkpoints -------------------------------------------------------------------

    def save_weights(self, name: str, meta: Dict[str, str]) -> None:
        """The model's weights as ``RUN/name``, a checkpoint at the validation size, with
        the recipe it was trained with in its metadata."""
        if self.recipe_line:
            meta = dict(meta, recipe=self.recipe_line)
        names = self.names if self.val_spec.tree is None else self.val_spec.class_names()
        save_checkpoint(os.path.join(self.opts.out, name), self.val_spec,
                        state_numpy(self.model), names, meta)

    def save_state(self, path: Optional[str] = None) -> None:
        """The training state ``RUN/last.pt`` (what ``resume`` continues from)."""
        save_state(path or self.state_path, self.model, self.optimizer, self.scaler, self.progress,
                   self.opts, self.spec, self.ema)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()            # an error message starts on a line of its own
        if self.logger is not None:
            self.logger.close()
        self.dist.close()
