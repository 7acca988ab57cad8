"""``detector distill``: a converted model (the student) learns to reproduce its original (the
teacher) on unlabelled footage.

A :class:`Distiller` is a training run (``detector.train.trainer.Trainer``) with other data,
model and loss, so it has every quality of ``detector train``: the progress bar, the
learning-rate schedule, the weight average, mixed precision, atomic checkpoints, and an exact
``resume`` after a kill (batches, sizes and augmentation are functions of (seed, epoch,
step); the footage is re-read the same way, and the frames of a live source are kept in the
run directory). What differs:

* data: the fit part of the footage (``detector.data.footage``), augmented as training
  images (jitter crop, flip, HSV), no boxes; the held-out part validates;
* model: the student, whose BN statistics stay those of the conversion (batch statistics of
  unlabelled footage would move it away from the teacher); the teacher runs beside it on the
  same augmented batch, in eval mode, without gradients;
* loss: ``DistillLoss`` between the two raw region outputs;
* validation: the agreement (``detector.eval.compare``) of the student with the teacher on
  the held-out part, and mAP there where the footage has labels; the starting student is
  validated first, and ``best`` (also written to ``out``) is the best agreement so far.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..data.footage import Footage, Frame
from ..engine.model_file import LoadedModel, read_model
from ..errors import UserError
from ..eval.compare import agreement, torch_detections
from ..eval.dets import Detections
from ..eval.report import evaluate
from ..io.checkpoint import read_metadata, save_checkpoint
from ..models.checks import check_input_size
from ..models.yolov2 import YOLOv2, load_state, state_numpy
from ..stream.footage import read_footage
from ..train.ema import WeightAverage
from ..train.initial import resumed_model
from ..train.metrics import MetricsLog
from ..train.trainer import Trainer
from .loss import DistillLoss
from .options import DistillOptions, footage_of

FOOTAGE_DIR = "footage"


class DistillLog(MetricsLog):
    FIELDS = ["epoch", "seen", "lr", "loss", "coord", "obj", "noobj", "cls", "images_per_s",
              "minutes", "agreement", "mean_iou", "voc07_map", "voc_map"]


def distill(opts: DistillOptions, log=print, footage: Optional[Tuple[Footage, Footage]] = None
            ) -> dict:
    """Distil; returns the metrics row of the last epoch (``agreement`` on the held-out
    part). ``footage``: (fit, held out) already read from ``opts.data`` as ``read_footage``
    and ``Footage.split`` read them (a new run only)."""
    opts.check()
    return Distiller(opts, log, footage).run()


class Distiller(Trainer):
    """One distillation run: set up by the constructor, run by :meth:`run`."""

    def __init__(self, opts: DistillOptions, log=print,
                 footage: Optional[Tuple[Footage, Footage]] = None):
        self._given_footage = footage if not opts.resume else None
        self.reference = None
        super().__init__(opts.train_options(), log)

    # ---- setup -------------------------------------------------------------------------

    def _setup_data(self) -> None:
        """The footage: fit part to learn from, held-out part to validate on."""
        x = self.opts.extra
        if self._given_footage is not None:
            fit, held = self._given_footage
        else:
            fit, held = self._read_footage(x)
        self._keep_live_frames(fit, held)
        self.train_set, self.val_set = fit, held
        if len(fit) < 1 or len(held) < 1:
            raise UserError(f"{x['footage']}: no frames to fit or to validate on")

    def _read_footage(self, x: dict) -> Tuple[Footage, Footage]:
        saved = os.path.join(self.opts.out, FOOTAGE_DIR, "index.json")
        if os.path.isfile(saved):
            return load_footage(saved)
        footage = read_footage(footage_of(x), int(x["frames"]), x.get("split") or None,
                               self.opts.seed)
        return footage.split(float(x["holdout"]), self.opts.seed)

    def _keep_live_frames(self, fit: Footage, held: Footage) -> None:
        """Write the frames of live sources into the run directory (a resumed run reads
        them from there: a camera does not show the same frames twice)."""
        if any(f.live for f in fit.frames + held.frames):
            path = os.path.join(self.opts.out, FOOTAGE_DIR, "index.json")
            if not os.path.isfile(path):
                save_footage(path, fit, held)

    def _setup_model(self) -> None:
        """Student (trained), teacher (fixed), loss, weight average."""
        o = self.opts
        if self.resumed is not None:
            self.spec, self.model = resumed_model(self.resumed, self.state_path, o.seed)
            self.note = f"resumed from {self.state_path}"
        else:
            student = _read(o.weights, o.cfg, "student")
            self.spec = student.spec.replace(size=check_input_size(o.img_size)) \
                if o.img_size else student.spec
            self.spec.names = list(student.names)
            torch.manual_seed(o.seed)
            self.model = load_state(YOLOv2(self.spec), student.state)
            self.note = f"student {o.weights}"
        self.names = self.spec.class_names()
        self.kept_meta = _conversion_record(o.weights)
        teacher = _read(o.extra["teacher"], o.extra.get("teacher_cfg") or None, "teacher")
        _check_pair(teacher, self.spec, o.extra["teacher"])
        self.epochs = o.epochs
        self.model.set_pointwise("conv")
        self.model.to(self.device, memory_format=torch.channels_last)
        self.net = self.model
        self.teacher = load_state(YOLOv2(teacher.spec, pointwise="conv"), teacher.state)
        self.teacher.eval().requires_grad_(False)
        self.teacher.to(self.device, memory_format=torch.channels_last)
        self.note += f"; teacher {o.extra['teacher']}"
        region = self.spec.region
        self.loss_fn = DistillLoss(len(region.anchors), self.spec.classes)
        self.ema = WeightAverage(self.model, o.ema) if o.ema else None

    def _open_run(self) -> None:
        o = self.opts
        try:
            os.makedirs(o.out, exist_ok=True)
        except OSError as e:
            raise UserError(f"{o.out}: cannot create the run directory: "
                            f"{e.strerror or e}") from None
        self.log(self._describe())
        self.logger = DistillLog(o.out, False, append=self.resumed is not None,
                                 upto_epoch=self.progress["epoch"])

    def _describe(self) -> str:
        o = self.opts
        return (f"distill {self.spec.name}: {len(self.train_set)} frames to fit, "
                f"{len(self.val_set)} held out ({self.train_set.describe()}), {self.epochs} "
                f"epochs x {self.steps} steps of {o.batch} at {self.spec.size} px on "
                f"{self.device}; {self.note}")

    # ---- the loop ----------------------------------------------------------------------

    def run(self) -> dict:
        """Validate the starting student (a new run), then train the remaining epochs."""
        if self.resumed is None and self.progress["epoch"] == 0 and self.dist.main:
            row: Dict[str, float] = {}
            self._validate(row)
            self.progress["best_map"] = row["score"]
            self.save_weights("best.safetensors", {"epoch": "0", **self._meta(row)})
            self.log(f"start: {_line(row)}")
        row = super().run()
        row["best_agreement"] = self.progress["best_map"]
        return row

    def _micro_batch(self, images, rows, sync: bool) -> Dict[str, float]:
        """Teacher and student on the same augmented batch; the loss between their raw
        outputs, backward."""
        images = torch.from_numpy(images).to(self.device, non_blocking=True).contiguous(
            memory_format=torch.channels_last)
        _freeze_bn(self.model)
        with self.net.no_sync() if not sync else contextlib.nullcontext():
            with torch.autocast(self.device, dtype=self.autocast_dtype,
                                enabled=self.autocast_dtype is not None):
                with torch.no_grad():
                    target = self.teacher(images)
                raw = self.net(images)
            parts = self.loss_fn(raw.float(), target.float())
            self._backward(parts.total)
        return parts.as_dict()

    # ---- epoch end ---------------------------------------------------------------------

    def end_epoch(self, epoch: int, row: dict) -> None:
        """Validate and write the weights (averaged, when there is an average), then the
        metrics row, then the training state."""
        with self.ema.applied(self.model) if self.ema is not None else contextlib.nullcontext():
            self.validate(epoch, row)
            self.save_weights("last.safetensors", {"epoch": str(epoch + 1)})
        self.logger.epoch(row)
        self.save_state()
        self.log(f"epoch {row['epoch']}: loss {row['loss']:.4f} (coord {row['coord']:.4f} "
                 f"obj {row['obj']:.4f} noobj {row['noobj']:.4f} cls {row['cls']:.4f}) "
                 f"{row['images_per_s']:.1f} img/s, {row['minutes']:.1f} min"
                 + (f", {_line(row)}" if "agreement" in row else ""))

    def validate(self, epoch: int, row: dict) -> None:
        """Agreement with the teacher on the held-out part (and mAP where it has labels)
        every ``val_every`` epochs and after the last; a new best is written as
        ``best.safetensors`` and ``out``."""
        last = epoch + 1 == self.epochs
        if not ((epoch + 1) % self.opts.val_every == 0 or last):
            return
        self._validate(row)
        if row["score"] > self.progress["best_map"]:
            self.progress["best_map"] = row["score"]
            self.save_weights("best.safetensors", {"epoch": str(epoch + 1), **self._meta(row)})

    def _validate(self, row: dict) -> None:
        size = self.val_spec.size
        if self.reference is None:
            self.reference = torch_detections(self.teacher, self.val_spec, self.val_set, size,
                                              self.device)
        found = torch_detections(self.model, self.val_spec, self.val_set, size, self.device)
        res = agreement(self.reference, found, self.names)
        row.update(agreement=res.agreement, mean_iou=res.mean_iou)
        # no box of the teacher: fall back to the student's recall of nothing, i.e. 0
        row["score"] = res.agreement if res.agreement is not None else 0.0
        if self.val_set.labelled:
            dets = Detections()
            for i, d in enumerate(found):
                dets.add_detections(self.val_set.frames[i].id, d)
            gts = [self.val_set.annotations(i) for i in range(len(self.val_set))]
            m = evaluate(gts, dets, self.names, coco=False)
            row.update(voc07_map=m.voc07_map, voc_map=m.voc_map)

    def _meta(self, row: dict) -> Dict[str, str]:
        return {**self.kept_meta,
                "distill": json.dumps({"teacher": self.opts.extra["teacher"],
                                       "footage": footage_of(self.opts.extra),
                                       "agreement": row.get("agreement"),
                                       "mean_iou": row.get("mean_iou")})}

    # ---- checkpoints -------------------------------------------------------------------

    def save_weights(self, name: str, meta: Dict[str, str]) -> None:
        """``RUN/name``; the best also as the distillation's output file."""
        state = state_numpy(self.model)
        save_checkpoint(os.path.join(self.opts.out, name), self.val_spec, state, self.names,
                        meta)
        if name == "best.safetensors":
            save_checkpoint(self.opts.extra["distilled"], self.val_spec, state, self.names, meta)


