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


def augment(image_bgr: np.ndarray, boxes_voc, labels, size: Size, rng: np.random.Generator,
            cfg: AugmentConfig = AugmentConfig(), difficult=None) -> Augmented:
    """Augment one training image; see the module docstring. ``boxes_voc``: ``[N, 4]`` VOC
    coordinates of ``image_bgr``; ``size``: the network input (int or ``(w, h)``)."""
    import cv2
    h, w = image_bgr.shape[:2]
    nw, nh = _wh(size)
    labels = np.asarray(labels, np.int64).reshape(-1)
    difficult = np.zeros(len(labels), bool) if difficult is None else \
        np.asarray(difficult, bool).reshape(-1)
    jit = min(max(float(cfg.jitter), 0.0), 0.45)

    # 1. crop rectangle (pixel coords of the source; may extend past the image)
    if jit > 0:
        pl, pr = rng.uniform(-jit * w, jit * w, 2)
        pt, pb = rng.uniform(-jit * h, jit * h, 2)
    else:
        pl = pr = pt = pb = 0.0
    cx0, cy0 = pl, pt
    cw, ch = w - pl - pr, h - pt - pb
    # 2. letterbox it: u_net = (u - c0) * s + d
    s = min(nw / cw, nh / ch)
    ox = (nw - cw * s) / 2 - cx0 * s
    oy = (nh - ch * s) / 2 - cy0 * s
    # 3. flip: u -> nw - u
    flip = rng.random() < 0.5 and bool(cfg.flip)    # always drawn: same stream either way
    ax = -s if flip else s
    bx = nw - ox if flip else ox

    # one warp; cv2 maps pixel-centre indices: i_dst = a * i_src + (b + a/2 - 1/2)
    m = np.array([[ax, 0.0, bx + ax / 2 - 0.5], [0.0, s, oy + s / 2 - 0.5]], np.float64)
    interp = cv2.INTER_AREA if s < 0.5 else cv2.INTER_LINEAR
    if interp == cv2.INTER_AREA:      # warpAffine has no area filter: resize first
        k = math.floor(1.0 / s)
        dsize = (max(1, int(round(w / k))), max(1, int(round(h / k))))
        small = cv2.resize(image_bgr, dsize, interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
        m = np.array([[ax / sx, 0.0, bx + ax / sx / 2 - 0.5],
                      [0.0, s / sy, oy + s / sy / 2 - 0.5]], np.float64)
        src = small
    else:
        src = image_bgr
    warped = cv2.warpAffine(src, m, (nw, nh), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    rgb = warped[..., ::-1].astype(np.float32) * np.float32(1 / 255)

    # 4. HSV on the image, then the gray outside the visible part of the image
    if cfg.hue or cfg.saturation > 1 or cfg.exposure > 1:
        dhue = rng.uniform(-cfg.hue, cfg.hue) if cfg.hue else 0.0
        dsat = _rand_scale(rng, cfg.saturation)
        dexp = _rand_scale(rng, cfg.exposure)
        rgb = distort_hsv(rgb, dhue, dsat, dexp)
    vx0, vx1 = max(cx0, 0.0), min(cx0 + cw, float(w))     # visible source rectangle
    vy0, vy1 = max(cy0, 0.0), min(cy0 + ch, float(h))
    ex = sorted((ax * vx0 + bx, ax * vx1 + bx))
    ey = (s * vy0 + oy, s * vy1 + oy)
    c0, c1 = int(np.clip(round(ex[0]), 0, nw)), int(np.clip(round(ex[1]), 0, nw))
    r0, r1 = int(np.clip(round(ey[0]), 0, nh)), int(np.clip(round(ey[1]), 0, nh))
    out = np.full((nh, nw, 3), FILL, np.float32)
    out[r0:r1, c0:c1] = rgb[r0:r1, c0:c1]
    image = np.ascontiguousarray(out.transpose(2, 0, 1))

    # boxes: VOC -> pixel, clip to the visible rectangle, map, drop the degenerate
    b = voc_to_pixel(boxes_voc)
    if len(b) != len(labels) or len(difficult) != len(labels):
        raise ValueError("boxes, labels and difficult must have the same length")
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], vx0, vx1)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], vy0, vy1)
    x1, x2 = ax * b[:, 0] + bx, ax * b[:, 2] + bx
    if flip:
        x1, x2 = x2, x1
    y1, y2 = s * b[:, 1] + oy, s * b[:, 3] + oy
    keep = ((x2 - x1) >= cfg.min_box) & ((y2 - y1) >= cfg.min_box)
    out_boxes = np.stack([(x1 + x2) / 2 / nw, (y1 + y2) / 2 / nh, (x2 - x1) / nw,
                          (y2 - y1) / nh], 1)[keep].astype(np.float32)
    return Augmented(image, out_boxes.reshape(-1, 4), labels[keep], difficult[keep])


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
