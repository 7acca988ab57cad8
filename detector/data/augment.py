"""Darknet-style training augmentation and the letterbox, on numpy/cv2, boxes kept exact.

Training (:func:`augment`), in this order:

1. *Jitter crop* (darknet ``jitter``): each side of the image moves by a random amount in
   ``[-jitter, +jitter]`` of the image width/height, outward (padding) or inward (cropping).
   This changes scale, aspect and position at once.
2. *Letterbox* the cropped rectangle into the network input: scaled to fit keeping its
   aspect, centred, the rest filled with 0.5 gray -- the same rule as inference
   (:func:`letterbox`), so a network sees objects as it will at test time. Area outside the
   original image is gray too (never smeared edge pixels, which could look like objects).
3. *Horizontal flip* with probability 1/2.
4. *HSV distortion* as darknet's ``random_distort_image``: hue shift uniform in
   ``[-hue, hue]`` (fraction of the colour circle), saturation and exposure (value) each
   scaled by ``s`` or ``1/s`` with ``s`` uniform in ``[1, saturation]`` / ``[1, exposure]``;
   the result is clipped to [0, 1]. The gray padding is not distorted.

Steps 1-3 are one affine warp (one interpolation). Boxes go through the same map, are clipped
to the visible image, and dropped when narrower or lower than ``min_box`` network pixels.

*Mosaic* (:func:`mosaic`, ultralytics' default for training from scratch): four images share
one input, split at a random centre; each is scaled about as the letterbox would (times a
random factor in ``[1 - MOSAIC_SCALE, 1 + MOSAIC_SCALE]``), flipped, and placed with its
corner at the centre, so its quadrant shows the part of it next to that corner. One sample
then holds objects of four images in new contexts and cut by new borders: more to learn from
per step. Boxes cut to less than ``MOSAIC_MIN_VISIBLE`` of their area are dropped.

Output: RGB float32 CHW in [0, 1] and boxes as normalised ``cx, cy, w, h`` (fractions of the
network input width/height), with the labels and difficult flags of the kept boxes. Input
boxes are VOC coordinates (see :mod:`detector.data.boxes`). Everything random comes from the
``np.random.Generator`` passed in, so a seeded generator gives the same result every time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, NamedTuple, Sequence, Tuple, Union

import numpy as np

from ..preprocess import FILL, letterbox_geometry
from .boxes import voc_to_pixel
from .split import Sample

Size = Union[int, Tuple[int, int]]


def _wh(size: Size) -> Tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


# ---- training augmentation --------------------------------------------------------------

@dataclass(frozen=True)
class AugmentConfig:
    jitter: float = 0.2         # darknet [region] jitter
    hue: float = 0.1            # darknet [net] hue
    saturation: float = 1.5     # darknet [net] saturation
    exposure: float = 1.5       # darknet [net] exposure
    flip: bool = True
    min_box: float = 1.0        # drop boxes narrower/lower than this (network pixels)
    mosaic: float = 0.0         # probability that a training sample is a mosaic of four

    @classmethod
    def from_spec(cls, spec, **overrides) -> "AugmentConfig":
        """Settings of a :class:`detector.models.spec.ModelSpec` (region jitter, train
        hue/saturation/exposure)."""
        tr = getattr(spec, "train", None)
        d = dict(jitter=float(spec.region.jitter),
                 hue=float(getattr(tr, "hue", cls.hue)),
                 saturation=float(getattr(tr, "saturation", cls.saturation)),
                 exposure=float(getattr(tr, "exposure", cls.exposure)))
        d.update(overrides)
        return cls(**d)


NO_AUGMENT = AugmentConfig(jitter=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=False)


class Augmented(NamedTuple):
    image: np.ndarray       # float32 [3, H, W] RGB in [0, 1]
    boxes: np.ndarray       # float32 [N, 4] normalised cx, cy, w, h
    labels: np.ndarray      # int64 [N]
    difficult: np.ndarray   # bool [N]


def _rand_scale(rng: np.random.Generator, s: float) -> float:
    """Darknet's rand_scale: uniform in [1, s], inverted with probability 1/2."""
    if s <= 1.0:
        return 1.0
    v = rng.uniform(1.0, s)
    return v if rng.random() < 0.5 else 1.0 / v