def _line(row: dict) -> str:
    out = f"agreement {_f(row.get('agreement'))} (mean IoU {_f(row.get('mean_iou'))})"
    if row.get("voc07_map") is not None:
        out += f", VOC07 mAP {row['voc07_map']:.4f}"
    return out


def _f(v) -> str:
    return "-" if v is None else f"{v:.4f}"


def _read(weights: str, cfg: Optional[str], role: str) -> LoadedModel:
    model = read_model(weights, cfg)
    if model.state is None:
        raise UserError(f"{weights}: a lowered plan cannot be the {role}; use the checkpoint "
                        "it came from")
    return model


def _conversion_record(weights: str) -> Dict[str, str]:
    """The ``convert`` metadata of a converted student checkpoint (kept in what it
    becomes)."""
    if not weights.endswith(".safetensors") or not os.path.isfile(weights):
        return {}
    meta = read_metadata(weights)
    return {"convert": meta["convert"]} if "convert" in meta else {}


def _check_pair(teacher: LoadedModel, spec, source: str) -> None:
    """The teacher's raw output must mean what the student's means."""
    if teacher.spec.classes != spec.classes:
        raise UserError(f"{source} has {teacher.spec.classes} classes, the student "
                        f"{spec.classes}")
    ta = np.asarray(teacher.spec.region.anchors, np.float64)
    sa = np.asarray(spec.region.anchors, np.float64)
    if ta.shape != sa.shape or not np.allclose(ta, sa):
        raise UserError(f"{source}: the teacher's anchors differ from the student's; "
                        "distillation matches raw outputs, which need the same anchors")


