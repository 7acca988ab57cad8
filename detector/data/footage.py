"""Footage: the frames a model is calibrated, distilled or compared on; labels never needed.

A FOOTAGE text is one of

    data.yaml            a dataset YAML: the images of one split (default ``train``, else the
                         first split); annotations are not needed, and are kept (for mAP)
                         where the split has them
    DIR, 'a/*.jpg', IMG  a folder (sorted), a glob or one image
    clip.mp4             a video file: ``count`` frames spread evenly over the video
    0, /dev/videoN, rtsp://, http(s)://, csi://N, gst:PIPELINE
                         a camera or stream: its first ``count`` distinct frames

This module holds the frames (:class:`Footage`) and reads what the data layer owns (dataset
YAMLs, image files). Video files and live sources are opened through the source grammar of
``detector.stream`` (``detector.stream.footage``), which feeds their frames to
:func:`spread_frames` and :func:`distinct_frames` here.

Frames of one video or live source form a *group* (they are in time order, and neighbours
look alike); images are independent. :meth:`Footage.split` holds out a part that is never
used for fitting: the last frames of each group in time, and a seeded sample of the
independent images.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import ParamError, UserError
from .dataset import default_split, load_config, open_dataset, split_has_labels, split_images
from .split import Annotation, Sample
from .images import read_image

DATASET_EXTS = (".yaml", ".yml")
MAX_SIDE = 1280          # frames kept in memory (video, live) are shrunk to this longer side
THUMB = 32               # side of the grey thumbnail that tells distinct live frames apart
MIN_CHANGE = 2.0         # mean absolute thumbnail difference (0-255) of a distinct frame
DEFAULT_HOLDOUT = 0.2    # fraction of the footage held out for judging

ReadFrame = Callable[[], Optional[np.ndarray]]     # next BGR frame, or None at the end


class Frame(NamedTuple):
    """One frame of footage: read from ``path`` on use, or held in memory as ``image``."""
    id: str                              # the image path, or "SOURCE#index" for video/live
    group: Optional[str] = None          # the video/live source it belongs to (time order)
    path: Optional[str] = None
    image: Optional[np.ndarray] = None   # BGR uint8
    annotation: Optional[Annotation] = None
    live: bool = False                   # from a camera or stream (not seen twice)


class Footage:
    """Frames (BGR uint8 on access) with optional ground truth. As a dataset it yields
    :class:`detector.data.voc.Sample` items without boxes (``TrainSet`` augments them)."""

    def __init__(self, frames: Sequence[Frame], names: Optional[Sequence[str]] = None,
                 about: str = ""):
        self.frames = list(frames)
        self.names = list(names) if names else None
        self.about = about

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def image_ids(self) -> List[str]:
        return [f.id for f in self.frames]

    @property
    def labelled(self) -> bool:
        """True when every frame has ground truth (and the footage has class names)."""
        return bool(self.frames) and self.names is not None and \
            all(f.annotation is not None for f in self.frames)

    def image(self, i: int) -> np.ndarray:
        f = self.frames[i]
        if f.image is not None:
            return f.image
        image = read_image(f.path)
        if image is None:
            raise UserError(f"{f.path}: cannot read the image (missing, corrupt or not an "
                            "image)")
        return image

    def annotations(self, i: int) -> Annotation:
        a = self.frames[i].annotation
        if a is None:
            raise UserError(f"{self.frames[i].id}: no ground truth for this frame")
        return a._replace(image_id=self.frames[i].id)

    def __getitem__(self, i: int) -> Sample:
        return Sample(self.image(int(i)), np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                      np.zeros(0, bool), self.frames[int(i)].id)

    def subset(self, indices: Iterable[int]) -> "Footage":
        return Footage([self.frames[int(i)] for i in indices], self.names, self.about)

    def split(self, holdout: float = DEFAULT_HOLDOUT, seed: int = 0
              ) -> Tuple["Footage", "Footage"]:
        """(fit, held out): see :func:`holdout_indices`."""
        fit, held = holdout_indices([f.group for f in self.frames], holdout, seed)
        return self.subset(fit), self.subset(held)

    def describe(self) -> str:
        groups = {f.group for f in self.frames if f.group is not None}
        images = sum(f.group is None for f in self.frames)
        parts = [f"{len(self)} frames"]
        if groups:
            parts.append(f"{len(self) - images} from {len(groups)} video/live "
                         f"source{'s' if len(groups) != 1 else ''}")
        if images and groups:
            parts.append(f"{images} images")
        if self.labelled:
            parts.append("labelled")
        return ", ".join(parts) + (f" ({self.about})" if self.about else "")


def concat(parts: Sequence[Footage]) -> Footage:
    """One footage of several; class names kept when every part has the same."""
    names = [p.names for p in parts]
    same = names[0] if names and all(n == names[0] for n in names) else None
    return Footage([f for p in parts for f in p.frames], same,
                   ", ".join(p.about for p in parts if p.about))


def holdout_indices(groups: Sequence[Optional[str]], holdout: float, seed: int = 0
                    ) -> Tuple[List[int], List[int]]:
    """(fit, held-out) positions: ``holdout`` of each video/live group is held out as its
    last frames in time (its neighbours in time are not held out with it, so fitting never
    sees frames next to those judged, except at one cut per group); of the independent
    images (group None) a seeded ``holdout`` sample. At least one frame is held out and one
    fitted."""
    if not 0.0 < holdout < 1.0:
        raise ParamError("holdout", "must be a fraction in (0, 1)", value=holdout)
    n = len(groups)
    if n < 2:
        raise UserError(f"footage of {n} frame{'s' if n != 1 else ''}: at least 2 are needed "
                        "to hold some out for judging")
    held: List[int] = []
    order: dict = {}
    for i, g in enumerate(groups):
        order.setdefault(g, []).append(i)
    for g, idx in order.items():
        k = int(holdout * len(idx) + 1e-9)
        if g is None:
            rng = np.random.default_rng([int(seed), 17])
            held += [idx[j] for j in rng.permutation(len(idx))[:k]]
        elif k:
            held += idx[len(idx) - k:]
    if not held:                    # tiny footage: the last frame
        held = [n - 1]
    if len(held) == n:
        held = held[1:]
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held_set)


# ---- files ---------------------------------------------------------------------------------

def is_dataset_yaml(text: str) -> bool:
    return isinstance(text, str) and "://" not in text and \
        text.lower().endswith(DATASET_EXTS)


def pick(n: int, count: int, seed: int) -> List[int]:
    """``count`` of ``n`` positions drawn (seeded) and sorted; all when ``count >= n``."""
    if count >= n:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(seed).choice(n, count, replace=False))


def image_footage(paths: Sequence[str], count: int, seed: int = 0, about: str = "") -> Footage:
    """``count`` of the image files ``paths`` (seeded), read on use."""
    return Footage([Frame(p, None, p) for p in (paths[i] for i in pick(len(paths), count,
                                                                       seed))], about=about)


def dataset_footage(path: str, count: int, split: Optional[str] = None,
                    seed: int = 0) -> Footage:
    """``count`` images of one split of a dataset YAML (any layout ``detector.data.dataset``
    reads; default split ``train``, else the first), seeded, with their ground truth where
    the split has labels."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such dataset YAML")
    cfg = load_config(path)
    split = split or default_split(cfg)
    about = f"{path}, split {split}"
    if split_has_labels(cfg, split):
        ds = open_dataset(cfg, split)
        if len(ds) == 0:
            raise UserError(f"{path}: split {split!r} has no usable images")
        frames = [Frame(ds.image_path(i), None, ds.image_path(i), None, ds.annotations(i))
                  for i in pick(len(ds), count, seed)]
        return Footage(frames, ds.names, about)
    return image_footage(split_images(cfg, split)[1], count, seed, about)


