"""YOLO (ultralytics) reader: one split of a dataset YAML in the YOLO layout, labels cached.

Images of an entry: the image files of a folder (recursively, sorted; ``.jpg .jpeg .png .bmp
.tif .tiff .webp`` in any case), or the lines of a list file (one image path a line, relative
to the YAML's ``path``; blank lines and ``#`` comments skipped). Labels: the image path with
its last ``images`` folder replaced by ``labels`` and its extension by ``.txt``; one object a
line, ``class cx cy w h`` normalised to [0, 1] by the image width and height (a polygon line
``class x1 y1 x2 y2 x3 y3 ...`` counts as its bounding box). The continuous pixel box
``((cx - w/2) W, (cy - h/2) H, (cx + w/2) W, (cy + h/2) H)`` becomes VOC coordinates exactly
as :mod:`detector.data.boxes` says, so YOLO and VOC labels of the same boxes are the same
annotations.

Image ids: the image's path relative to its folder entry (for a list file: to the folder
holding all its images), without the extension, ``/``-separated (whitespace and ``%`` escaped
as ``%XX``); so ``images/val/000005.jpg`` is ``000005`` as in a VOCdevkit. An id already taken
by another file gets the path relative to ``path`` instead; a file listed twice is used once.

Rules (VOC's where the case is the same, see :mod:`.voc`):

* A missing folder or list file, or an image outside any ``images`` folder (it has no labels
  folder) is a :class:`UserError`; so is a split where no image has a label file.
* A missing label file is an image without objects (the YOLO convention), counted in
  ``unlabelled`` and reported in one warning; an empty label file is one too.
* A malformed label line (not numbers, a class that is not a whole number, a wrong count) skips
  the image with a warning naming the file and the line (counted as ``annotation``).
* A class out of range of ``names`` skips that object, counted as ``unknown_class`` with a
  warning naming the file and line. A box is clipped to the image; one left without area is
  skipped and counted as ``bad_box``. A missing or undecodable image is skipped and counted.
* Label rows and image sizes are cached in the ``yolo`` folder of the user cache, keyed by the
  entries, each reused only while its label file and image keep their size and mtime.
"""
from __future__ import annotations

import math
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from .dataset_yaml import DatasetConfig, FileSource, load_dataset_yaml
from .images import image_size, is_image_file
from .split import (MAX_OBJECTS, AnnotationError, DatasetSplit, log, pixel_boxes_to_voc,
                    voc_annotation)

MAX_LABEL_BYTES = 4 * 1024 * 1024
CACHE_FORMAT = "fastdsc-yolo-yolo-cache"
_ESCAPE = re.compile(r"[\s%]")