def _freeze_bn(model: torch.nn.Module) -> None:
    """Batch-norm layers in eval mode: their statistics stay the converted model's."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


# ---- live frames kept in the run ----------------------------------------------------------

def save_footage(path: str, fit: Footage, held: Footage) -> None:
    """The footage of a run as ``path`` (JSON: ids, groups, paths) beside PNGs of the
    frames held in memory."""
    import cv2
    from ..io.atomic import atomic_write_bytes
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    index = {}
    for part, footage in (("fit", fit), ("held", held)):
        rows = []
        for k, f in enumerate(footage.frames):
            png = None
            if f.image is not None:
                png = f"{part}-{k:06d}.png"
                ok, buf = cv2.imencode(".png", f.image)
                if not ok:
                    raise UserError(f"{folder}: cannot encode a frame of {f.id}")
                atomic_write_bytes(os.path.join(folder, png), buf.tobytes())
            rows.append({"id": f.id, "group": f.group, "path": f.path, "png": png,
                         "live": f.live})
        index[part] = rows
    index["names"] = fit.names
    atomic_write_bytes(path, json.dumps(index).encode())


def load_footage(path: str) -> Tuple[Footage, Footage]:
    """The (fit, held out) footage written by ``save_footage``."""
    from ..data.voc import read_image
    folder = os.path.dirname(path)
    with open(path, encoding="utf-8") as f:
        index = json.load(f)
    parts = []
    for part in ("fit", "held"):
        frames = []
        for r in index[part]:
            image = None
            if r["png"]:
                image = read_image(os.path.join(folder, r["png"]))
                if image is None:
                    raise UserError(f"{folder}: frame {r['png']} is missing or unreadable")
            frames.append(Frame(r["id"], r["group"], r["path"], image, None, r["live"]))
        parts.append(Footage(frames, index.get("names")))
    return parts[0], parts[1]
