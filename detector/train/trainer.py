"""``detector train``: SGD on a VOC-format dataset with darknet's recipe.

Per step: the learning rate of the images seen so far (burn-in, steps), ``accumulate``
micro-batches forward + backward, one SGD update (momentum, weight decay on conv weights).
After every epoch (and every ``save_every`` steps) the training state is written
atomically to ``RUN/last.pt`` (loadable with ``torch.load(weights_only=True)``) and the
weights to ``RUN/last.safetensors``; the best validation VOC07 mAP is kept as
``RUN/best.safetensors``. ``--resume`` continues exactly where the last state was written:
the data order, sizes and augmentation are functions of (seed, epoch, step), so a resumed
run computes what an uninterrupted run computes.

Multi-GPU / multi-node through ``torchrun`` (DistributedDataParallel; gloo on CPU, nccl on
GPU); rank 0 evaluates and writes files.
"""
from __future__ import annotations

import csv
import functools
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional

import numpy as np
import torch

from ..engine.onednn import cpu_bf16_native
from ..errors import UserError
from ..heap import keep_freed_memory
from ..io.atomic import atomic_path
from ..io.checkpoint import save_checkpoint
from ..models.spec import ModelSpec, check_input_size, with_classes
from ..models.yolov2 import YOLOv2, state_numpy
from .ema import WeightAverage
from .region_loss import RegionLoss
from .schedule import LRSchedule

STATE_VERSION = 1


@dataclass
class TrainOptions:
    data: str
    out: str
    model: Optional[str] = None
    weights: Optional[str] = None
    cfg: Optional[str] = None
    epochs: Optional[int] = None
    batch: int = 64
    accumulate: int = 1
    img_size: Optional[int] = None
    multiscale: bool = True
    final_size: Optional[int] = None      # the last ``final_epochs`` epochs train at this size
    final_epochs: int = 0
    val_size: Optional[int] = None        # validation (and saved checkpoints') input size
    jitter: Optional[float] = None        # crop jitter (default: the spec's region jitter)
    hsv: bool = True                      # hue/saturation/exposure distortion (the spec's)
    lr: Optional[float] = None
    burn_in: Optional[float] = None       # fraction of the run; default from the spec
    device: Optional[str] = None
    workers: Optional[int] = None         # None: 0 on <= 2 cores (measured faster), else up to 4
    seed: int = 0
    val_every: int = 1
    save_every: int = 0                   # also save every N steps (0: only at epoch ends)
    max_val_images: Optional[int] = None
    clip_grad: float = 10.0               # max gradient norm (0: off); guards early steps
    anchors: str = "spec"                 # "spec", or "auto": k-means on the training boxes
    optimizer: str = "sgd"                # "sgd" (darknet's recipe) or "adamw"
    schedule: str = "steps"               # "steps" (darknet's) or "cosine" (train/schedule.py)
    ema: float = 0.0                      # decay of the weight average (train/ema.py); 0: off
    amp: str = "auto"                     # mixed precision: "auto", "on", "off" (amp_dtype)
    tensorboard: bool = True
    resume: bool = False
    extra: Dict[str, str] = field(default_factory=dict)


# ---- model initialisation ----------------------------------------------------------------

