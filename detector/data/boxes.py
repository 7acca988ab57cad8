"""Box coordinate conventions used by the data and evaluation code.

Two conventions exist, and every function says which one it takes:

*VOC coordinates* (``voc``): what the VOC XML annotations and the devkit results files hold.
  ``xmin, ymin, xmax, ymax`` are 1-based and *inclusive*: ``xmin = 1`` is the first pixel
  column and a box covering exactly one pixel has ``xmin == xmax``. Its width is
  ``xmax - xmin + 1``, which is why the devkit's IoU adds 1.

*Pixel coordinates* (``pixel``): continuous, 0-based, edges between pixels; pixel column
  ``i`` covers ``[i, i + 1)``. This is the frame the network, letterbox and detections
  (``detector.Detection.box``, detect's JSON) use. An image W pixels wide spans ``[0, W]``.

The exact conversion between the two (a VOC box covers the pixels ``xmin..xmax``, i.e. the
continuous interval ``[xmin - 1, xmax]``)::

    pixel = (xmin - 1, ymin - 1, xmax, ymax)
    voc   = (x1 + 1,   y1 + 1,   x2,   y2)

so a detection box in pixels written with :func:`pixel_to_voc` and read back with
:func:`voc_to_pixel` is unchanged, and a perfect detection of a VOC box scores IoU 1 under the
devkit's +1 rule. (Darknet subtracts 1 from both corners instead; that loses one pixel of
width and is not used here.)
"""
from __future__ import annotations

import numpy as np


def voc_to_pixel(boxes) -> np.ndarray:
    """VOC ``[N, 4]`` (1-based inclusive) -> pixel ``[N, 4]`` (0-based continuous edges)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    b[:, 0:2] -= 1.0
    return b


def pixel_to_voc(boxes) -> np.ndarray:
    """Pixel ``[N, 4]`` (0-based continuous edges) -> VOC ``[N, 4]`` (1-based inclusive)."""
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    b[:, 0:2] += 1.0
    return b


def xyxy_to_cxcywh(boxes) -> np.ndarray:
    """``[N, 4]`` corners -> centre and size (same units)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                     b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """``[N, 4]`` centre and size -> corners (same units)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2,
                     b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], axis=1)
