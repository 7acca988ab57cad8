"""The training batches of a run, as torch tensors: the augmentation settings of the run,
the DataLoader of an epoch and the per-image targets the region loss takes.

What a batch holds is a function of (seed, epoch, step) alone (``detector.data.batches``):
the number of loader processes, and stopping and resuming, do not change it.
"""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from typing import List

import numpy as np
import torch

from ..data.augment import AugmentConfig
from ..data.batches import MultiScaleBatches, TrainSet, collate
from .options import TrainOptions


def augment_config(spec, opts: TrainOptions) -> AugmentConfig:
    """The spec's darknet augmentation with the run's ``jitter`` / ``hsv`` / ``mosaic``
    applied."""
    overrides = {} if opts.hsv else dict(hue=0.0, saturation=1.0, exposure=1.0)
    overrides["mosaic"] = float(opts.mosaic or 0.0)
    if opts.jitter is not None:
        overrides["jitter"] = float(opts.jitter)
    return AugmentConfig.from_spec(spec, **overrides)


def epoch_loader(data: TrainSet, sampler: MultiScaleBatches, workers: int):
    """The DataLoader of the epoch ``sampler`` is set to."""
    return torch.utils.data.DataLoader(
        data, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
        persistent_workers=False, worker_init_fn=functools.partial(_loader_worker, os.getpid()))


def split_targets(rows: np.ndarray, batch: int) -> List[torch.Tensor]:
    """``[M, 6]`` rows (image, class, cx, cy, w, h) -> per image ``[n, 5]`` tensors."""
    t = torch.from_numpy(rows)
    return [t[t[:, 0] == b, 1:] for b in range(batch)]


def _loader_worker(trainer_pid: int, _worker_id: int) -> None:
    """Set-up of a loader process. It dies with the trainer: a trainer killed with SIGKILL
    otherwise leaves its workers behind for good, blocked writing batches into a pipe nobody
    reads (PyTorch's own parent check never runs then). And it augments one image at a time
    on one thread, or OpenCV's and torch's thread pools fight the trainer for the cores."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != trainer_pid:          # the trainer died before prctl took effect
            os._exit(1)
    import cv2
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
