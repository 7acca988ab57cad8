"""Overlay: boxes, class names and scores, and an FPS / latency line, drawn with OpenCV; with
tracking, each box in its track's colour with its ``#id`` and a short trail of its centres."""
from __future__ import annotations

import colorsys
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..detection import Detection

FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_color(class_id: int) -> Tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue steps)."""
    h = (class_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _label(image: np.ndarray, text: str, x: int, y: int, color, scale: float, thick: int,
           text_color=(0, 0, 0)) -> None:
    """Text on a filled box whose top-left corner is near (x, y), kept inside the image."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    h, w = image.shape[:2]
    x = max(0, min(x, w - tw - 4))
    y = max(0, min(y, h - th - base - 4))
    cv2.rectangle(image, (x, y), (x + tw + 4, y + th + base + 4), color, -1)
    cv2.putText(image, text, (x + 2, y + th + 2), FONT, scale, text_color, thick, cv2.LINE_AA)


def track_color(track_id: int) -> Tuple[int, int, int]:
    """A stable colour per track (the class palette, offset so that ids and classes differ)."""
    return class_color(track_id * 7 + 3)


def draw_trails(image: np.ndarray, trails: Dict[int, Sequence[Tuple[float, float]]],
                thick: int) -> None:
    """Each track's recent centres as a line, oldest to newest, in the track's colour."""
    for track_id, points in trails.items():
        if len(points) < 2:
            continue
        pts: List[List[int]] = [[int(round(x)), int(round(y))] for x, y in points]
        cv2.polylines(image, [np.asarray(pts, np.int32)], False, track_color(track_id), thick,
                      cv2.LINE_AA)


def draw(image: np.ndarray, detections: Iterable[Detection], fps: Optional[float] = None,
         latency_ms: Optional[float] = None,
         trails: Optional[Dict[int, Sequence[Tuple[float, float]]]] = None) -> np.ndarray:
    """Draw in place on the BGR ``image`` (and return it). ``trails``: track id -> recent
    box centres (``Tracker.trails()``)."""
    h, w = image.shape[:2]
    unit = max(min(h, w) / 480.0, 0.35)
    thick = max(1, int(round(2 * unit)))
    scale = 0.5 * unit
    text_thick = max(1, int(round(unit)))
    if trails:
        draw_trails(image, trails, thick)
    for d in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in d.box)
        tracked = getattr(d, "track_id", None) is not None
        color = track_color(d.track_id) if tracked else class_color(d.class_id)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, thick)
        text = f"{d.class_name} {d.score:.2f}"
        if tracked:
            text = f"#{d.track_id} {text}"
        _label(image, text, x1, y1 - int(18 * unit), color, scale, text_thick)
    parts = []
    if fps is not None:
        parts.append(f"{fps:.1f} FPS")
    if latency_ms is not None:
        parts.append(f"latency {latency_ms:.0f} ms")
    if parts:
        _label(image, "  ".join(parts), 0, 0, (32, 32, 32), scale, text_thick, (255, 255, 255))
    return image