def initial_model(opts: TrainOptions, names: List[str]):
    """(spec, model, note) for --model / --weights, with a head for the dataset's classes."""
    from ..engine.model_file import read_model
    from ..models.spec import load_spec
    state = None
    if opts.weights:
        if opts.weights.endswith(".weights") and opts.model and not opts.cfg:
            from ..io.darknet_weights import read_weights
            spec = load_spec(opts.model)
            _, state = read_weights(opts.weights, spec, partial=True)
            source = f"darknet {opts.weights}"
        else:
            loaded = read_model(opts.weights, opts.cfg)
            if loaded.state is None:
                raise UserError(f"{opts.weights}: a lowered plan cannot be trained; use the "
                                "checkpoint it came from")
            spec, state, source = loaded.spec, loaded.state, opts.weights
            if opts.model:
                spec = load_spec(opts.model)
    elif opts.model:
        spec, source = load_spec(opts.model), None
    else:
        raise UserError("give --model (a zoo name or spec YAML) or --weights to start from")
    if opts.img_size:
        spec = spec.replace(size=check_input_size(opts.img_size))
    spec = with_classes(spec, len(names), names)
    torch.manual_seed(opts.seed)
    model = YOLOv2(spec)
    note = "random initialisation"
    if state is not None:
        own = model.state_dict()
        fit = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()
               if k in own and tuple(own[k].shape) == tuple(v.shape)}
        model.load_state_dict(fit, strict=False)
        skipped = [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]
        note = f"{len(fit)} tensors from {source}" + (
            f"; {len(skipped)} left random (e.g. {skipped[0]})" if skipped else "")
    return spec, model, note


def fit_anchors(spec: ModelSpec, dataset, seed: int) -> ModelSpec:
    """The spec with k-means (1 - IoU) anchors of the dataset's boxes at the spec's size."""
    import copy
    from .anchors import dataset_box_sizes, kmeans_anchors
    anchors, _ = kmeans_anchors(dataset_box_sizes(dataset, spec.size), spec.region.num, seed)
    region = copy.deepcopy(spec.region)
    region.anchors = [(round(float(w), 4), round(float(h), 4)) for w, h in anchors]
    return spec.replace(region=region)


def split_targets(rows: np.ndarray, batch: int) -> List[torch.Tensor]:
    """``[M, 6]`` rows (image, class, cx, cy, w, h) -> per image ``[n, 5]`` tensors."""
    t = torch.from_numpy(rows)
    return [t[t[:, 0] == b, 1:] for b in range(batch)]


def param_groups(model: torch.nn.Module, decay: float):
    """Darknet decays conv weights only (not BN scales, not biases)."""
    conv_w = [p for n, p in model.named_parameters() if n.endswith(".weight") and p.dim() == 4]
    other = [p for n, p in model.named_parameters() if not (n.endswith(".weight") and p.dim() == 4)]
    return [{"params": conv_w, "weight_decay": decay}, {"params": other, "weight_decay": 0.0}]


# ---- training state ----------------------------------------------------------------------

