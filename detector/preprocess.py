"""Frame -> network input: darknet's letterbox, RGB, /255, CHW float32.

The letterbox rule is darknet's (``letterbox_image``): scale to fit keeping the aspect ratio
(integer new size computed as darknet does), centre with integer offsets, fill with 0.5.
``Letterbox`` remembers the geometry so ``postprocess`` can map boxes back to the frame.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import cv2
import numpy as np

FILL = 0.5
SCALE = np.float32(1.0 / 255.0)


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
    if net_w / frame_w < net_h / frame_h:
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


class Preprocessor:
    """Letterboxes frames into one input buffer allocated once (``out`` may be page-locked).

    Per frame: one ``cv2.resize`` into a reused uint8 buffer, then per channel (B, G, R into
    blob planes 2, 1, 0) ``cv2.extractChannel`` into a reused uint8 plane and one numpy pass
    that converts it to float32 and scales it by 1/255 straight into the blob. Both read and
    write memory in order, which is faster than one pass over the transposed HWC view. The
    borders are filled only when the geometry changes. The values are bit-identical to
    ``cv2.dnn.blobFromImage(resized, 1/255, swapRB=True)``."""

    def __init__(self, size: int, out: Optional[np.ndarray] = None):
        self.size = size
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
        if (lb.new_w, lb.new_h) != (w, h):
            frame = cv2.resize(frame, (lb.new_w, lb.new_h), dst=self._resized,
                               interpolation=cv2.INTER_LINEAR)
        inner = self.blob[0, :, lb.top:lb.top + lb.new_h, lb.left:lb.left + lb.new_w]
        frame = np.ascontiguousarray(frame)
        for c in range(3):             # blob plane c (RGB) <- frame channel 2 - c (BGR)
            plane = cv2.extractChannel(frame, 2 - c, dst=self._planes[c])
            # float32(v) * float32(1/255): the same single rounding as OpenCV's convertTo.
            np.multiply(plane, SCALE, out=inner[c], casting="unsafe")
        self._last = lb
        return self.blob, lb


def letterbox(frame: np.ndarray, size: int):
    """One-off letterbox (allocates a new blob)."""
    return Preprocessor(size)(frame)
