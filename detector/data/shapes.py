"""The synthetic scenes' drawing: shapes, backgrounds, clutter, and one still image.

Content (:data:`CLASSES`): six filled shapes -- circle, square, triangle, star, cross, ring --
with random size (log-uniform), aspect (0.6..1.6, so circles become ellipses and squares
rectangles), rotation, colour (kept contrasting with the background under the object),
shading, striped texture fills and outlines; 1 to 6 objects per image placed with limited
overlap, so later objects occlude earlier ones; objects cut by the image border. Backgrounds
are colour gradients plus stripes or blotchy low-frequency noise, clutter (lines, scribbles,
dots; never one of the shapes), optional blur and pixel noise.

Boxes are tight around the *visible* pixels of each object (the VOC rule), in VOC
coordinates. An object is marked ``difficult`` when its visible box is small (side below
``difficult_min_side`` of the image) or less than ``difficult_visible`` of it is visible
(occluded or truncated); an object with less than ``drop_visible`` visible is not annotated at
all. About 8% of objects are drawn deliberately tiny, so every image set has difficult ones.

Deterministic: every image draws from its own ``np.random.default_rng([seed, split, i])``
(:func:`image_rng`), so the same arguments give the same pixels, and the images can be made
in any order or in parallel. The still dataset (:mod:`.synth`) and the clips (:mod:`.clip`)
are drawn with these parts.

The knobs that make it harder or easier are the fields of :class:`SynthConfig`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple, Union

import numpy as np

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
_SPLIT_CODES = {"train": 1, "val": 2, "clip": 3, "clip-train": 4}


@dataclass(frozen=True)
class SynthConfig:
    """Difficulty knobs (fractions are of the image side)."""
    min_objects: int = 1
    max_objects: int = 6
    scale: Tuple[float, float] = (0.1, 0.5)        # object extent, log-uniform
    tiny_prob: float = 0.08                        # chance an object is drawn tiny
    tiny_scale: Tuple[float, float] = (0.03, 0.06)
    aspect: Tuple[float, float] = (0.6, 1.6)       # width / height
    max_overlap: float = 0.4                       # IoU of a new object's box with earlier ones
    difficult_min_side: float = 0.06               # visible box side below -> difficult
    difficult_visible: float = 0.45                # visible area fraction below -> difficult
    drop_visible: float = 0.12                     # visible area fraction below -> not labelled
    clutter: Tuple[int, int] = (2, 12)             # number of clutter strokes
    noise: Tuple[float, float] = (1.0, 7.0)        # pixel noise sigma (levels of 255)
    blur_prob: float = 0.3
    texture_prob: float = 0.25                     # striped fill
    outline_prob: float = 0.3
    min_contrast: float = 70.0                     # RGB distance of object and background
    jpeg_quality: int = 90


DEFAULT = SynthConfig()


# ---- shapes ----------------------------------------------------------------------------

def _unit_shape(cls: str, rng: np.random.Generator) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Outline of a class in unit coordinates ([-1, 1]^2): (outer polygon, inner hole or
    None)."""
    if cls in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], 1)
        if cls == "ring":
            return outer, outer * rng.uniform(0.45, 0.65)
        return outer, None
    if cls == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float), None
    if cls == "triangle":
        a = np.deg2rad(np.array([-90.0, 30.0, 150.0]))
        pts = np.stack([np.cos(a), np.sin(a)], 1)
        pts[:, 1] = (pts[:, 1] - 0.25) / 0.75     # fill the unit box vertically
        pts[:, 0] = pts[:, 0] / (math.sqrt(3) / 2)
        return pts, None
    if cls == "star":
        r = rng.uniform(0.38, 0.5)
        a = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.0, r)
        return np.stack([np.cos(a) * rad, np.sin(a) * rad], 1), None
    if cls == "cross":
        w = rng.uniform(0.25, 0.4)
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
               (-1, w), (-1, -w), (-w, -w)]
        return np.array(pts, float), None
    raise ValueError(cls)


_ROTATION = {"circle": 180.0, "ring": 180.0, "square": 30.0, "cross": 30.0, "triangle": 180.0,
             "star": 180.0}


@dataclass
class Shape:
    cls: int
    outer: np.ndarray          # polygon, pixel coords (continuous)
    inner: Optional[np.ndarray]

    def moved(self, dx: float, dy: float) -> "Shape":
        d = np.array([dx, dy])
        return Shape(self.cls, self.outer + d, None if self.inner is None else self.inner + d)

    def area(self) -> float:
        a = _poly_area(self.outer)
        return a - (_poly_area(self.inner) if self.inner is not None else 0.0)

    def bounds(self) -> Tuple[float, float, float, float]:
        return (float(self.outer[:, 0].min()), float(self.outer[:, 1].min()),
                float(self.outer[:, 0].max()), float(self.outer[:, 1].max()))