def save_state(path: str, model, optimizer, scaler, progress: dict, opts: TrainOptions,
               spec: ModelSpec, ema=None) -> None:
    state = {"version": STATE_VERSION, "model": model.state_dict(),
             "ema": ema.state_dict() if ema is not None else {},
             "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else {},
             "progress": dict(progress), "options": asdict(opts), "spec": spec.to_dict(),
             "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:    # a file object: a failed write stays an OSError
            torch.save(state, f)      # (chained), so a full disk is reported as such


def load_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise UserError(f"--resume: no training state at {path}")
    import pickle
    import warnings
    try:
        with warnings.catch_warnings():       # torch warns about pickle protocols: one line only
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:       # objects other than tensors: refused, not run
        why = str(e).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
        raise UserError(f"{path}: refused: not a training state of plain tensors and numbers "
                        f"({' '.join(why.split())[:120]}); pickled Python objects are never "
                        "loaded") from None
    except Exception as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UserError(f"{path}: unreadable training state ({why})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise UserError(f"{path}: not a FastDSC-YOLO training state (version {STATE_VERSION})")
    return state


# ---- distributed ---------------------------------------------------------------------------

class Dist:
    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1:
            import torch.distributed as dist
            backend = "nccl" if device == "cuda" else "gloo"
            dist.init_process_group(backend)
            self.dist = dist

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.world > 1:
            self.dist.barrier()

    def close(self):
        if self.world > 1:
            self.dist.destroy_process_group()


# ---- the loop --------------------------------------------------------------------------------

AMP_MODES = ("auto", "on", "off")


def amp_dtype(mode: str, device: str) -> Optional[torch.dtype]:
    """Autocast dtype of the forward pass, or None for fp32: float16 (with loss scaling) on
    CUDA; bfloat16 on CPUs with native bf16 (1.39x faster steps for yolov2-tiny-voc-fastdsc,
    1.78x for yolov2-tiny-voc on this project's Zen 4 CPU; scripts/bench_train_step.py). ``on``
    forces bf16 on any CPU (oneDNN emulates it where the hardware lacks it)."""
    if mode not in AMP_MODES:
        raise UserError(f"--amp {mode!r}: allowed values: {', '.join(AMP_MODES)}")
    if mode == "off":
        return None
    if device == "cuda":
        return torch.float16
    return torch.bfloat16 if mode == "on" or cpu_bf16_native() else None


def resolve_device(device: Optional[str]) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device")
    return device


def augment_config(spec, opts: TrainOptions):
    """The spec's darknet augmentation with the run's --jitter / --no-hsv applied."""
    from ..data.augment import AugmentConfig
    overrides = {} if opts.hsv else dict(hue=0.0, saturation=1.0, exposure=1.0)
    if opts.jitter is not None:
        overrides["jitter"] = float(opts.jitter)
    return AugmentConfig.from_spec(spec, **overrides)


def train(opts: TrainOptions, log=print) -> dict:
    """Train; returns the final metrics. Files go to ``opts.out``."""
    from ..data.augment import multiscale_sizes
    from ..data.batches import MultiScaleBatches, TrainSet, collate
    from ..data.voc import VOCDataset
    state_path = os.path.join(opts.out, "last.pt")
    resumed = None
    if opts.resume:
        resumed = load_state(state_path)
        saved = TrainOptions(**{k: v for k, v in resumed["options"].items()
                                if k in TrainOptions.__dataclass_fields__})
        saved.resume, saved.workers = True, opts.workers
        if "amp" not in resumed["options"]:
            saved.amp = "off"         # a state from before --amp: it trained in fp32
        if opts.epochs:
            saved.epochs = opts.epochs
        opts = saved
    elif os.path.exists(state_path):
        raise UserError(f"{opts.out} already holds a training run (last.pt); pass --resume "
                        "to continue it or choose another --out")
    if opts.jitter is not None and not 0.0 <= opts.jitter <= 0.45:
        raise UserError(f"--jitter {opts.jitter}: must be in [0, 0.45]")
    if opts.final_epochs and not opts.final_size:
        raise UserError("--final-epochs needs --final-size")
    if not 0.0 <= opts.ema < 1.0:
        raise UserError(f"--ema {opts.ema}: the decay must be in [0, 1) (0: off; e.g. 0.998)")
    if opts.batch < 1 or opts.accumulate < 1 or opts.batch % opts.accumulate:
        raise UserError(f"--batch {opts.batch} must be a positive multiple of --accumulate "
                        f"{opts.accumulate}")
    device = resolve_device(opts.device)
    if device == "cpu":
        keep_freed_memory()         # 2x faster steps on the CPU (detector/heap.py)
    if opts.workers is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        opts.workers = 0 if cores <= 2 else min(4, cores // 2)
    dist = Dist(device)
    if opts.batch % (opts.accumulate * dist.world):
        raise UserError(f"--batch {opts.batch} must split into --accumulate {opts.accumulate} x "
                        f"{dist.world} processes")
    if device == "cuda":
        torch.cuda.set_device(dist.local_rank)

    train_set = VOCDataset(opts.data, "train")
    names = list(train_set.names)
    try:
        val_set = VOCDataset(opts.data, "val")
    except UserError as e:
        if "split" not in str(e):
            raise
        val_set = None
        log(f"note: {opts.data} has no 'val' split: no validation mAP, best = last")
    if len(train_set) < 1:
        raise UserError(f"{opts.data}: the train split has no usable images")

    if resumed is not None:
        from ..models.spec import spec_from_dict
        spec = spec_from_dict(resumed["spec"], state_path)
        torch.manual_seed(opts.seed)
        model = YOLOv2(spec)
        model.load_state_dict(resumed["model"])
        note = f"resumed from {state_path}"
    else:
        spec, model, note = initial_model(opts, names)
        if opts.anchors == "auto":
            spec = fit_anchors(spec, train_set, opts.seed)
            note += "; anchors " + ", ".join(f"{w:.2f}x{h:.2f}" for w, h in spec.region.anchors)
    size = spec.size
    epochs = opts.epochs or max(1, round(spec.train.max_batches * spec.train.batch / len(train_set)))
    opts.epochs = epochs
    # Same parameters, faster kernels for training: FastDSC's pointwise GEMM as a 1x1 conv
    # and channels-last memory (measured 1.9x faster on a 2-core CPU; docs/performance.md).
    model.set_pointwise("conv")
    model.to(device, memory_format=torch.channels_last)
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if device == "cuda" else None)
    loss_fn = RegionLoss.from_spec(spec).to(device)
    ema = WeightAverage(model, opts.ema) if opts.ema else None
    if opts.optimizer == "adamw":
        optimizer = torch.optim.AdamW(param_groups(model, spec.train.decay), lr=0.0,
                                      betas=(spec.train.momentum, 0.999))
    else:
        optimizer = torch.optim.SGD(param_groups(model, spec.train.decay), lr=0.0,
                                    momentum=spec.train.momentum)
    autocast_dtype = amp_dtype(opts.amp, device)
    scaler = torch.amp.GradScaler("cuda") if autocast_dtype == torch.float16 else None
    micro = opts.batch // (opts.accumulate * dist.world)
    sizes = multiscale_sizes(size) if opts.multiscale else [size]
    # one step = `accumulate` micro-batches on every process; the size is redrawn every 10 steps
    final_epochs = min(opts.final_epochs or (1 if opts.final_size else 0), epochs)
    sampler = MultiScaleBatches(len(train_set), micro, sizes, opts.seed,
                                every=10 * opts.accumulate * dist.world, rank=dist.rank,
                                world=dist.world, final_size=opts.final_size,
                                final_from=epochs - final_epochs)
    # validation, best.safetensors and last.safetensors at --val-size (default: the size the
    # run ends at)
    val_spec = spec.replace(size=opts.val_size or opts.final_size or size)
    steps = len(sampler) // opts.accumulate
    if steps < 1:
        raise UserError(f"{opts.data}: {len(train_set)} training images are fewer than one "
                        f"--batch of {opts.batch}")
    schedule = LRSchedule.from_spec(spec.train, epochs * steps * opts.batch, opts.lr, opts.burn_in,
                                    opts.schedule)
    progress = {"epoch": 0, "step": 0, "seen": 0, "best_map": -1.0, "elapsed": 0.0}
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        if scaler is not None and resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        progress.update(resumed["progress"])
        if ema is not None and resumed.get("ema"):
            ema.load_state_dict(resumed["ema"])
    data = TrainSet(train_set, augment_config(spec, opts), opts.seed)
    if dist.main:
        try:
            os.makedirs(opts.out, exist_ok=True)
        except OSError as e:
            raise UserError(f"--out {opts.out}: cannot create the run directory: "
                            f"{e.strerror or e}") from None
        log(f"train {spec.name}: {len(train_set)} images, {len(names)} classes, {epochs} epochs x "
            f"{steps} steps of {opts.batch} at {size} px"
            f"{' (multi-scale %d..%d)' % (sizes[0], sizes[-1]) if len(sizes) > 1 else ''}"
            f"{', the last %d at %d px' % (final_epochs, opts.final_size) if final_epochs else ''}"
            f"{', validated at %d px' % val_spec.size if val_spec.size != size else ''}"
            f"{', jitter %g' % opts.jitter if opts.jitter is not None else ''}"
            f"{', no HSV distortion' if not opts.hsv else ''} on {device}"
            f"{' x%d processes' % dist.world if dist.world > 1 else ''}"
            f"{', %s autocast' % str(autocast_dtype).split('.')[-1] if autocast_dtype else ''}"
            f"; {note}")
    logger = MetricsLog(opts.out, dist.main and opts.tensorboard, append=resumed is not None,
                        upto_epoch=progress["epoch"]) \
        if dist.main else None
    t_start = time.time() - progress["elapsed"]
    final = {}
    bar = None
    try:
        for epoch in range(progress["epoch"], epochs):
            sampler.set_epoch(epoch, start_batch=progress["step"] * opts.accumulate)
            loader = torch.utils.data.DataLoader(
                data, batch_sampler=sampler, collate_fn=collate, num_workers=opts.workers,
                persistent_workers=False,
                worker_init_fn=functools.partial(_loader_worker, os.getpid()))
            net.train()
            bar = _bar(steps, progress["step"], f"epoch {epoch + 1}/{epochs}", dist.main)
            t_epoch, images_epoch = time.time(), 0
            micro = iter(loader)
            for step in range(progress["step"], steps):
                lr = schedule(progress["seen"])
                for g in optimizer.param_groups:
                    g["lr"] = lr
                parts_acc: Dict[str, float] = {}
                for k in range(opts.accumulate):
                    images, rows = next(micro)
                    images = torch.from_numpy(images).to(device, non_blocking=True).contiguous(
                        memory_format=torch.channels_last)
                    targets = split_targets(rows, len(images))
                    sync = k == opts.accumulate - 1 or dist.world == 1
                    ctx = net.no_sync() if not sync else _null()
                    with ctx:
                        with torch.autocast(device, dtype=autocast_dtype,
                                            enabled=autocast_dtype is not None):
                            raw = net(images)
                        parts = loss_fn(raw.float(), targets, seen=progress["seen"])
                        loss = parts.total / opts.accumulate
                        if scaler is not None:
                            scaler.scale(loss).backward()
                        else:
                            loss.backward()
                    for key, v in parts.as_dict().items():
                        parts_acc[key] = parts_acc.get(key, 0.0) + v / opts.accumulate
                if scaler is not None:
                    scaler.unscale_(optimizer)
                if opts.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), opts.clip_grad)
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(model)
                if not math.isfinite(parts_acc["loss"]):
                    raise UserError(f"training diverged at epoch {epoch + 1} step {step + 1} "
                                    f"(loss {parts_acc['loss']}); lower --lr")
                progress["seen"] += opts.batch
                progress["step"] = step + 1
                images_epoch += opts.batch
                if dist.main:
                    bar.update(1)
                    bar.set_postfix(loss=f"{parts_acc['loss']:.3f}", lr=f"{lr:.2g}",
                                    size=images.shape[-1], refresh=False)
                    logger.step(progress["seen"], lr, parts_acc)
                if opts.save_every and progress["step"] % opts.save_every == 0 \
                        and progress["step"] < steps and dist.main:
                    progress["elapsed"] = time.time() - t_start
                    save_state(state_path, model, optimizer, scaler, progress, opts, spec, ema)
            if dist.main:
                bar.close()
            progress.update(epoch=epoch + 1, step=0, elapsed=time.time() - t_start)
            ips = images_epoch / max(time.time() - t_epoch, 1e-9)
            row = {"epoch": epoch + 1, "seen": progress["seen"], "lr": lr,
                   "minutes": progress["elapsed"] / 60, "images_per_s": ips}
            row.update({k: v for k, v in parts_acc.items()})
            if dist.main:
                last = epoch + 1 == epochs
                with ema.applied(model) if ema is not None else _null():   # EMA weights
                    if val_set is not None and ((epoch + 1) % opts.val_every == 0 or last):
                        from ..eval.evaluate import evaluate_torch_model
                        res = evaluate_torch_model(model, val_spec, val_set, device,
                                                   max_images=opts.max_val_images)
                        row.update(voc07_map=res.voc07_map, voc_map=res.voc_map)
                        if res.voc07_map is not None and res.voc07_map > progress["best_map"]:
                            progress["best_map"] = res.voc07_map
                            save_checkpoint(os.path.join(opts.out, "best.safetensors"),
                                            val_spec, state_numpy(model), names,
                                            {"epoch": str(epoch + 1),
                                             "voc07_map": f"{res.voc07_map:.6f}"})
                    save_checkpoint(os.path.join(opts.out, "last.safetensors"), val_spec,
                                    state_numpy(model), names, {"epoch": str(epoch + 1)})
                    if val_set is None:
                        save_checkpoint(os.path.join(opts.out, "best.safetensors"), val_spec,
                                        state_numpy(model), names, {"epoch": str(epoch + 1)})
                logger.epoch(row)             # before the state: a kill in between leaves a
                save_state(state_path, model, optimizer, scaler, progress, opts, spec, ema)
                log(_epoch_line(row))         # row that a resume drops and writes again
                final = row
            dist.barrier()
    finally:
        if bar is not None:
            bar.close()               # an error message starts on a line of its own
        if logger is not None:
            logger.close()
        dist.close()
    return final


