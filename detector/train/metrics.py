"""What a run reports: ``RUN/metrics.csv`` (one row per epoch, after a ``# recipe ...``
comment line naming the recipe the run trains with), TensorBoard scalars (``RUN/tb``), the
epoch line on stdout and the progress bar of the steps on stderr."""
from __future__ import annotations

import csv
import os
import sys
from typing import Dict, Optional

from tqdm import tqdm

from ..errors import FileWriteError
from ..io.atomic import atomic_path


class MetricsLog:
    """``RUN/metrics.csv`` (one row per epoch) and TensorBoard scalars (``RUN/tb``)."""

    FIELDS = ["epoch", "seen", "lr", "loss", "coord", "obj", "noobj", "cls", "prior",
              "avg_iou", "recall50", "images_per_s", "minutes", "voc07_map", "voc_map"]

    def __init__(self, out: str, tensorboard: bool, append: bool, upto_epoch: int = 0,
                 comment: Optional[str] = None):
        """``append``: a resumed run keeps the rows of the epochs its state has completed
        (``upto_epoch``) and drops later ones, written just before a kill. ``comment``: a
        line written as ``# comment`` before the column names (readers that take ``#`` as
        a comment, e.g. ``pandas.read_csv(path, comment="#")``, skip it)."""
        self.path = os.path.join(out, "metrics.csv")
        kept = []
        if append and os.path.exists(self.path):
            with open(self.path, newline="") as f:
                kept = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))
                        if r.get("epoch", "").isdigit() and int(r["epoch"]) <= upto_epoch]
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                if comment:
                    f.write("# " + " ".join(comment.split()) + "\n")
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


def epoch_line(row: dict) -> str:
    """The line a finished epoch prints: loss and its parts, speed, time, validation mAP."""
    out = (f"epoch {row['epoch']}: loss {row['loss']:.3f} (coord {row['coord']:.3f} obj "
           f"{row['obj']:.3f} noobj {row['noobj']:.3f} cls {row['cls']:.3f}) "
           f"{row['images_per_s']:.1f} img/s, {row['minutes']:.1f} min")
    if row.get("voc07_map") is not None:
        out += f", val VOC07 mAP {row['voc07_map']:.4f} (all-point {row['voc_map']:.4f})"
    return out


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """The steps of an epoch on stderr (tqdm; off on every process but the main one)."""
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=False,
                mininterval=1.0, file=sys.stderr, dynamic_ncols=True)