def parse_yolo_labels(data: bytes) -> List[list]:
    """``[[line, class, x1, y1, x2, y2], ...]`` (corners normalised) of a label file's bytes;
    :class:`AnnotationError` naming the line for anything unusable."""
    if len(data) > MAX_LABEL_BYTES:
        raise AnnotationError(f"larger than {MAX_LABEL_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise AnnotationError("not UTF-8 text") from None
    rows = []
    for ln, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(rows) >= MAX_OBJECTS:
            raise AnnotationError(f"more than {MAX_OBJECTS} objects")
        rows.append([ln, *_parse_row(parts, ln, line)])
    return rows


def _parse_row(parts: List[str], ln: int, line: str) -> list:
    try:
        v = [float(p) for p in parts]
    except ValueError:
        raise AnnotationError(f"line {ln}: expected numbers 'class cx cy w h', got "
                              f"{line.strip()[:60]!r}") from None
    if not all(math.isfinite(x) for x in v):
        raise AnnotationError(f"line {ln}: non-finite number in {line.strip()[:60]!r}")
    if v[0] != int(v[0]):
        raise AnnotationError(f"line {ln}: class {parts[0]!r} is not a whole number")
    if len(v) == 5:
        cx, cy, w, h = v[1:]
        return [int(v[0]), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    if len(v) >= 7 and len(v) % 2 == 1:
        xs, ys = v[1::2], v[2::2]
        return [int(v[0]), min(xs), min(ys), max(xs), max(ys)]
    raise AnnotationError(f"line {ln}: expected 'class cx cy w h' (5 numbers) or a polygon "
                          f"'class x1 y1 x2 y2 x3 y3 ...', got {len(v)} numbers")


def label_path(image: str) -> Optional[str]:
    """The label file of ``image``: its last ``images`` folder replaced by ``labels``, the
    extension by ``.txt``; None when no folder of its path is called ``images``."""
    parts = os.path.normpath(image).split(os.sep)
    folders = parts[:-1]
    if "images" not in folders:
        return None
    i = len(folders) - 1 - folders[::-1].index("images")
    parts[i] = "labels"
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


def _escape(image_id: str) -> str:
    return _ESCAPE.sub(lambda m: "%%%02X" % ord(m.group()), image_id)


def _id_of(path: str, base: str) -> str:
    rel = os.path.relpath(path, base)
    return _escape(os.path.splitext(rel)[0].replace(os.sep, "/"))


def _folder_images(folder: str) -> List[str]:
    out = []
    for d, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        out += [os.path.join(d, f) for f in sorted(files) if is_image_file(f)]
    return out


def _list_images(src: FileSource, root: str) -> List[str]:
    try:
        with open(src.path, "r", encoding="utf-8-sig", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UserError(f"{src.path}: cannot read list file: {e.strerror}") from None
    out = []
    for line in lines:
        s = line.strip()
        if s and not s.startswith("#"):
            out.append(os.path.normpath(os.path.join(root, os.path.expanduser(s))))
    return out


def entry_images(config: DatasetConfig, src: FileSource) -> List[Tuple[str, str]]:
    """``[(image path, short id)]`` of one entry, in order (listed images may not exist)."""
    if src.kind == "folder":
        return [(p, _id_of(p, src.path)) for p in _folder_images(src.path)]
    paths = _list_images(src, config.root)
    if not paths:
        return []
    base = os.path.commonpath([os.path.dirname(p) for p in paths])
    return [(p, _id_of(p, base)) for p in paths]


def split_image_paths(config: DatasetConfig, split: str) -> List[str]:
    """Every image path of ``split`` in order, each once (no label is read)."""
    seen, out = set(), []
    for src in config.yolo_sources(split):
        for p, _ in entry_images(config, src):
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


class YOLODataset(DatasetSplit):
    """One split of a YOLO-layout dataset; arguments and access as :class:`.voc.VOCDataset`.
    ``unlabelled``: how many images have no label file (no objects)."""

    format = "yolo"

    def __init__(self, data: Union[str, DatasetConfig], split: str = "val",
                 names: Optional[Sequence[str]] = None, cache: Union[bool, str] = True,
                 verify_images: bool = True, workers: int = 4):
        config = data if isinstance(data, DatasetConfig) else load_dataset_yaml(data)
        super().__init__(config, split, names)
        self.sources: List[FileSource] = config.yolo_sources(split)
        self.unlabelled = 0
        self._build(cache, verify_images, max(1, int(workers)))

    def _items(self) -> List[Tuple[str, str, str]]:
        """``[(image id, label path, image path)]`` of the split, duplicates removed."""
        items, by_id, seen = [], {}, set()
        for src in self.sources:
            for img, short in entry_images(self.config, src):
                if img in seen:
                    self.skipped["duplicate"] += 1
                    self._warner.warn("duplicate", f"{img}: listed twice in split "
                                      f"'{self.split}' (again by {src.entry}); skipped")
                    continue
                seen.add(img)
                label = label_path(img)
                if label is None:
                    raise UserError(f"{self.config.path}: split '{self.split}' entry "
                                    f"'{src.entry}': {img} is not inside an 'images' folder, "
                                    f"so it has no mirrored 'labels' folder")
                image_id = short if short not in by_id else _id_of(img, self.config.root)
                if image_id in by_id:
                    image_id = _escape(os.path.splitext(img)[0].replace(os.sep, "/"))
                by_id[image_id] = img
                items.append((image_id, label, img))
        return items

    def _build(self, cache, verify_images: bool, workers: int) -> None:
        items = self._items()
        index = {n: i for i, n in enumerate(self.names)}
        for image_id, label, img, rec in self._indexed(
                "yolo", items, [s.path for s in self.sources], _read_entry, cache,
                verify_images, workers, CACHE_FORMAT):
            self.unlabelled += int(bool(rec.get("no_label")))
            self._add(image_id, img, self._make_annotation(image_id, label, rec, index))
        if items and self.unlabelled == len(items):
            raise UserError(f"{self._where}: none of the {len(items)} images has a label file "
                            f"(e.g. {items[0][1]}; labels/ mirrors images/)")
        if self.unlabelled:
            log.warning("%s: %d images have no label file; they are images without objects",
                        self._where, self.unlabelled)
        self._report()

    def _make_annotation(self, image_id: str, label: str, rec: dict, index: Dict[str, int]):
        w, h = (int(v) for v in rec["image_size"])
        file_names = self.config.names
        boxes, labels, lines = [], [], []
        for ln, c, x1, y1, x2, y2 in rec.get("rows", []):
            if not 0 <= c < len(file_names):
                self._unknown(f"class {c}")
                self._warner.warn("unknown_class", f"{label}: line {ln}: class {c} is out of "
                                  f"range (names has {len(file_names)} classes, 0 to "
                                  f"{len(file_names) - 1}); object skipped")
                continue
            k = index.get(file_names[c])
            if k is None:
                self._unknown(file_names[c])
                continue
            boxes.append((x1 * w, y1 * h, x2 * w, y2 * h))
            labels.append(k)
            lines.append(ln)
        voc, keep = pixel_boxes_to_voc(boxes, w, h)
        for j in np.flatnonzero(~keep):
            self._bad_box(f"{label}: line {lines[j]}", self.names[labels[j]], w, h)
        return voc_annotation(image_id, w, h, voc[keep], np.array(labels, np.int64)[keep],
                              np.zeros(int(keep.sum()), bool))


def _read_entry(files: Tuple[str, ...], st, verify_images: bool) -> dict:
    label, img = files
    rec: dict = {}
    if st[0] is None:
        rec["no_label"] = True
    else:
        try:
            with open(label, "rb") as f:
                rec["rows"] = parse_yolo_labels(f.read(MAX_LABEL_BYTES + 1))
        except AnnotationError as e:
            return {"ann_error": str(e)}
        except OSError as e:
            return {"ann_error": f"cannot read: {e.strerror}"}
    if st[1] is None:
        return {"img_error": "missing image file"}
    size = image_size(img, decode=verify_images)
    if isinstance(size, str):
        return {"img_error": size}
    rec["image_size"] = size
    return rec