def distort_hsv(rgb: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """Darknet's ``distort_image`` on an RGB float32 HxWx3 [0, 1] image (new array)."""
    import cv2
    if dhue == 0.0 and dsat == 1.0 and dexp == 1.0:
        return rgb
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2HSV)
    if dhue:
        hsv[..., 0] = np.mod(hsv[..., 0] + np.float32(dhue * 360.0), np.float32(360.0))
    hsv[..., 1] = np.minimum(hsv[..., 1] * np.float32(dsat), np.float32(1.0))
    hsv[..., 2] *= np.float32(dexp)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out, 0.0, 1.0, out=out)


class Placement(NamedTuple):
    """Steps 1-3 as one affine map: source pixel ``(u, v)`` -> network pixel
    ``(ax * u + bx, s * v + oy)``; ``ax`` is ``-s`` when flipped. ``x0, y0, cw, ch``: the
    crop rectangle in source pixels (it may extend past the image)."""
    ax: float
    bx: float
    s: float
    oy: float
    flip: bool
    x0: float
    y0: float
    cw: float
    ch: float

    def visible(self, w: int, h: int) -> Tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)``: the part of the ``w x h`` source image inside the crop."""
        return (max(self.x0, 0.0), max(self.y0, 0.0), min(self.x0 + self.cw, float(w)),
                min(self.y0 + self.ch, float(h)))


def random_placement(rng: np.random.Generator, w: int, h: int, nw: int, nh: int,
                     cfg: AugmentConfig) -> Placement:
    """Steps 1-3 for a ``w x h`` image and an ``nw x nh`` input: the jitter crop, its
    letterbox, and the flip (drawn even when ``cfg.flip`` is off: the same random stream
    either way)."""
    jit = min(max(float(cfg.jitter), 0.0), 0.45)
    if jit > 0:
        pl, pr = rng.uniform(-jit * w, jit * w, 2)
        pt, pb = rng.uniform(-jit * h, jit * h, 2)
    else:
        pl = pr = pt = pb = 0.0
    cw, ch = w - pl - pr, h - pt - pb
    # letterbox the crop: u_net = (u - c0) * s + d
    s = min(nw / cw, nh / ch)
    ox = (nw - cw * s) / 2 - pl * s
    oy = (nh - ch * s) / 2 - pt * s
    # flip: u -> nw - u
    flip = rng.random() < 0.5 and bool(cfg.flip)
    return Placement(-s if flip else s, nw - ox if flip else ox, s, oy, flip, pl, pt, cw, ch)


def warp_image(image_bgr: np.ndarray, p: Placement, nw: int, nh: int) -> np.ndarray:
    """The BGR uint8 image through the placement: RGB float32 ``nh x nw x 3`` in [0, 1], one
    interpolation (an area-filtered resize first when it shrinks by more than 2)."""
    import cv2
    h, w = image_bgr.shape[:2]
    ax, bx, s, oy = p.ax, p.bx, p.s, p.oy
    # cv2 maps pixel-centre indices: i_dst = a * i_src + (b + a/2 - 1/2)
    m = np.array([[ax, 0.0, bx + ax / 2 - 0.5], [0.0, s, oy + s / 2 - 0.5]], np.float64)
    src = image_bgr
    if s < 0.5:                       # warpAffine has no area filter: resize first
        k = math.floor(1.0 / s)
        dsize = (max(1, int(round(w / k))), max(1, int(round(h / k))))
        src = cv2.resize(image_bgr, dsize, interpolation=cv2.INTER_AREA)
        sx, sy = src.shape[1] / w, src.shape[0] / h
        m = np.array([[ax / sx, 0.0, bx + ax / sx / 2 - 0.5],
                      [0.0, s / sy, oy + s / sy / 2 - 0.5]], np.float64)
    warped = cv2.warpAffine(src, m, (nw, nh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    return warped[..., ::-1].astype(np.float32) * np.float32(1 / 255)


def random_distort(rgb: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Step 4: the HSV distortion with factors drawn from ``rng`` (nothing drawn when the
    config distorts nothing)."""
    if not (cfg.hue or cfg.saturation > 1 or cfg.exposure > 1):
        return rgb
    dhue = rng.uniform(-cfg.hue, cfg.hue) if cfg.hue else 0.0
    dsat = _rand_scale(rng, cfg.saturation)
    dexp = _rand_scale(rng, cfg.exposure)
    return distort_hsv(rgb, dhue, dsat, dexp)