# ---- frames of a stream ----------------------------------------------------------------

def shrink(image: np.ndarray, max_side: Optional[int] = MAX_SIDE) -> np.ndarray:
    """The frame with its longer side at most ``max_side`` (area filter), else itself."""
    import cv2
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


def spread_frames(read: ReadFrame, length: int, count: int, source: str,
                  max_side: Optional[int] = MAX_SIDE) -> List[Frame]:
    """``count`` frames spread evenly over a stream of ``length`` frames (read in order; a
    stream that ends early gives fewer)."""
    want = sorted({int(round(x)) for x in np.linspace(0, max(length - 1, 0), min(count, length))})
    frames, i, at = [], 0, 0
    while at < len(want):
        image = read()
        if image is None:
            break
        if i == want[at]:
            frames.append(Frame(f"{source}#{i}", source, None, shrink(image, max_side)))
            at += 1
        i += 1
    return frames


def thumbnail(image: np.ndarray) -> np.ndarray:
    import cv2
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def distinct_frames(read: ReadFrame, count: int, source: str, max_reads: Optional[int] = None,
                    timeout_s: float = 60.0, min_change: float = MIN_CHANGE,
                    max_side: Optional[int] = MAX_SIDE) -> List[Frame]:
    """The first ``count`` distinct frames of a stream: a frame is kept when its grey
    thumbnail differs from that of every frame kept so far by more than ``min_change``
    (mean absolute difference, 0-255), so a looping or frozen source does not give the same
    picture twice. Stops at the end of the stream, after ``max_reads`` frames (default
    ``20 * count + 100``) or ``timeout_s`` seconds, with what it has."""
    max_reads = max_reads or 20 * count + 100
    kept: List[Frame] = []
    thumbs: List[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    for i in range(max_reads):
        if len(kept) >= count or time.monotonic() > deadline:
            break
        image = read()
        if image is None:
            break
        t = thumbnail(image)
        if all(float(np.abs(t - u).mean()) > min_change for u in thumbs):
            thumbs.append(t)
            kept.append(Frame(f"{source}#{i}", source, None, shrink(image, max_side), None,
                              True))
    return kept


def check_count(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParamError("count", "must be a positive integer", value=count)
    return count
