"""One split of a dataset, whatever format holds it: images and their ground truth, indexed once.

Every reader (:mod:`.voc`, :mod:`.yolo`, :mod:`.coco`) builds its index into a
:class:`DatasetSplit` and so offers the same access::

    ds = open_dataset("data.yaml", "train")       # detector.data.dataset
    image_bgr, boxes, labels, difficult, image_id = ds[0]
    ann = ds.annotations(0)                       # the same without reading the image
    ds.names, ds.image_ids, ds.skipped, ds.summary()

Boxes are float32 ``[N, 4]`` *VOC coordinates* (1-based inclusive, see
:mod:`detector.data.boxes`) in every format: YOLO and COCO boxes, which are continuous pixel
boxes, are converted exactly (``voc = (x1 + 1, y1 + 1, x2, y2)``), so the same detections
score the same whichever format holds the labels. ``difficult`` marks objects evaluation
ignores (VOC's difficult, COCO's crowd).

Unusable items are skipped with a warning naming the file, and counted in ``skipped`` by
kind (:data:`SKIP_KINDS`); at most :data:`MAX_WARNINGS` warnings per kind are printed one by
one, and one summary line per kind at the end. Warnings go to the ``detector.data`` logger.
"""
from __future__ import annotations

import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from .images import read_image
from .index_cache import cache_file, cached_records

log = logging.getLogger("detector.data")

MAX_WARNINGS = 20
MAX_OBJECTS = 10000
SKIP_KINDS = ("image", "annotation", "duplicate", "unknown_class", "bad_box")


class Annotation(NamedTuple):
    """Ground truth of one image. ``boxes``: float32 [N, 4] VOC coordinates."""
    image_id: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray       # int64 [N], indices into names
    difficult: np.ndarray    # bool [N]


class Sample(NamedTuple):
    """One dataset item: the decoded image (BGR uint8 HxWx3) and its ground truth."""
    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    image_id: str


class AnnotationError(ValueError):
    """An annotation or label file that cannot be used (message without the file name)."""


class Warner:
    """Warnings of one kind printed one by one up to :data:`MAX_WARNINGS`, then counted."""

    def __init__(self, what: str):
        self.what, self.counts = what, {}

    def warn(self, kind: str, msg: str) -> None:
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= MAX_WARNINGS:
            log.warning("%s", msg)
        elif n == MAX_WARNINGS + 1:
            log.warning("%s: more %s problems; not printing them one by one", self.what, kind)


def pixel_boxes_to_voc(boxes, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """Continuous pixel boxes ``[N, 4]`` (x1, y1, x2, y2) clipped to the image, as VOC
    coordinates, and a mask of the boxes that keep an area after clipping."""
    b = np.array(boxes, np.float64).reshape(-1, 4)
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, float(width))
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, float(height))
    keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    b[:, 0:2] += 1.0
    return b, keep


