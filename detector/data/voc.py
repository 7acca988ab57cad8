"""PASCAL VOC reader: one split of a dataset YAML (VOCdevkit layout), annotations cached.

::

    ds = VOCDataset("data/voc.yaml", "train")
    image_bgr, boxes, labels, difficult, image_id = ds[0]
    ann = ds.annotations(0)            # the same without reading the image
    ds.names, ds.image_ids, ds.skipped

Boxes are in *VOC coordinates* exactly as written in the XML (1-based, inclusive; see
:mod:`detector.data.boxes`), clipped to the image. ``difficult`` objects are kept and flagged.

Robustness rules:

* A missing directory or list file is a :class:`UserError` (see :mod:`.dataset_yaml`).
* A corrupt item (unreadable/undecodable image, missing image, malformed XML, XML with
  entity declarations or external references -- billion laughs, XXE -- rejected by defusedxml)
  is skipped with a warning that names the file, and counted in ``skipped``.
* An object whose class is not in ``names`` is skipped; the counts per unknown name are
  reported in one warning. An object with an empty or inverted box is skipped and counted.
* Every image is decoded once when the index is built, so corrupt images are found before
  training starts. The parsed annotations and image sizes are cached in the ``voc`` folder of
  the user cache (:func:`detector.host.cache_dir`), keyed by the list files; each
  entry is reused only while its XML and image have the same size and mtime, anything else is
  re-read. The cache holds raw class names, so changing ``names`` needs no rebuild.

Warnings go to the ``detector.data`` logger (printed on stderr when logging is not
configured). At most :data:`MAX_WARNINGS` per kind are printed individually.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from ..host import cache_dir as user_cache_dir
from ..io.atomic import atomic_write_bytes
from .dataset_yaml import DatasetConfig, ListSource, load_dataset_yaml

log = logging.getLogger("detector.data")

MAX_WARNINGS = 20
MAX_XML_BYTES = 4 * 1024 * 1024
MAX_OBJECTS = 10000
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
CACHE_FORMAT = "fastdsc-yolo-voc-cache"
CACHE_VERSION = 1
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
    """A VOC XML annotation that cannot be used (message without the file name)."""


# ---- XML -------------------------------------------------------------------------------

def parse_voc_xml(data: bytes) -> dict:
    """Parse VOC annotation XML bytes into ``{"size": [w, h] or None, "objects": [[name,
    difficult, xmin, ymin, xmax, ymax], ...]}`` with raw class names and coordinates.

    Raises :class:`AnnotationError` for anything unusable: not XML, entity declarations or
    external references (rejected by defusedxml), wrong root, missing or non-numeric fields,
    too large. Never raises anything else.
    """
    if len(data) > MAX_XML_BYTES:
        raise AnnotationError(f"larger than {MAX_XML_BYTES // (1024 * 1024)} MiB")
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import fromstring
    try:
        root = fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as e:
        raise AnnotationError(f"unsafe XML rejected ({type(e).__name__})") from None
    except Exception as e:  # ParseError, encoding LookupError, ...: all mean "not usable XML"
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise AnnotationError(f"malformed XML ({msg})") from None
    if root.tag != "annotation":
        raise AnnotationError(f"root element is <{str(root.tag)[:40]}>, expected <annotation>")

    size = None
    s = root.find("size")
    if s is not None:
        w, h = _opt_number(s, "width"), _opt_number(s, "height")
        if w is not None and h is not None and w >= 1 and h >= 1:
            size = [int(round(w)), int(round(h))]

    objects = []
    for k, obj in enumerate(root.findall("object")):
        if k >= MAX_OBJECTS:
            raise AnnotationError(f"more than {MAX_OBJECTS} objects")
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationError(f"object {k + 1}: missing <name>")
        diff = _opt_number(obj, "difficult")
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"object {k + 1} ({name[:40]}): missing <bndbox>")
        coords = []
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            v = _opt_number(bb, tag)
            if v is None:
                raise AnnotationError(f"object {k + 1} ({name[:40]}): missing <{tag}>")
            coords.append(v)
        objects.append([name, bool(diff), *coords])
    return {"size": size, "objects": objects}


def _opt_number(elem, tag) -> Optional[float]:
    text = elem.findtext(tag)
    if text is None or not text.strip():
        return None
    try:
        v = float(text.strip())
    except ValueError:
        raise AnnotationError(f"<{tag}> is not a number: {text.strip()[:40]!r}") from None
    if not math.isfinite(v):
        raise AnnotationError(f"<{tag}> is not finite: {text.strip()[:40]!r}")
    return v


# ---- images ----------------------------------------------------------------------------

def read_image(path: str) -> Optional[np.ndarray]:
    """Decode an image file as BGR uint8 HxWx3 (EXIF orientation ignored, as the annotations
    are in stored pixel order); None when the file cannot be read or decoded."""
    import cv2
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if buf.size == 0:
        return None
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except (cv2.error, MemoryError):   # more pixels than memory allows (a PNG bomb)
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        return None
    return img


def _image_size(path: str):
    img = read_image(path)
    if img is None:
        return "cannot decode image (corrupt, truncated or not an image)"
    return [int(img.shape[1]), int(img.shape[0])]


# ---- cache -----------------------------------------------------------------------------

def _stat(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [int(st.st_mtime_ns), int(st.st_size)]


def _load_cache(path: Optional[str]) -> dict:
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        if data.get("format") != CACHE_FORMAT or data.get("version") != CACHE_VERSION:
            return {}
        entries = data["entries"]
        return entries if isinstance(entries, dict) else {}
    except Exception:  # an unreadable cache is rebuilt, never an error
        log.debug("ignoring unreadable cache %s", path)
        return {}


def _save_cache(path: Optional[str], entries: dict) -> None:
    if not path:
        return
    blob = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "entries": entries},
                      separators=(",", ":")).encode("utf-8")
    try:
        atomic_write_bytes(path, blob)
    except OSError as e:
        log.debug("cannot write cache %s: %s", path, e)


# ---- dataset ---------------------------------------------------------------------------

class _Warner:
    def __init__(self, what: str):
        self.what, self.counts = what, {}

    def warn(self, kind: str, msg: str) -> None:
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= MAX_WARNINGS:
            log.warning("%s", msg)
        elif n == MAX_WARNINGS + 1:
            log.warning("%s: more %s problems; not printing them one by one", self.what, kind)


class VOCDataset:
    """One split of a VOC-layout dataset. Picklable (works with torch's DataLoader workers).

    ``data``: a dataset YAML path or a loaded :class:`DatasetConfig`. ``split``: a split key
    of the YAML. ``names``: override the YAML's class names (e.g. a model's). ``cache``: True
    (default cache dir), a directory, or False. ``verify_images``: decode every image once
    when the index is built (cached) to find corrupt files; with False only existence is
    checked and a corrupt image is found (and replaced by the next item) when loaded.
    """

    def __init__(self, data: Union[str, DatasetConfig], split: str = "val",
                 names: Optional[Sequence[str]] = None, cache: Union[bool, str] = True,
                 verify_images: bool = True, workers: int = 4):
        self.config = data if isinstance(data, DatasetConfig) else load_dataset_yaml(data)
        self.split = split
        self.names: List[str] = list(names) if names is not None else list(self.config.names)
        self.sources: List[ListSource] = self.config.sources(split)
        self.skipped: Dict[str, int] = {k: 0 for k in SKIP_KINDS}
        self.skipped_files: List[Tuple[str, str]] = []
        self.unknown_classes: Dict[str, int] = {}
        self._where = f"{self.config.path} split '{split}'"
        self._build(cache, verify_images, max(1, int(workers)))

    # -- index --------------------------------------------------------------------------
    def _read_lists(self, warner: _Warner) -> List[Tuple[str, str, str]]:
        """[(image_id, annotation path, image path)] in list order, duplicates removed."""
        items, seen = [], {}
        for src in self.sources:
            try:
                with open(src.list_file, "r", encoding="utf-8", errors="replace") as f:
                    lines = f.read().splitlines()
            except OSError as e:
                raise UserError(f"{src.list_file}: cannot read list file: {e.strerror}") from None
            for ln, line in enumerate(lines, 1):
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                image_id = parts[0]
                if "/" in image_id or image_id in (".", ".."):
                    raise UserError(f"{src.list_file}: line {ln}: bad image id {image_id!r}")
                if image_id in seen:
                    self.skipped["duplicate"] += 1
                    warner.warn("duplicate", f"{src.list_file}: line {ln}: image id "
                                f"{image_id!r} already listed by {seen[image_id]}; skipped")
                    continue
                seen[image_id] = src.list_file
                ann = os.path.join(src.annotations_dir, image_id + ".xml")
                img = os.path.join(src.images_dir, image_id + ".jpg")
                if not os.path.exists(img):
                    for ext in IMAGE_EXTS[1:]:
                        alt = os.path.join(src.images_dir, image_id + ext)
                        if os.path.exists(alt):
                            img = alt
                            break
                items.append((image_id, ann, img))
        return items

    def _cache_path(self, cache) -> Optional[str]:
        if cache is False or cache is None:
            return None
        d = user_cache_dir("voc") if cache is True else os.fspath(cache)
        key = "\n".join(os.path.abspath(s.list_file) for s in self.sources)
        return os.path.join(d, hashlib.sha1(key.encode("utf-8")).hexdigest()[:20] + ".json")

    def _build(self, cache, verify_images: bool, workers: int) -> None:
        warner = _Warner(self._where)
        items = self._read_lists(warner)
        cache_path = self._cache_path(cache)
        old = _load_cache(cache_path)
        new: Dict[str, list] = {}
        todo = []
        for _, ann, img in items:
            key = ann + "\0" + img + ("\0v" if verify_images else "")
            st = [_stat(ann), _stat(img)]
            prev = old.get(key)
            if isinstance(prev, list) and len(prev) == 2 and prev[0] == st \
                    and isinstance(prev[1], dict):
                new[key] = prev
            else:
                todo.append((key, ann, img, st))
        if todo:
            def work(t):
                key, ann, img, st = t
                return key, [st, self._read_entry(ann, img, st, verify_images)]
            if workers > 1 and len(todo) > 32:
                with ThreadPoolExecutor(workers) as ex:
                    new.update(ex.map(work, todo))
            else:
                new.update(map(work, todo))
        if cache_path and (todo or len(old) != len(new)) and _can_make(cache_path):
            _save_cache(cache_path, new)

        index = {n: i for i, n in enumerate(self.names)}
        self._ids: List[str] = []
        self._images: List[str] = []
        self._anns: List[Annotation] = []
        for image_id, ann, img in items:
            key = ann + "\0" + img + ("\0v" if verify_images else "")
            rec = new[key][1]
            if "ann_error" in rec:
                self._skip("annotation", ann, rec["ann_error"], warner)
                continue
            if "img_error" in rec:
                self._skip("image", img, rec["img_error"], warner)
                continue
            a = self._make_annotation(image_id, ann, rec, index, warner)
            if a is None:
                continue
            self._ids.append(image_id)
            self._images.append(img)
            self._anns.append(a)
        bad = sum(self.skipped[k] for k in ("image", "annotation", "duplicate"))
        if bad:
            what = ", ".join(f"{self.skipped[k]} {k}" for k in ("image", "annotation", "duplicate")
                             if self.skipped[k])
            log.warning("%s: skipped %d of %d listed images (%s); %d left", self._where, bad,
                        bad + len(self._ids), what, len(self._ids))
        if self.unknown_classes:
            what = ", ".join(f"{n} ({c})" for n, c in sorted(self.unknown_classes.items()))
            log.warning("%s: ignored %d objects of classes not in names: %s", self._where,
                        self.skipped["unknown_class"], what)
        if self.skipped["bad_box"]:
            log.warning("%s: ignored %d objects with empty or inverted boxes", self._where,
                        self.skipped["bad_box"])

    @staticmethod
    def _read_entry(ann: str, img: str, st, verify_images: bool) -> dict:
        rec: dict = {}
        if st[0] is None:
            return {"ann_error": "missing annotation file"}
        try:
            with open(ann, "rb") as f:
                data = f.read(MAX_XML_BYTES + 1)
            rec.update(parse_voc_xml(data))
        except AnnotationError as e:
            return {"ann_error": str(e)}
        except OSError as e:
            return {"ann_error": f"cannot read: {e.strerror}"}
        if st[1] is None:
            return {"img_error": "missing image file"}
        if verify_images:
            size = _image_size(img)
            if isinstance(size, str):
                return {"img_error": size}
            rec["image_size"] = size
        return rec

    def _skip(self, kind: str, path: str, why: str, warner: _Warner) -> None:
        self.skipped[kind] += 1
        self.skipped_files.append((path, why))
        warner.warn(kind, f"{path}: {why}; skipped")

    def _make_annotation(self, image_id, ann, rec, index, warner) -> Optional[Annotation]:
        size = rec.get("image_size") or rec.get("size")
        if size is None:
            img = self._image_path_for(image_id)
            s = _image_size(img) if img else "missing image file"
            if isinstance(s, str):
                self._skip("image", img or image_id, s, warner)
                return None
            size = s
        w, h = int(size[0]), int(size[1])
        xml_size = rec.get("size")
        if rec.get("image_size") and xml_size and list(xml_size) != list(rec["image_size"]):
            warner.warn("size", f"{ann}: <size> {xml_size[0]}x{xml_size[1]} differs from the "
                        f"image's {w}x{h}; using the image's")
        boxes, labels, diff = [], [], []
        for name, difficult, x1, y1, x2, y2 in rec.get("objects", []):
            c = index.get(name)
            if c is None:
                self.skipped["unknown_class"] += 1
                self.unknown_classes[name] = self.unknown_classes.get(name, 0) + 1
                continue
            x1, x2 = min(max(x1, 1.0), float(w)), min(max(x2, 1.0), float(w))
            y1, y2 = min(max(y1, 1.0), float(h)), min(max(y2, 1.0), float(h))
            if x2 < x1 or y2 < y1:
                self.skipped["bad_box"] += 1
                warner.warn("bad_box", f"{ann}: object {name!r} has an empty or inverted box "
                            f"after clipping to {w}x{h}; object skipped")
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(c)
            diff.append(bool(difficult))
        return Annotation(image_id, w, h, np.array(boxes, np.float32).reshape(-1, 4),
                          np.array(labels, np.int64), np.array(diff, bool))

    def _image_path_for(self, image_id) -> Optional[str]:
        for src in self.sources:
            for ext in IMAGE_EXTS:
                p = os.path.join(src.images_dir, image_id + ext)
                if os.path.exists(p):
                    return p
        return None

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


def _can_make(path: str) -> bool:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return True
    except OSError:
        return False
