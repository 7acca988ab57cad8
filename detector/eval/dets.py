"""The detections of a whole split, in one flat container, in VOC coordinates.

The evaluator adds each image's detections as it runs the network::

    dets = Detections()
    for i in range(len(ds)):
        sample = ds[i]
        dets.add_detections(sample.image_id, detector(sample.image))   # detector.Detection list
    # or dets.add(image_id, boxes_xyxy_pixels, scores, labels)

Boxes given in *pixel* coordinates (0-based continuous, the frame of ``detector.Detection``)
are converted to *VOC* coordinates (1-based inclusive) on the way in, see
:mod:`detector.data.boxes`; :func:`detector.eval.results.read_results` fills it from the
devkit results files, which are already VOC coordinates.
"""
from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple

import numpy as np

from ..data.boxes import pixel_to_voc


class Detections:
    def __init__(self):
        self._chunks: List[tuple] = []
        self._ids: List[str] = []
        self._flat = None

    def add(self, image_id: str, boxes_xyxy, scores, labels) -> None:
        """Detections of one image; ``boxes_xyxy`` in *pixel* coordinates."""
        self.add_voc(image_id, pixel_to_voc(boxes_xyxy), scores, labels)

    def add_voc(self, image_id: str, boxes_voc, scores, labels) -> None:
        """Detections of one image; ``boxes_voc`` in *VOC* coordinates."""
        b = np.asarray(boxes_voc, np.float64).reshape(-1, 4)
        s = np.asarray(scores, np.float64).reshape(-1)
        c = np.asarray(labels, np.int64).reshape(-1)
        if not len(b) == len(s) == len(c):
            raise ValueError("boxes, scores and labels differ in length")
        if len(b) == 0:
            return
        idx = len(self._ids)
        self._ids.append(str(image_id))
        self._chunks.append((np.full(len(b), idx, np.int64), c, s, b))
        self._flat = None

    def extend_voc(self, image_ids: Sequence[str], boxes_voc, scores, labels) -> None:
        """Detections of any images, one image id per detection, in order."""
        b = np.asarray(boxes_voc, np.float64).reshape(-1, 4)
        s = np.asarray(scores, np.float64).reshape(-1)
        c = np.asarray(labels, np.int64).reshape(-1)
        if not len(image_ids) == len(b) == len(s) == len(c):
            raise ValueError("image_ids, boxes, scores and labels differ in length")
        if len(b) == 0:
            return
        pos = {}
        idx = np.empty(len(b), np.int64)
        for k, iid in enumerate(image_ids):
            j = pos.get(iid)
            if j is None:
                j = pos[iid] = len(self._ids)
                self._ids.append(str(iid))
            idx[k] = j
        self._chunks.append((idx, c, s, b))
        self._flat = None

    def add_detections(self, image_id: str, detections: Iterable) -> None:
        """``detector.Detection`` objects (pixel boxes) of one image."""
        dl = list(detections)
        self.add(image_id, [d.box for d in dl], [d.score for d in dl],
                 [d.class_id for d in dl])

    def _arrays(self):
        if self._flat is None:
            if self._chunks:
                self._flat = tuple(np.concatenate(x) for x in zip(*self._chunks))
            else:
                self._flat = (np.zeros(0, np.int64), np.zeros(0, np.int64),
                              np.zeros(0, np.float64), np.zeros((0, 4), np.float64))
        return self._flat

    def __len__(self) -> int:
        return len(self._arrays()[0])

    @property
    def image_ids(self) -> List[str]:
        """Image id of every detection (in insertion order)."""
        return [self._ids[i] for i in self._arrays()[0]]

    @property
    def labels(self) -> np.ndarray:
        return self._arrays()[1]

    @property
    def scores(self) -> np.ndarray:
        return self._arrays()[2]

    @property
    def boxes(self) -> np.ndarray:
        """float64 [N, 4] VOC coordinates."""
        return self._arrays()[3]

    def distinct_image_ids(self) -> List[str]:
        return list(dict.fromkeys(self._ids))

    def for_class(self, c: int) -> Tuple[List[str], np.ndarray, np.ndarray]:
        """(image ids, scores, VOC boxes) of the detections of class ``c``, insertion order."""
        idx, lab, sc, bx = self._arrays()
        m = lab == c
        return [self._ids[i] for i in idx[m]], sc[m], bx[m]
