"""Frame -> network input: darknet's letterbox, RGB, /255, CHW float32.

The letterbox rule is darknet's (``letterbox_image``): scale to fit keeping the aspect ratio
(integer new size computed as darknet does), centre with integer offsets, fill with 0.5.
``Letterbox`` remembers the geometry so ``postprocess`` can map boxes back to the frame.

Two ways to resize (``RESIZES``):

- ``opencv``: ``cv2.resize`` bilinear (half-pixel centres) on the uint8 frame, then /255.
- ``darknet``: darknet's own ``resize_image`` on the /255 float image, bit for bit: pixels
  are ``(float)(v / 255.)``; columns first, then rows, each sampled at ``i * (src - 1) /
  (dst - 1)`` (corner-aligned), ``(1 - d) * a + d * b`` in float32; the last column takes
  the last source column, and the last row only ``(1 - d) * a`` (darknet skips its second
  term there). ``darknet_resize`` is the reference the device kernels are tested against.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import cv2
import numpy as np

FILL = 0.5
SCALE = np.float32(1.0 / 255.0)
RESIZES = ("opencv", "darknet")
# darknet's pixel values: (float)(v / 255.) in double, then rounded to float32
DARKNET_LUT = (np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


class Letterbox(NamedTuple):
    """Where the frame sits inside the network input (all in pixels)."""
    frame_w: int
    frame_h: int
    net_w: int
    net_h: int
    new_w: int
    new_h: int
    left: int
    top: int

    @property
    def scale_x(self) -> float:
        return self.new_w / self.frame_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.frame_h


def letterbox_geometry(frame_w: int, frame_h: int, net_w: int, net_h: int) -> Letterbox:
    f32 = np.float32               # darknet compares the two ratios as floats
    if f32(net_w) / f32(frame_w) < f32(net_h) / f32(frame_h):
        new_w, new_h = net_w, (frame_h * net_w) // frame_w
    else:
        new_w, new_h = (frame_w * net_h) // frame_h, net_h
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    return Letterbox(frame_w, frame_h, net_w, net_h, new_w, new_h,
                     (net_w - new_w) // 2, (net_h - new_h) // 2)


def check_frame(frame) -> None:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        desc = (f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray)
                else type(frame).__name__)
        raise ValueError(f"expected a BGR uint8 frame of shape (H, W, 3), got {desc}")


class AxisSamples(NamedTuple):
    """Darknet's samples along one axis of ``dst`` pixels from ``src``: output ``i`` is
    ``(1 - frac[i]) * src[lo[i]] + frac[i] * src[hi[i]]``, or ``(1 - frac) * src[lo]`` alone
    where ``second[i]`` is False."""
    lo: np.ndarray
    hi: np.ndarray
    frac: np.ndarray         # float32
    second: np.ndarray       # bool


def darknet_samples(src: int, dst: int, last_whole: bool) -> AxisSamples:
    """Darknet's ``resize_image`` sampling of ``dst`` pixels from ``src``. Columns
    (``last_whole``): the last output pixel, or every one when ``src`` is 1, is the last
    source pixel. Rows: the last output row, or every one when ``src`` is 1, keeps only its
    first term. A side of 1 output pixel (where darknet divides by zero) samples pixel 0."""
    i = np.arange(dst)
    scale = np.float32(src - 1) / np.float32(dst - 1) if dst > 1 else np.float32(0)
    pos = i.astype(np.float32) * scale
    lo = pos.astype(np.int64)
    frac = (pos - lo.astype(np.float32)).astype(np.float32)
    single = (i == dst - 1) | (src == 1)
    if last_whole:
        lo = np.where(single, src - 1, lo)
        frac = np.where(single, np.float32(0), frac).astype(np.float32)
    hi = np.minimum(lo + 1, src - 1)
    return AxisSamples(lo, hi, frac, ~single)


def darknet_resize(frame: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    """Darknet's ``resize_image`` of a BGR uint8 frame (H, W, 3) -> (new_h, new_w, 3) float32
    in [0, 1], still BGR, bit for bit. Only the source rows the output samples are resized
    across; a second term with weight 0 adds exactly 0, as darknet's skipped ones do. OpenCV
    does the exact parts (the table lookup, nearest-pixel gathers), numpy the float32
    arithmetic in darknet's order, one rounding per operation."""
    h, w = frame.shape[:2]
    cols = darknet_samples(w, new_w, last_whole=True)
    rows = darknet_samples(h, new_h, last_whole=False)
    need = np.unique(np.concatenate([rows.lo, rows.hi[rows.second]]))
    pixels = cv2.LUT(frame[need], DARKNET_LUT)          # (float)(v / 255.), rows in ``need``
    ys = np.repeat(np.arange(len(need), dtype=np.float32)[:, None], new_w, axis=1)

    def gather(x: np.ndarray) -> np.ndarray:
        xs = np.ascontiguousarray(np.broadcast_to(x.astype(np.float32), ys.shape))
        return cv2.remap(pixels, xs, ys, cv2.INTER_NEAREST)

    across, right = gather(cols.lo), gather(cols.hi)
    d = cols.frac[None, :, None]
    across *= np.float32(1) - d
    right *= d
    across += right
    d = rows.frac[:, None, None]
    out = np.take(across, np.searchsorted(need, rows.lo), axis=0)
    out *= np.float32(1) - d
    below = np.take(across, np.searchsorted(need, np.where(rows.second, rows.hi, rows.lo)), axis=0)
    below *= (d * rows.second[:, None, None]).astype(np.float32)
    out += below
    return out


