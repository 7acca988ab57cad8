"""Synthetic video clips with their true tracks (``detector synth OUT --clip N``).

The shapes, colours and background of the still dataset (``synth.py``), now moving over a
fixed background, in scenes made to test a tracker:

- a *crossing pair*: two objects on one horizontal band moving in opposite directions and
  bouncing off the sides, so they pass each other (one in front, hiding the other) again and
  again; a second pair does the same on a vertical band, across the first one's path;
- *free movers*: objects moving diagonally and bouncing;
- a *post*: a vertical strip of another background in front of everything (not an object),
  that hides objects passing behind it, wholly for a few frames where it is wider than them.

Ground truth (:func:`clip_scenes`) follows the still dataset's rules: the box of an object is
tight around its *visible* pixels (0-based pixel coordinates), ``visibility`` is its visible
fraction (occlusion and the frame border both hide), an object with less than
``drop_visible`` visible is not listed, and one with less than ``difficult_visible`` visible
is listed as ignored (``conf`` 0 in ``gt.txt``, like a difficult VOC object). The track id of
an object is its index + 1; objects are never created or destroyed mid-clip.

Training images (:func:`clip_stills`, ``detector synth --clip-images``): frames of other
clips (their own random stream), labelled as the still dataset labels its images, so that a
model sees the crossings and the post before it is asked to track through them.

Deterministic: the same (frames, size, seed) give the same frames and truth.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Iterator, List, NamedTuple, Optional, Tuple, Union

import numpy as np

from ..errors import UserError
from ..io.mot import MotRow, write_mot
from .shapes import CLASSES, DEFAULT, Shape, SynthConfig, SynthObject, background, clutter, \
    image_rng, make_shape, paint, random_colour


class ClipObject(NamedTuple):
    """The truth of one object in one frame; ``box`` is (x1, y1, x2, y2) in pixels around
    its visible pixels."""
    track_id: int
    label: int
    box: Tuple[float, float, float, float]
    visibility: float
    ignored: bool

    @property
    def name(self) -> str:
        return CLASSES[self.label]


@dataclass
class _Mover:
    shape: Shape
    pos: np.ndarray
    vel: np.ndarray
    paint_seed: int


def _paint_seed(rng: np.random.Generator, backdrop: np.ndarray, min_contrast: float) -> int:
    """A seed for ``paint`` whose colour (its first draw) stands out from the background
    everywhere the object may go: the still dataset picks a contrasting colour per image;
    a moving object keeps one colour, so it is picked against the whole background."""
    best, best_q = 0, -1.0
    for _ in range(64):
        seed = int(rng.integers(0, 2 ** 31))
        colour = random_colour(np.random.default_rng(seed))
        q = float(np.quantile(np.linalg.norm(backdrop - colour, axis=1), 0.1))
        if q > best_q:
            best, best_q = seed, q
        if q >= min_contrast:
            break
    return best


def _mover(rng: np.random.Generator, s: float, backdrop: np.ndarray, cfg: SynthConfig, pos, vel
           ) -> _Mover:
    cls = int(rng.integers(0, len(CLASSES)))
    extent = rng.uniform(0.14, 0.26) * s
    shape = make_shape(cls, 0.0, 0.0, extent, rng.uniform(0.75, 1.33), rng)
    return _Mover(shape, np.array(pos, float), np.array(vel, float),
                  _paint_seed(rng, backdrop, cfg.min_contrast))


def _movers(rng: np.random.Generator, w: int, h: int, bg: np.ndarray, cfg: SynthConfig
            ) -> Tuple[List[_Mover], float]:
    """Two crossing pairs (one horizontal, one vertical) and one or two free movers; and the
    x of the vertical pair's band."""
    s = float(min(w, h))
    backdrop = bg[::max(1, h // 32), ::max(1, w // 32)].reshape(-1, 3)
    out = []
    y = rng.uniform(0.35, 0.65) * h
    speed = rng.uniform(0.012, 0.022, 2) * s
    out.append(_mover(rng, s, backdrop, cfg, (0.15 * w, y), (speed[0], 0.0)))
    out.append(_mover(rng, s, backdrop, cfg, (0.85 * w, y + rng.uniform(-0.04, 0.04) * s), (-speed[1], 0.0)))
    side = 1.0 if rng.random() < 0.5 else -1.0
    x = (0.5 + side * rng.uniform(0.12, 0.22)) * w
    speed = rng.uniform(0.012, 0.022, 2) * s
    out.append(_mover(rng, s, backdrop, cfg, (x, 0.15 * h), (0.0, speed[0])))
    out.append(_mover(rng, s, backdrop, cfg, (x + rng.uniform(-0.04, 0.04) * s, 0.85 * h), (0.0, -speed[1])))
    for _ in range(int(rng.integers(1, 3))):
        a = rng.uniform(0, 2 * np.pi)
        v = rng.uniform(0.01, 0.02) * s
        out.append(_mover(rng, s, backdrop, cfg, rng.uniform(0.2, 0.8, 2) * [w, h],
                          (v * math.cos(a), v * math.sin(a))))
    order = rng.permutation(len(out))          # depth: who passes in front of whom
    return [out[i] for i in order], x


def _post(rng: np.random.Generator, w: int, h: int, band: float
          ) -> Tuple[np.ndarray, np.ndarray]:
    """The occluding post, away from the vertical pair's ``band``: its image (another
    background) and its mask."""
    s = float(min(w, h))
    width = rng.uniform(0.16, 0.24) * s
    side = -1.0 if band > 0.5 * w else 1.0
    x0 = (0.5 + side * rng.uniform(0.1, 0.2)) * w - width / 2
    cols = np.arange(w, dtype=np.float64) + 0.5
    mask = np.broadcast_to((cols >= x0) & (cols < x0 + width), (h, w))
    return background(rng, h, w), np.ascontiguousarray(mask)


def _step(m: _Mover, w: int, h: int) -> None:
    m.pos += m.vel
    for k, lim in ((0, w), (1, h)):
        if (m.pos[k] < 0.1 * lim and m.vel[k] < 0) or (m.pos[k] > 0.9 * lim and m.vel[k] > 0):
            m.vel[k] = -m.vel[k]


def _truth(movers: List[_Mover], masks: List[np.ndarray], post: np.ndarray,
           cfg: SynthConfig) -> List[ClipObject]:
    """Visible boxes front to back: the post hides everything, later movers earlier ones."""
    above = post.copy()
    out = []
    for i in range(len(movers) - 1, -1, -1):
        m, cover = movers[i], masks[i]
        vis = cover & ~above
        above |= cover
        full = max(m.shape.moved(*m.pos).area(), 1.0)
        nvis = int(vis.sum())
        if nvis < 9 or nvis / full < cfg.drop_visible:
            continue
        ys, xs = np.nonzero(vis)
        box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        frac = min(nvis / full, 1.0)
        out.append(ClipObject(i + 1, m.shape.cls, box, frac, frac < cfg.difficult_visible))
    return sorted(out)


def clip_scenes(frames: int = 90, size: Union[int, Tuple[int, int]] = 256, seed: int = 0,
                cfg: SynthConfig = DEFAULT, training: int = -1
                ) -> Iterator[Tuple[np.ndarray, List[ClipObject]]]:
    """Yield ``frames`` (BGR frame, its objects' truth) pairs of a synthetic clip: the clip
    of ``seed``, or where ``training`` >= 0, training clip number ``training`` of ``seed``
    (another random stream, so that no training clip is a clip of any seed)."""
    w, h = (size, size) if isinstance(size, int) else size
    rng = image_rng(seed, "clip", 0) if training < 0 else image_rng(seed, "clip-train", training)
    bg = background(rng, h, w)
    clutter(bg, rng, 6)
    movers, band = _movers(rng, w, h, bg, cfg)
    cfg = replace(cfg, min_contrast=0.0)     # paint keeps the colour picked: no flicker
    post_img, post = _post(rng, w, h, band)
    for _ in range(frames):
        img = bg.copy()
        masks = [paint(img, m.shape.moved(*m.pos), np.random.default_rng(m.paint_seed), cfg)
                 for m in movers]
        img[post] = post_img[post]
        truth = _truth(movers, masks, post, cfg)
        for m in movers:
            _step(m, w, h)
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(2.0)
        yield np.clip(np.round(img + noise), 0, 255).astype(np.uint8), truth


def clip_frames(frames: int = 90, size: Union[int, Tuple[int, int]] = 256, seed: int = 0,
                cfg: SynthConfig = DEFAULT) -> Iterator[np.ndarray]:
    """The frames of :func:`clip_scenes` alone."""
    for img, _ in clip_scenes(frames, size, seed, cfg):
        yield img


STILL_EVERY = 6          # a training clip gives one still every 6 frames (0.4 s at 15 fps)
STILLS_PER_CLIP = 10


def clip_stills(seed: int, index: int, size: int, count: int = STILLS_PER_CLIP,
                cfg: SynthConfig = DEFAULT) -> List[Tuple[np.ndarray, List[SynthObject]]]:
    """Training images from training clip ``index`` of ``seed``: ``count`` (at most
    ``STILLS_PER_CLIP``) of its frames, one every ``STILL_EVERY``, with their objects labelled
    as the still dataset labels them (VOC boxes; ignored objects difficult). They hold what
    the stills lack and a tracker meets: objects crossing, one hiding most of another, and
    objects behind the post."""
    if not 0 <= count <= STILLS_PER_CLIP:
        raise ValueError(f"count must be in 0..{STILLS_PER_CLIP}")
    out = []
    for i, (img, truth) in enumerate(clip_scenes(count * STILL_EVERY, size, seed, cfg, index)):
        if i % STILL_EVERY == STILL_EVERY - 1:
            h, w = img.shape[:2]
            out.append((img, [SynthObject(o.label, (int(o.box[0]) + 1, int(o.box[1]) + 1,
                                                    int(o.box[2]), int(o.box[3])), o.ignored,
                                          min(o.box[:2]) <= 0 or o.box[2] >= w or o.box[3] >= h)
                              for o in truth]))
    return out


def truth_rows(index: int, objects: List[ClipObject]) -> List[MotRow]:
    """MOT ground-truth rows of frame ``index`` (0-based): conf 0 marks ignored objects."""
    return [MotRow(index + 1, o.track_id, o.box[0], o.box[1], o.box[2] - o.box[0],
                   o.box[3] - o.box[1], 0.0 if o.ignored else 1.0, o.label,
                   round(o.visibility, 3)) for o in objects]


def write_clip(path: str, frames: int = 90, size: Union[int, Tuple[int, int]] = 256,
               seed: int = 0, fps: float = 15.0, gt: Optional[str] = None) -> str:
    """Write a synthetic clip (mp4v) with ``cv2.VideoWriter`` and, where ``gt`` is a path,
    its true tracks as a MOT ground-truth file; returns ``path``."""
    import cv2
    w, h = (size, size) if isinstance(size, int) else size
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    vw = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (int(w), int(h)))
    if not vw.isOpened():
        raise UserError(f"{path}: cannot open a video writer (mp4v); is OpenCV built with "
                        f"video support?")
    rows: List[MotRow] = []
    try:
        for i, (img, truth) in enumerate(clip_scenes(frames, (w, h), seed)):
            vw.write(img)
            rows += truth_rows(i, truth)
    finally:
        vw.release()
    if gt:
        write_mot(gt, rows)
    return path