def _loader_worker(trainer_pid: int, _worker_id: int) -> None:
    """Set-up of a loader process. It dies with the trainer: a trainer killed with SIGKILL
    otherwise leaves its workers behind for good, blocked writing batches into a pipe nobody
    reads (PyTorch's own parent check never runs then). And it augments one image at a time
    on one thread, or OpenCV's and torch's thread pools fight the trainer for the cores
    (measured 1.6x slower)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != trainer_pid:          # the trainer died before prctl took effect
            os._exit(1)
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _epoch_line(row: dict) -> str:
    out = (f"epoch {row['epoch']}: loss {row['loss']:.3f} (coord {row['coord']:.3f} obj "
           f"{row['obj']:.3f} noobj {row['noobj']:.3f} cls {row['cls']:.3f}) "
           f"{row['images_per_s']:.1f} img/s, {row['minutes']:.1f} min")
    if row.get("voc07_map") is not None:
        out += f", val VOC07 mAP {row['voc07_map']:.4f} (all-point {row['voc_map']:.4f})"
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _bar(total: int, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False,
                mininterval=1.0, file=sys.stderr, dynamic_ncols=True)


class MetricsLog:
    """``RUN/metrics.csv`` (one row per epoch) and TensorBoard scalars (``RUN/tb``)."""

    FIELDS = ["epoch", "seen", "lr", "loss", "coord", "obj", "noobj", "cls", "prior",
              "avg_iou", "recall50", "images_per_s", "minutes", "voc07_map", "voc_map"]

    def __init__(self, out: str, tensorboard: bool, append: bool, upto_epoch: int = 0):
        """``append``: a resumed run keeps the rows of the epochs its state has completed
        (``upto_epoch``) and drops later ones, written just before a kill."""
        self.path = os.path.join(out, "metrics.csv")
        kept = []
        if append and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(f)
                        if r.get("epoch", "").isdigit() and int(r["epoch"]) <= upto_epoch]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, self.FIELDS, extrasaction="ignore")
                w.writeheader()
                w.writerows(kept)
        self.f = open(self.path, "a", newline="")
        self.csv = csv.DictWriter(self.f, self.FIELDS, extrasaction="ignore")
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(out, "tb"))
            except ImportError:
                pass

    def step(self, seen: int, lr: float, parts: Dict[str, float]) -> None:
        if self.tb is not None:
            self.tb.add_scalar("lr", lr, seen)
            for k, v in parts.items():
                self.tb.add_scalar(f"train/{k}", v, seen)

    def epoch(self, row: dict) -> None:
        try:
            self.csv.writerow(row)
            self.f.flush()
            os.fsync(self.f.fileno())
        except OSError as e:
            from ..errors import FileWriteError
            raise FileWriteError(self.path, e, f"cannot write {self.path}: {e.strerror or e}") \
                from None
        if self.tb is not None:
            for k in ("voc07_map", "voc_map", "images_per_s"):
                if row.get(k) is not None:
                    self.tb.add_scalar(f"val/{k}" if "map" in k else k, row[k], row["seen"])
            self.tb.flush()

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()