class Preprocessor:
    """Letterboxes frames into one input buffer allocated once (``out`` may be page-locked).

    Per frame: one ``cv2.resize`` into a reused uint8 buffer, then per channel (B, G, R into
    blob planes 2, 1, 0) ``cv2.extractChannel`` into a reused uint8 plane and one numpy pass
    that converts it to float32 and scales it by 1/255 straight into the blob. Both read and
    write memory in order, which is faster than one pass over the transposed HWC view. The
    borders are filled only when the geometry changes. The values are bit-identical to
    ``cv2.dnn.blobFromImage(resized, 1/255, swapRB=True)``."""

    def __init__(self, size: int, out: Optional[np.ndarray] = None, resize: str = "opencv"):
        if resize not in RESIZES:
            raise ValueError(f"resize must be one of {', '.join(RESIZES)}, got {resize!r}")
        self.size = size
        self.resize = resize
        self.blob = out if out is not None else np.empty((1, 3, size, size), np.float32)
        self._last: Optional[Letterbox] = None
        self._resized: Optional[np.ndarray] = None
        self._planes = []

    def __call__(self, frame: np.ndarray):
        """Returns (blob [1, 3, S, S] float32 RGB in [0, 1], Letterbox). The blob is reused:
        copy it if you keep it past the next call."""
        check_frame(frame)
        h, w = frame.shape[:2]
        lb = letterbox_geometry(w, h, self.size, self.size)
        if self._last is None or self._last[4:] != lb[4:]:
            self.blob.fill(FILL)       # borders only change when the geometry does
            self._resized = np.empty((lb.new_h, lb.new_w, 3), np.uint8)
            self._planes = [np.empty((lb.new_h, lb.new_w), np.uint8) for _ in range(3)]
        inner = self.blob[0, :, lb.top:lb.top + lb.new_h, lb.left:lb.left + lb.new_w]
        if self.resize == "darknet":
            resized = darknet_resize(frame, lb.new_w, lb.new_h)
            for c in range(3):
                inner[c] = resized[:, :, 2 - c]
            self._last = lb
            return self.blob, lb
        if (lb.new_w, lb.new_h) != (w, h):
            frame = cv2.resize(frame, (lb.new_w, lb.new_h), dst=self._resized,
                               interpolation=cv2.INTER_LINEAR)
        frame = np.ascontiguousarray(frame)
        for c in range(3):             # blob plane c (RGB) <- frame channel 2 - c (BGR)
            plane = cv2.extractChannel(frame, 2 - c, dst=self._planes[c])
            # float32(v) * float32(1/255): the same single rounding as OpenCV's convertTo.
            np.multiply(plane, SCALE, out=inner[c], casting="unsafe")
        self._last = lb
        return self.blob, lb


def letterbox(frame: np.ndarray, size: int, resize: str = "opencv"):
    """One-off letterbox (allocates a new blob)."""
    return Preprocessor(size, resize=resize)(frame)
