"""PASCAL VOC reader: one split of a dataset YAML (VOCdevkit layout), annotations cached.

::

    ds = VOCDataset("data/voc.yaml", "train")     # or open_dataset (detector.data.dataset)
    image_bgr, boxes, labels, difficult, image_id = ds[0]
    ann = ds.annotations(0)            # the same without reading the image
    ds.names, ds.image_ids, ds.skipped

The access is :class:`detector.data.split.DatasetSplit`'s, shared by every format.

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
  the user cache (:mod:`detector.data.index_cache`), keyed by the list files; each
  entry is reused only while its XML and image have the same size and mtime, anything else is
  re-read. The cache holds raw class names, so changing ``names`` needs no rebuild.

Warnings go to the ``detector.data`` logger (printed on stderr when logging is not
configured). At most :data:`MAX_WARNINGS` per kind are printed individually.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, UserError
from .dataset_yaml import DatasetConfig, ListSource, load_dataset_yaml
from .images import IMAGE_EXTS, image_size, read_image
from .split import (MAX_OBJECTS, MAX_WARNINGS, SKIP_KINDS, Annotation, AnnotationError,
                    DatasetSplit, Sample, voc_annotation)

__all__ = ["VOCDataset", "parse_voc_xml", "Annotation", "AnnotationError", "Sample",
           "read_image", "IMAGE_EXTS", "MAX_WARNINGS", "MAX_OBJECTS", "SKIP_KINDS"]

MAX_XML_BYTES = 4 * 1024 * 1024
CACHE_FORMAT = "fastdsc-yolo-voc-cache"


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


# ---- dataset ---------------------------------------------------------------------------

class VOCDataset(DatasetSplit):
    """One split of a VOC-layout dataset. Picklable (works with torch's DataLoader workers).

    ``data``: a dataset YAML path or a loaded :class:`DatasetConfig`. ``split``: a split key
    of the YAML. ``names``: override the YAML's class names (e.g. a model's). ``cache``: True
    (default cache dir), a directory, or False. ``verify_images``: decode every image once
    when the index is built (cached) to find corrupt files; with False only existence is
    checked and a corrupt image is found (and replaced by the next item) when loaded.
    """

    format = "voc"

    def __init__(self, data: Union[str, DatasetConfig], split: str = "val",
                 names: Optional[Sequence[str]] = None, cache: Union[bool, str] = True,
                 verify_images: bool = True, workers: int = 4):
        config = data if isinstance(data, DatasetConfig) else load_dataset_yaml(data)
        if config.format != "voc":
            raise ConfigError(config.path, None, f"a {config.format} dataset, not VOCdevkit; "
                              f"open it with detector.data.dataset.open_dataset")
        super().__init__(config, split, names)
        self.sources: List[ListSource] = self.config.sources(split)
        self._build(cache, verify_images, max(1, int(workers)))

    # -- index --------------------------------------------------------------------------
    def _read_lists(self) -> List[Tuple[str, str, str]]:
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
                    self._warner.warn("duplicate", f"{src.list_file}: line {ln}: image id "
                                      f"{image_id!r} already listed by {seen[image_id]}; skipped")
                    continue
                seen[image_id] = src.list_file
                ann = os.path.join(src.annotations_dir, image_id + ".xml")
                items.append((image_id, ann, find_image(src.images_dir, image_id)))
        return items

    def _build(self, cache, verify_images: bool, workers: int) -> None:
        index = {n: i for i, n in enumerate(self.names)}
        for image_id, ann, img, rec in self._indexed(
                "voc", self._read_lists(), [s.list_file for s in self.sources], _read_entry,
                cache, verify_images, workers, CACHE_FORMAT):
            a = self._make_annotation(image_id, ann, rec, index)
            if a is not None:
                self._add(image_id, img, a)
        self._report()

    def _make_annotation(self, image_id, ann, rec, index) -> Optional[Annotation]:
        size = rec.get("image_size") or rec.get("size")
        if size is None:
            img = self._image_path_for(image_id)
            s = image_size(img) if img else "missing image file"
            if isinstance(s, str):
                self._skip("image", img or image_id, s)
                return None
            size = s
        w, h = int(size[0]), int(size[1])
        xml_size = rec.get("size")
        if rec.get("image_size") and xml_size and list(xml_size) != list(rec["image_size"]):
            self._warner.warn("size", f"{ann}: <size> {xml_size[0]}x{xml_size[1]} differs from "
                              f"the image's {w}x{h}; using the image's")
        boxes, labels, diff = [], [], []
        for name, difficult, x1, y1, x2, y2 in rec.get("objects", []):
            c = index.get(name)
            if c is None:
                self._unknown(name)
                continue
            x1, x2 = min(max(x1, 1.0), float(w)), min(max(x2, 1.0), float(w))
            y1, y2 = min(max(y1, 1.0), float(h)), min(max(y2, 1.0), float(h))
            if x2 < x1 or y2 < y1:
                self._bad_box(ann, name, w, h)
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(c)
            diff.append(bool(difficult))
        return voc_annotation(image_id, w, h, boxes, labels, diff)

    def _image_path_for(self, image_id) -> Optional[str]:
        for src in self.sources:
            for ext in IMAGE_EXTS:
                p = os.path.join(src.images_dir, image_id + ext)
                if os.path.exists(p):
                    return p
        return None


def find_image(images_dir: str, image_id: str) -> str:
    """``images_dir/<id>.jpg``, or the first of the other extensions that exists (the
    ``.jpg`` path when none does)."""
    img = os.path.join(images_dir, image_id + ".jpg")
    if not os.path.exists(img):
        for ext in IMAGE_EXTS[1:]:
            alt = os.path.join(images_dir, image_id + ext)
            if os.path.exists(alt):
                return alt
    return img


def split_image_paths(config: DatasetConfig, split: str) -> List[str]:
    """The image path of every id listed by ``split``'s list files, in order, each once (no
    annotation is read)."""
    out, seen = [], set()
    for src in config.sources(split, annotations=False):
        try:
            with open(src.list_file, "r", encoding="utf-8", errors="replace") as f:
                ids = [line.split()[0] for line in f if line.strip()]
        except OSError as e:
            raise UserError(f"{src.list_file}: cannot read list file: {e.strerror}") from None
        for image_id in ids:
            if not image_id.startswith("#") and (src.dir, image_id) not in seen:
                seen.add((src.dir, image_id))
                out.append(find_image(src.images_dir, image_id))
    return out


def _read_entry(files: Tuple[str, ...], st, verify_images: bool) -> Dict[str, object]:
    ann, img = files
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
        size = image_size(img)
        if isinstance(size, str):
            return {"img_error": size}
        rec["image_size"] = size
    return rec
