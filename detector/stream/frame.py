"""``Frame``: one captured frame on its way through the pipeline, with what each stage adds."""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np


class Frame:
    """One frame on its way through the pipeline: ``index`` (per source, from 0), ``image``
    (BGR), ``origin`` (the source text, or the image's path), capture time and per-stage
    ``times``; the network input (``blob``, ``lb``) and output (``raw``) while in flight;
    ``detections`` once decoded. ``name`` is the source's name in a run over several
    sources, ``trails`` the tracks' recent centres where the run tracks and draws, and
    ``lane`` the pipeline's record of its source."""

    __slots__ = ("index", "image", "origin", "t_capture", "times", "blob", "lb", "raw",
                 "detections", "name", "trails", "lane")

    def __init__(self, index: int, image: np.ndarray, origin: str, t_capture: float,
                 capture_s: float, name: str = "", lane=None):
        self.index = index
        self.image = image
        self.origin = origin
        self.t_capture = t_capture
        self.times: Dict[str, float] = {"capture": capture_s}
        self.blob = None
        self.lb = None
        self.raw = None
        self.detections: List = []
        self.name = name
        self.trails: Optional[dict] = None
        self.lane = lane

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])
