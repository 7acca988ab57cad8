"""What a distillation is asked to do: :class:`DistillOptions` and the checks of its values.

A distillation is a training run (``detector.train``'s ``Trainer``), so the options become
``TrainOptions`` (``train_options``) whose ``extra`` carries what only distillation has
(teacher, footage, output file); the training state saves them, and ``resume`` continues a
run with the options it was started with.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from ..errors import ParamError
from ..models.checks import check_input_size
from ..train.options import TrainOptions

RUN_SUFFIX = ".distill"
DEFAULT_EPOCHS = 30


@dataclass
class DistillOptions:
    """``teacher``: the original model (weights as ``read_model`` takes them, with
    ``teacher_cfg`` for darknet files); ``student``: the model that learns (a converted
    checkpoint); ``data``: one FOOTAGE text or several (``detector.stream.footage``);
    ``out``: the best student (``.safetensors``, by agreement on the held-out part).

    ``frames``: frames drawn from each FOOTAGE text; ``holdout``: the fraction held out for
    validation (never trained on); ``split``: of a dataset YAML. ``run_dir``: the training
    state, ``metrics.csv`` and ``last.safetensors`` (default: ``out`` without its extension
    plus ``.distill``). The rest as for ``detector train``: the augmentation is the
    student's spec's (``jitter``, ``hsv`` override it)."""
    out: str
    teacher: Optional[str] = None
    student: Optional[str] = None
    data: Union[str, List[str], None] = None
    teacher_cfg: Optional[str] = None
    student_cfg: Optional[str] = None
    epochs: Optional[int] = None          # default DEFAULT_EPOCHS; a resumed run keeps its own
    batch: int = 8
    img_size: Optional[int] = None
    frames: int = 400
    holdout: float = 0.2
    split: Optional[str] = None
    run_dir: Optional[str] = None
    lr: float = 5e-4
    burn_in: float = 0.05
    optimizer: str = "adamw"
    schedule: str = "cosine"
    ema: float = 0.0
    jitter: Optional[float] = None
    hsv: bool = True
    multiscale: bool = False
    device: Optional[str] = None
    workers: Optional[int] = None
    amp: str = "auto"
    seed: int = 0
    save_every: int = 0
    val_every: int = 1
    resume: bool = False

    @property
    def texts(self) -> List[str]:
        if not self.data:
            return []
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def run(self) -> str:
        if self.run_dir:
            return self.run_dir
        return os.path.splitext(self.out)[0] + RUN_SUFFIX

    def check(self) -> None:
        """Raise :class:`ParamError` naming the first field with a bad value (the training
        fields are checked again as ``TrainOptions``)."""
        if not isinstance(self.out, str) or not self.out.endswith(".safetensors"):
            raise ParamError("out", "expected a .safetensors path", value=self.out)
        if not self.resume and not (self.texts and self.teacher and self.student):
            raise ParamError("data" if not self.texts else "teacher" if not self.teacher
                             else "student", "needed to start a distillation")
        for name in ("epochs", "batch", "frames"):
            v = getattr(self, name)
            if v is None and name == "epochs":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParamError(name, "must be a positive integer", value=v)
        if not 0.0 < self.holdout < 1.0:
            raise ParamError("holdout", "must be a fraction in (0, 1)", value=self.holdout)
        if self.img_size is not None:
            check_input_size(self.img_size)

    def train_options(self) -> TrainOptions:
        """The training run this distillation is."""
        extra = {"teacher": self.teacher, "teacher_cfg": self.teacher_cfg or "",
                 "footage": json.dumps(self.texts), "frames": str(self.frames),
                 "holdout": repr(float(self.holdout)), "split": self.split or "",
                 "distilled": self.out}
        return TrainOptions(
            data=(self.texts or [""])[0], out=self.run, weights=self.student,
            cfg=self.student_cfg, epochs=self.epochs or (None if self.resume else DEFAULT_EPOCHS),
            batch=self.batch, img_size=self.img_size,
            multiscale=self.multiscale, jitter=self.jitter, hsv=self.hsv, lr=self.lr,
            burn_in=self.burn_in, device=self.device, workers=self.workers, seed=self.seed,
            val_every=self.val_every, save_every=self.save_every, optimizer=self.optimizer,
            schedule=self.schedule, ema=self.ema, amp=self.amp, tensorboard=False,
            resume=self.resume, extra=extra)


def footage_of(extra: dict) -> Sequence[str]:
    """The FOOTAGE texts a run's options hold."""
    return json.loads(extra["footage"])