def landing(p: Placement, visible, nw: int, nh: int) -> Tuple[slice, slice]:
    """Rows and columns of the network input where the ``visible`` source rectangle lands."""
    vx0, vy0, vx1, vy1 = visible
    ex = sorted((p.ax * vx0 + p.bx, p.ax * vx1 + p.bx))
    ey = (p.s * vy0 + p.oy, p.s * vy1 + p.oy)
    c0, c1 = int(np.clip(round(ex[0]), 0, nw)), int(np.clip(round(ex[1]), 0, nw))
    r0, r1 = int(np.clip(round(ey[0]), 0, nh)), int(np.clip(round(ey[1]), 0, nh))
    return slice(r0, r1), slice(c0, c1)


def gray_outside(rgb: np.ndarray, p: Placement, visible, nw: int, nh: int) -> np.ndarray:
    """CHW float32: ``rgb`` where the ``visible`` source rectangle lands, gray elsewhere."""
    rows, cols = landing(p, visible, nw, nh)
    out = np.full((nh, nw, 3), FILL, np.float32)
    out[rows, cols] = rgb[rows, cols]
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def place_boxes(b: np.ndarray, p: Placement, visible, nw: int, nh: int, min_box: float
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel boxes ``b`` ``[N, 4]`` (changed in place) clipped to the ``visible`` rectangle
    and mapped: normalised ``cx, cy, w, h`` of the kept ones, and the mask of those kept (at
    least ``min_box`` network pixels wide and high)."""
    vx0, vy0, vx1, vy1 = visible
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], vx0, vx1)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], vy0, vy1)
    x1, x2 = p.ax * b[:, 0] + p.bx, p.ax * b[:, 2] + p.bx
    if p.flip:
        x1, x2 = x2, x1
    y1, y2 = p.s * b[:, 1] + p.oy, p.s * b[:, 3] + p.oy
    keep = ((x2 - x1) >= min_box) & ((y2 - y1) >= min_box)
    out = np.stack([(x1 + x2) / 2 / nw, (y1 + y2) / 2 / nh, (x2 - x1) / nw,
                    (y2 - y1) / nh], 1)[keep].astype(np.float32)
    return out.reshape(-1, 4), keep


def augment(image_bgr: np.ndarray, boxes_voc, labels, size: Size, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig(), difficult=None) -> Augmented:
    """Augment one training image; see the module docstring. ``boxes_voc``: ``[N, 4]`` VOC
    coordinates of ``image_bgr``; ``size``: the network input (int or ``(w, h)``)."""
    h, w = image_bgr.shape[:2]
    nw, nh = _wh(size)
    labels = np.asarray(labels, np.int64).reshape(-1)
    difficult = np.zeros(len(labels), bool) if difficult is None else \
        np.asarray(difficult, bool).reshape(-1)
    boxes = voc_to_pixel(boxes_voc)
    if len(boxes) != len(labels) or len(difficult) != len(labels):
        raise ValueError("boxes, labels and difficult must have the same length")
    p = random_placement(rng, w, h, nw, nh, cfg)
    rgb = random_distort(warp_image(image_bgr, p, nw, nh), rng, cfg)
    visible = p.visible(w, h)
    out_boxes, keep = place_boxes(boxes, p, visible, nw, nh, cfg.min_box)
    return Augmented(gray_outside(rgb, p, visible, nw, nh), out_boxes, labels[keep],
                     difficult[keep])


# ---- mosaic ------------------------------------------------------------------------------

MOSAIC_SCALE = 0.25         # each image's scale: the letterbox's times [0.75, 1.25]
MOSAIC_MIN_VISIBLE = 0.35   # a box cut to less of its area than this is dropped


def corner_placement(rng: np.random.Generator, w: int, h: int, nw: int, nh: int,
                     corner: Tuple[float, float], quadrant: int, flip: bool) -> Placement:
    """A ``w x h`` image scaled about as the letterbox would and placed in ``quadrant`` (0
    top left, 1 top right, 2 bottom left, 3 bottom right) with its corner at ``corner``."""
    s = min(nw / w, nh / h) * rng.uniform(1.0 - MOSAIC_SCALE, 1.0 + MOSAIC_SCALE)
    cx, cy = corner
    ox = cx if quadrant % 2 else cx - w * s
    oy = cy if quadrant >= 2 else cy - h * s
    flip = bool(flip and rng.random() < 0.5)
    return Placement(-s if flip else s, ox + w * s if flip else ox, s, oy, flip, 0.0, 0.0,
                     float(w), float(h))


def mosaic(samples: Sequence[Sample], size: Size, rng: np.random.Generator,
           cfg: AugmentConfig = AugmentConfig()) -> Augmented:
    """Four dataset samples (BGR images, VOC boxes) as one training input (see the module
    docstring); the same output as :func:`augment`. Difficult flags travel with their
    boxes."""
    if len(samples) != 4:
        raise ValueError(f"a mosaic takes 4 samples, got {len(samples)}")
    nw, nh = _wh(size)
    corner = (rng.uniform(0.25, 0.75) * nw, rng.uniform(0.25, 0.75) * nh)
    canvas = np.full((nh, nw, 3), FILL, np.float32)
    boxes, labels, difficult = [], [], []
    for q, smp in enumerate(samples):
        h, w = smp.image.shape[:2]
        p = corner_placement(rng, w, h, nw, nh, corner, q, cfg.flip)
        qx = (0.0, corner[0]) if q % 2 == 0 else (corner[0], float(nw))
        qy = (0.0, corner[1]) if q < 2 else (corner[1], float(nh))
        ux = sorted(((qx[0] - p.bx) / p.ax, (qx[1] - p.bx) / p.ax))
        visible = (max(ux[0], 0.0), max((qy[0] - p.oy) / p.s, 0.0), min(ux[1], float(w)),
                   min((qy[1] - p.oy) / p.s, float(h)))
        rows, cols = landing(p, visible, nw, nh)
        qw, qh = cols.stop - cols.start, rows.stop - rows.start
        if qw > 0 and qh > 0:       # warp only where this image shows
            part = p._replace(bx=p.bx - cols.start, oy=p.oy - rows.start)
            canvas[rows, cols] = random_distort(warp_image(smp.image, part, qw, qh), rng, cfg)
        b = voc_to_pixel(smp.boxes)
        full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) * (p.s * p.s)
        placed, keep = place_boxes(b, p, visible, nw, nh, cfg.min_box)
        seen = placed[:, 2] * placed[:, 3] * (nw * nh) >= \
            MOSAIC_MIN_VISIBLE * np.maximum(full[keep], 1e-9)
        boxes.append(placed[seen])
        labels.append(np.asarray(smp.labels, np.int64).reshape(-1)[keep][seen])
        difficult.append(np.asarray(smp.difficult, bool).reshape(-1)[keep][seen])
    return Augmented(np.ascontiguousarray(canvas.transpose(2, 0, 1)),
                     np.concatenate(boxes).reshape(-1, 4).astype(np.float32),
                     np.concatenate(labels), np.concatenate(difficult))


def targets_from_voc(boxes_voc, w: int, h: int, size: Size) -> np.ndarray:
    """Normalised ``cx, cy, w, h`` of VOC boxes after the inference letterbox
    (:mod:`detector.preprocess`, no augmentation), e.g. for validation losses."""
    from ..postprocess import to_network
    nw, nh = _wh(size)
    return to_network(voc_to_pixel(boxes_voc), letterbox_geometry(w, h, nw, nh)).astype(np.float32)


# ---- multi-scale ------------------------------------------------------------------------

def multiscale_sizes(base: int = 416, step: int = 32, low: float = 10 / 13,
                     high: float = 19 / 13) -> List[int]:
    """Input sizes for multi-scale training: multiples of ``step`` from ``base * low`` to
    ``base * high`` (rounded to the step). For base 416 this is darknet's 320..608;
    for 256 it is 192..384."""
    lo = max(step, int(round(base * low / step)) * step)
    hi = max(lo, int(round(base * high / step)) * step)
    return list(range(lo, hi + 1, step))


def random_size(rng: np.random.Generator, sizes: Sequence[int]) -> int:
    """One size drawn uniformly (darknet redraws every 10 batches)."""
    return int(sizes[int(rng.integers(0, len(sizes)))])