def _poly_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def make_shape(cls: int, cx: float, cy: float, extent: float, aspect: float,
                rng: np.random.Generator) -> Shape:
    outer, inner = _unit_shape(CLASSES[cls], rng)
    rx, ry = extent / 2 * math.sqrt(aspect), extent / 2 / math.sqrt(aspect)
    th = np.deg2rad(rng.uniform(-_ROTATION[CLASSES[cls]], _ROTATION[CLASSES[cls]]))
    rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])

    def place(p):
        return (p * np.array([rx, ry])) @ rot.T + np.array([cx, cy])
    return Shape(cls, place(outer), None if inner is None else place(inner))


def _fill_mask(shape: Shape, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage (uint8 0..255) of a shape on an h x w canvas."""
    import cv2
    m = np.zeros((h, w), np.uint8)
    # continuous -> pixel-centre coordinates in 1/16 px fixed point
    cv2.fillPoly(m, [np.round((shape.outer - 0.5) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    if shape.inner is not None:
        cv2.fillPoly(m, [np.round((shape.inner - 0.5) * 16).astype(np.int32)], 0, cv2.LINE_AA, 4)
    return m


def _outline_mask(shape: Shape, h: int, w: int, thickness: int) -> np.ndarray:
    import cv2
    m = np.zeros((h, w), np.uint8)
    polys = [shape.outer] + ([shape.inner] if shape.inner is not None else [])
    cv2.polylines(m, [np.round((p - 0.5) * 16).astype(np.int32) for p in polys], True, 255,
                  thickness, cv2.LINE_AA, 4)
    return m


# ---- backgrounds -----------------------------------------------------------------------

def random_colour(rng: np.random.Generator) -> np.ndarray:
    import cv2
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(60, 255)]]],
                   np.float32).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    import cv2
    s = float(max(h, w))
    xx = (np.arange(w, dtype=np.float32) / np.float32(s))[None, :]
    yy = (np.arange(h, dtype=np.float32) / np.float32(s))[:, None]
    a = rng.uniform(0, 2 * np.pi)
    t = math.cos(a) * xx + math.sin(a) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    img[:] = c1 + (c2 - c1) * t[..., None]
    kind = rng.integers(0, 3)
    if kind == 0:   # stripes
        a2, f, ph = rng.uniform(0, np.pi), rng.uniform(3, 18), rng.uniform(0, 2 * np.pi)
        u = np.float32(math.cos(a2)) * xx + np.float32(math.sin(a2)) * yy
        wave = np.sin(np.float32(2 * np.pi * f) * u + np.float32(ph))
        col = rng.uniform(-1, 1, 3).astype(np.float32)
        img += rng.uniform(8, 35) * wave[..., None] * col
    k = int(rng.integers(3, 9))
    g = rng.uniform(-1, 1, (k, k, 3)).astype(np.float32)
    amp = rng.uniform(25, 70) if kind == 1 else rng.uniform(5, 20)
    img += amp * cv2.resize(g, (w, h), interpolation=cv2.INTER_CUBIC)
    return img


def clutter(img: np.ndarray, rng: np.random.Generator, n: int) -> None:
    """Strokes that are not objects: lines, scribbles and dots."""
    import cv2
    h, w = img.shape[:2]
    s = max(h, w)
    for _ in range(n):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(0, 10)
        if kind < 4:
            p = np.round(rng.uniform(0, 1, (2, 2)) * [w, h] * 16).astype(np.int32)
            cv2.line(img, tuple(int(v) for v in p[0]), tuple(int(v) for v in p[1]), col,
                     int(rng.integers(1, 4)), cv2.LINE_AA, 4)
        elif kind < 8:
            c = rng.uniform(0, 1, 2) * [w, h]
            r = rng.uniform(0.04, 0.2) * s
            pts = c + np.cumsum(rng.normal(0, r / 3, (int(rng.integers(3, 8)), 2)), 0)
            cv2.polylines(img, [np.round(pts * 16).astype(np.int32)], False, col,
                          int(rng.integers(1, 3)), cv2.LINE_AA, 4)
        else:
            for _ in range(int(rng.integers(1, 6))):
                c = np.round(rng.uniform(0, 1, 2) * [w, h] * 16).astype(np.int32)
                cv2.circle(img, (int(c[0]), int(c[1])), int(rng.integers(8, 33)), col, -1,
                           cv2.LINE_AA, 4)


# ---- one image -------------------------------------------------------------------------

@dataclass
class SynthObject:
    label: int
    box: Tuple[int, int, int, int]     # VOC coordinates (1-based inclusive)
    difficult: bool
    truncated: bool

    @property
    def name(self) -> str:
        return CLASSES[self.label]


def _box_iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def paint(img: np.ndarray, shape: Shape, rng: np.random.Generator, cfg: SynthConfig
           ) -> np.ndarray:
    """Composite one object onto ``img`` (float32 BGR, in place); returns its coverage mask
    (bool) within the image."""
    h, w = img.shape[:2]
    fill = _fill_mask(shape, h, w)
    cover = fill
    ys, xs = np.nonzero(fill)
    if len(xs) == 0:
        return fill > 127
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    roi = img[y0:y1, x0:x1]
    alpha = fill[y0:y1, x0:x1].astype(np.float32)[..., None] / 255.0
    under = roi[alpha[..., 0] > 0.5].mean(0) if (alpha > 0.5).any() else roi.mean((0, 1))
    best, best_d = None, -1.0
    for _ in range(20):
        c = random_colour(rng)
        d = float(np.linalg.norm(c - under))
        if d > best_d:
            best, best_d = c, d
        if d >= cfg.min_contrast:
            break
    colour = np.broadcast_to(best, roi.shape).copy()
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    a = rng.uniform(0, 2 * np.pi)
    ext = max(float(x1 - x0), float(y1 - y0), 1.0)
    shade = ((math.cos(a) * (xx - x0) + math.sin(a) * (yy - y0)) / ext - 0.5)
    colour += rng.uniform(0, 40) * shade[..., None]
    if rng.random() < cfg.texture_prob:
        c2 = random_colour(rng)
        f, a2 = rng.uniform(2, 6) / ext, rng.uniform(0, np.pi)
        band = (np.sin(2 * np.pi * f * (math.cos(a2) * xx + math.sin(a2) * yy)) > 0)
        colour[band] = 0.5 * colour[band] + 0.5 * c2
    roi[:] = roi * (1 - alpha) + colour * alpha
    if rng.random() < cfg.outline_prob:
        th = int(rng.integers(1, 3))
        line = _outline_mask(shape, h, w, th)
        oc = random_colour(rng) * rng.uniform(0.2, 0.7)
        al = line.astype(np.float32)[..., None] / 255.0
        img[:] = img * (1 - al) + oc * al
        cover = np.maximum(fill, line)
    return cover > 127


def render_image(rng: np.random.Generator, size: Union[int, Tuple[int, int]],
                 cfg: SynthConfig = DEFAULT) -> Tuple[np.ndarray, List[SynthObject]]:
    """One synthetic image (BGR uint8) and its labelled objects."""
    import cv2
    w, h = (size, size) if isinstance(size, int) else size
    s = float(min(w, h))
    img = background(rng, h, w)
    clutter(img, rng, int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1)))

    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    shapes: List[Shape] = []
    for _ in range(n):
        for _try in range(30):
            cls = int(rng.integers(0, len(CLASSES)))
            lo, hi = cfg.tiny_scale if rng.random() < cfg.tiny_prob else cfg.scale
            extent = math.exp(rng.uniform(math.log(lo), math.log(hi))) * s
            aspect = math.exp(rng.uniform(math.log(cfg.aspect[0]), math.log(cfg.aspect[1])))
            cx, cy = rng.uniform(0.03, 0.97) * w, rng.uniform(0.03, 0.97) * h
            shape = make_shape(cls, cx, cy, extent, aspect, rng)
            b = shape.bounds()
            if all(_box_iou(b, o.bounds()) <= cfg.max_overlap for o in shapes):
                shapes.append(shape)
                break

    masks = [paint(img, sh, rng, cfg) for sh in shapes]
    if rng.random() < 0.3:     # a few strokes over the objects
        clutter(img, rng, int(rng.integers(1, 3)))

    objects: List[SynthObject] = []
    above = np.zeros((h, w), bool)
    for sh, m in reversed(list(zip(shapes, masks))):
        vis = m & ~above
        above |= m
        full = max(sh.area(), 1.0)
        inside = float(m.sum())
        nvis = int(vis.sum())
        if nvis < 9 or nvis / full < cfg.drop_visible:
            continue
        ys, xs = np.nonzero(vis)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        side = min(box[2] - box[0] + 1, box[3] - box[1] + 1)
        difficult = side < cfg.difficult_min_side * s or nvis / full < cfg.difficult_visible
        objects.append(SynthObject(sh.cls, box, bool(difficult), inside / full < 0.85))
    objects.reverse()

    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.0))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(*cfg.noise))
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SPLIT_CODES[split], int(index)])