class DatasetSplit:
    """The index of one split: image ids, image paths and annotations, in order.

    Subclasses fill it with :meth:`_add` (and :meth:`_skip`, :meth:`_unknown`, the counts)
    and call :meth:`_report` at the end. Picklable (works with torch's DataLoader workers).
    """

    format = ""

    def __init__(self, config, split: str, names: Optional[Sequence[str]]):
        self.config = config
        self.split = split
        self.names: List[str] = list(names) if names is not None else list(config.names or [])
        self.skipped: Dict[str, int] = {k: 0 for k in SKIP_KINDS}
        self.skipped_files: List[Tuple[str, str]] = []
        self.unknown_classes: Dict[str, int] = {}
        self._where = f"{config.path} split '{split}'"
        self._warner = Warner(self._where)
        self._ids: List[str] = []
        self._images: List[str] = []
        self._anns: List[Annotation] = []

    # -- building ------------------------------------------------------------------------
    def _add(self, image_id: str, image_path: str, ann: Annotation) -> None:
        self._ids.append(image_id)
        self._images.append(image_path)
        self._anns.append(ann)

    def _skip(self, kind: str, path: str, why: str) -> None:
        self.skipped[kind] += 1
        self.skipped_files.append((path, why))
        self._warner.warn(kind, f"{path}: {why}; skipped")

    def _indexed(self, kind: str, items, sources: Sequence[str], read, cache,
                 verify_images: bool, workers: int, cache_format: int):
        """The ``(image_id, annotation_path, image_path, record)`` of every item whose files
        read (``read(files, stats, verify_images)``, cached per file state under ``cache``);
        items whose annotation or image failed are skipped and counted here."""
        flag = "\0v" if verify_images else ""
        keyed = [(ann + "\0" + img + flag, (ann, img)) for _, ann, img in items]
        records = cached_records(keyed, lambda files, st: read(files, st, verify_images),
                                 cache_file(kind, cache, sources), cache_format, workers)
        for (image_id, ann, img), (key, _) in zip(items, keyed):
            rec = records[key]
            if "ann_error" in rec:
                self._skip("annotation", ann, rec["ann_error"])
            elif "img_error" in rec:
                self._skip("image", img, rec["img_error"])
            else:
                yield image_id, ann, img, rec

    def _unknown(self, name: str) -> None:
        self.skipped["unknown_class"] += 1
        self.unknown_classes[name] = self.unknown_classes.get(name, 0) + 1

    def _bad_box(self, where: str, name: str, width: int, height: int) -> None:
        self.skipped["bad_box"] += 1
        self._warner.warn("bad_box", f"{where}: object {name!r} has an empty or inverted box "
                          f"after clipping to {width}x{height}; object skipped")

    def _report(self) -> None:
        kinds = ("image", "annotation", "duplicate")
        bad = sum(self.skipped[k] for k in kinds)
        if bad:
            what = ", ".join(f"{self.skipped[k]} {k}" for k in kinds if self.skipped[k])
            log.warning("%s: skipped %d of %d listed images (%s); %d left", self._where, bad,
                        bad + len(self._ids), what, len(self._ids))
        if self.unknown_classes:
            what = ", ".join(f"{n} ({c})" for n, c in sorted(self.unknown_classes.items()))
            log.warning("%s: ignored %d objects of classes not in names: %s", self._where,
                        self.skipped["unknown_class"], what)
        if self.skipped["bad_box"]:
            log.warning("%s: ignored %d objects with empty or inverted boxes", self._where,
                        self.skipped["bad_box"])

    # -- access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def image_ids(self) -> List[str]:
        return list(self._ids)

    def image_path(self, i: int) -> str:
        return self._images[i]

    def annotations(self, i: int) -> Annotation:
        """Ground truth of item ``i`` (copies; the image is not read)."""
        a = self._anns[i]
        return a._replace(boxes=a.boxes.copy(), labels=a.labels.copy(),
                          difficult=a.difficult.copy())

    def all_annotations(self) -> List[Annotation]:
        return [self.annotations(i) for i in range(len(self))]

    def __getitem__(self, i: int) -> Sample:
        """(image BGR uint8, boxes float32 [N,4] VOC coords, labels int64 [N], difficult bool
        [N], image_id). An image that fails to decode now (changed since the index was built)
        is reported and replaced by the next one."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        i %= n
        for k in range(n):
            j = (i + k) % n
            img = read_image(self._images[j])
            if img is not None:
                a = self.annotations(j)
                if img.shape[1] != a.width or img.shape[0] != a.height:
                    log.warning("%s: image is %dx%d, index says %dx%d (changed since the "
                                "index was built?)", self._images[j], img.shape[1],
                                img.shape[0], a.width, a.height)
                return Sample(img, a.boxes, a.labels, a.difficult, a.image_id)
            self.skipped["image"] += 1
            log.warning("%s: cannot decode image; using the next item instead", self._images[j])
        raise UserError(f"{self._where}: no image could be decoded")

    def summary(self) -> str:
        objs = sum(len(a.labels) for a in self._anns)
        diff = sum(int(a.difficult.sum()) for a in self._anns)
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped.items() if v) or "none"
        return (f"{self._where}: {len(self)} images, {objs} objects ({diff} difficult), "
                f"{len(self.names)} classes; skipped: {skipped}")

    # -- COCO results JSON -------------------------------------------------------------
    def coco_image_ids(self) -> Dict[str, Union[int, str]]:
        """Image id -> the ``image_id`` a COCO results JSON gives this image: the number
        when the id is all digits (as ultralytics writes it), else the id itself. The COCO
        reader gives the ids of its annotation file instead. Ids whose numbers collide
        (``01`` and ``1``) keep their strings."""
        nums: Dict[int, int] = {}
        for i in self._ids:
            if i.isdigit():
                nums[int(i)] = nums.get(int(i), 0) + 1
        return {i: int(i) if i.isdigit() and nums[int(i)] == 1 else i for i in self._ids}

    def coco_category_ids(self) -> List[Optional[int]]:
        """Class index -> the ``category_id`` of a COCO results JSON: index + 1 (the
        convention of COCO files written by ``detector synth`` and of ultralytics' results
        on non-COCO data). The COCO reader gives its annotation file's ids instead (None
        for a class without a category there)."""
        return list(range(1, len(self.names) + 1))


def voc_annotation(image_id: str, width: int, height: int, boxes, labels, difficult
                   ) -> Annotation:
    return Annotation(image_id, int(width), int(height),
                      np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64),
                      np.array(difficult, bool).reshape(-1))
