"""``detector train``: SGD on a VOC-format dataset with darknet's recipe.

A :class:`Trainer` runs in phases. *Setup* (the constructor): options (or those of the run
it resumes), device and processes, data, model, optimizer, schedule, weight average, and the
progress of a resumed run. *Step*: the learning rate of the images seen so far (burn-in,
steps or cosine), ``accumulate`` micro-batches forward + backward, one optimizer update
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
from ..data.voc import VOCDataset
from ..errors import ParamError, UserError
from ..eval.evaluate import evaluate_torch_model
from ..heap import keep_freed_memory
from ..io.checkpoint import save_checkpoint
from ..models.yolov2 import state_numpy
from .device import amp_dtype, default_workers, resolve_device
from .distributed import Dist
from .ema import WeightAverage
from .initial import fit_anchors, initial_model, resumed_model
from .loader import augment_config, epoch_loader, split_targets
from .metrics import MetricsLog, epoch_line, progress_bar
from .options import TrainOptions, check_options, resumed_options
from .region_loss import RegionLoss
from .schedule import LRSchedule
from .state import load_state, save_state

STATE_FILE = "last.pt"


def train(opts: TrainOptions, log=print) -> dict:
    """Train; returns the metrics of the last epoch. Files go to ``opts.out``."""
    return Trainer(opts, log).run()


def param_groups(model: torch.nn.Module, decay: float):
    """Darknet decays conv weights only (not BN scales, not biases)."""
    conv_w = [p for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() == 4]
    other = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and p.dim() == 4)]
    return [{"params": conv_w, "weight_decay": decay}, {"params": other, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, name: str, train) -> torch.optim.Optimizer:
    """SGD with darknet's momentum and decay, or AdamW with the momentum as its beta 1; the
    learning rate is set before every step."""
    groups = param_groups(model, train.decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=0.0, betas=(train.momentum, 0.999))
    return torch.optim.SGD(groups, lr=0.0, momentum=train.momentum)


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
        o, world = self.opts, self.dist.world
        if o.batch % (o.accumulate * world):
            raise ParamError("batch", f"must split into accumulate ({o.accumulate}) micro-batches "
                             f"on each of {world} processes", value=o.batch)
        if self.device == "cuda":
            torch.cuda.set_device(self.dist.local_rank)
        self._setup_data()
        self._setup_model()
        self._setup_optimizer()
        self._setup_batches()
        self.progress = {"epoch": 0, "step": 0, "seen": 0, "best_map": -1.0, "elapsed": 0.0}
        if self.resumed is not None:
            self._restore(self.resumed)
        self.data = TrainSet(self.train_set, augment_config(self.spec, o), o.seed)
        if self.dist.main:
            self._open_run()

    def _setup_data(self) -> None:
        o = self.opts
        self.train_set = VOCDataset(o.data, "train")
        self.names = list(self.train_set.names)
        try:
            self.val_set = VOCDataset(o.data, "val")
        except UserError as e:
            if "split" not in str(e):
                raise
            self.val_set = None
            self.log(f"note: {o.data} has no 'val' split: no validation mAP, best = last")
        if len(self.train_set) < 1:
            raise UserError(f"{o.data}: the train split has no usable images")

    def _setup_model(self) -> None:
        """Spec, model (on the device, data-parallel under torchrun), loss, weight average."""
        o = self.opts
        if self.resumed is not None:
            self.spec, self.model = resumed_model(self.resumed, self.state_path, o.seed)
            self.note = f"resumed from {self.state_path}"
        else:
            self.spec, self.model, self.note = initial_model(o, self.names)
            if o.anchors == "auto":
                self.spec = fit_anchors(self.spec, self.train_set, o.seed)
                self.note += "; anchors " + ", ".join(f"{w:.2f}x{h:.2f}"
                                                      for w, h in self.spec.region.anchors)
        tr = self.spec.train
        self.epochs = o.epochs or max(1, round(tr.max_batches * tr.batch / len(self.train_set)))
        o.epochs = self.epochs
        # Same parameters, faster kernels for training: FastDSC's pointwise GEMM as a 1x1 conv
        # and channels-last memory (docs/performance.md, "Training").
        self.model.set_pointwise("conv")
        self.model.to(self.device, memory_format=torch.channels_last)
        self.net = self.model
        if self.dist.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if self.device == "cuda" else None)
        self.loss_fn = RegionLoss.from_spec(self.spec).to(self.device)
        self.ema = WeightAverage(self.model, o.ema) if o.ema else None

    def _setup_optimizer(self) -> None:
        self.optimizer = make_optimizer(self.model, self.opts.optimizer, self.spec.train)
        self.autocast_dtype = amp_dtype(self.opts.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype == torch.float16 \
            else None

    def _setup_batches(self) -> None:
        """Batch order and sizes, steps per epoch, the validation size, the schedule."""
        o, dist = self.opts, self.dist
        size = self.spec.size
        self.sizes = multiscale_sizes(size) if o.multiscale else [size]
        # one step = `accumulate` micro-batches on every process; the size is redrawn every
        # 10 steps
        self.final_epochs = min(o.final_epochs or (1 if o.final_size else 0), self.epochs)
        self.sampler = MultiScaleBatches(
            len(self.train_set), o.batch // (o.accumulate * dist.world), self.sizes, o.seed,
            every=10 * o.accumulate * dist.world, rank=dist.rank, world=dist.world,
            final_size=o.final_size, final_from=self.epochs - self.final_epochs)
        # validation, best.safetensors and last.safetensors at val_size (default: the size
        # the run ends at)
        self.val_spec = self.spec.replace(size=o.val_size or o.final_size or size)
        self.steps = len(self.sampler) // o.accumulate
        if self.steps < 1:
            raise ParamError("batch", f"more than the {len(self.train_set)} training images of "
                             f"{o.data}: not one full step", value=o.batch)
        self.schedule = LRSchedule.from_spec(self.spec.train, self.epochs * self.steps * o.batch,
                                             o.lr, o.burn_in, o.schedule)

    def _restore(self, state: dict) -> None:
        """Optimizer, loss scaler, progress and weight average of the resumed run."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress.update(state["progress"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])

    def _open_run(self) -> None:
        """The run directory, the first line of the log and the metrics (main process)."""
        o = self.opts
        try:
            os.makedirs(o.out, exist_ok=True)
        except OSError as e:
            raise ParamError("out", f"cannot create the run directory: {e.strerror or e}",
                             value=o.out) from None
        self.log(self._describe())
        self.logger = MetricsLog(o.out, o.tensorboard, append=self.resumed is not None,
                                 upto_epoch=self.progress["epoch"])

    def _describe(self) -> str:
        o, size, sizes = self.opts, self.spec.size, self.sizes
        return (
            f"train {self.spec.name}: {len(self.train_set)} images, {len(self.names)} classes, "
            f"{self.epochs} epochs x {self.steps} steps of {o.batch} at {size} px"
            f"{' (multi-scale %d..%d)' % (sizes[0], sizes[-1]) if len(sizes) > 1 else ''}"
            f"{', the last %d at %d px' % (self.final_epochs, o.final_size) if self.final_epochs else ''}"
            f"{', validated at %d px' % self.val_spec.size if self.val_spec.size != size else ''}"
            f"{', jitter %g' % o.jitter if o.jitter is not None else ''}"
            f"{', no HSV distortion' if not o.hsv else ''} on {self.device}"
            f"{' x%d processes' % self.dist.world if self.dist.world > 1 else ''}"
            f"{', %s autocast' % str(self.autocast_dtype).split('.')[-1] if self.autocast_dtype else ''}"
            f"; {self.note}")

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> dict:
        """Train the remaining epochs; returns the metrics row of the last one."""
        self.t_start = time.time() - self.progress["elapsed"]
        final = {}
        try:
            for epoch in range(self.progress["epoch"], self.epochs):
                row = self.train_epoch(epoch)
                if self.dist.main:
                    self.end_epoch(epoch, row)
                    final = row
                self.dist.barrier()
        finally:
            self.close()
        return final

    def train_epoch(self, epoch: int) -> dict:
        """The remaining steps of ``epoch``; returns its metrics row (without validation)."""
        o = self.opts
        self.sampler.set_epoch(epoch, start_batch=self.progress["step"] * o.accumulate)
        loader = epoch_loader(self.data, self.sampler, o.workers)
        self.net.train()
        self.bar = progress_bar(self.steps, self.progress["step"], f"epoch {epoch + 1}/{self.epochs}",
                                self.dist.main)
        t_epoch, images_epoch = time.time(), 0
        batches = iter(loader)
        lr, parts = 0.0, {}
        for step in range(self.progress["step"], self.steps):
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
                if o.save_every and self.progress["step"] % o.save_every == 0 \
                        and self.progress["step"] < self.steps:
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
            loss = parts.total / self.opts.accumulate
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        return parts.as_dict()

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
        """The model's weights as ``RUN/name``, a checkpoint at the validation size."""
        save_checkpoint(os.path.join(self.opts.out, name), self.val_spec,
                        state_numpy(self.model), self.names, meta)

    def save_state(self) -> None:
        """The training state ``RUN/last.pt`` (what ``resume`` continues from)."""
        save_state(self.state_path, self.model, self.optimizer, self.scaler, self.progress,
                   self.opts, self.spec, self.ema)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()            # an error message starts on a line of its own
        if self.logger is not None:
            self.logger.close()
        self.dist.close()
