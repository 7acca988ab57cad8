"""COCO JSON reader: one split of a dataset YAML whose splits are ``{images: DIR,
annotations: FILE}``; the annotation file is parsed once per run.

Classes: the YAML's ``names`` when given (a category counts under the class of its name;
categories of other names are ignored and counted, as VOC's unknown classes), else the
file's categories in category-id order, so class ``i`` is the ``i``-th smallest category id.
Boxes ``bbox: [x, y, w, h]`` are continuous pixels (COCO's convention); the pixel box
``(x, y, x + w, y + h)`` becomes VOC coordinates exactly (see :mod:`detector.data.boxes`).
Crowd regions (``iscrowd: 1``, or ``ignore: 1``) are kept and flagged ``difficult``, so
evaluation ignores them as the devkit ignores difficult objects and training leaves them out.

Image ids: ``file_name`` without its extension, ``/``-separated (whitespace and ``%``
escaped), so ``000005.jpg`` is ``000005`` as in a VOCdevkit; ``coco_image_ids`` maps them
back to the file's ids (for COCO results JSON).

Rules:

* A file that is not JSON, or a field of the wrong type or missing (``images[3].file_name``,
  ``annotations[7].bbox``), or an annotation of an image or category id the file does not
  define, is a :class:`UserError` naming the file and the field: the file is broken.
* A file without an ``annotations`` list (COCO's image-info files) has images without
  objects.
* A box reaching outside the image is clipped to it (COCO files often overshoot by a fraction
  of a pixel); a box left without area is skipped and counted as ``bad_box``.
* An image listed twice (same ``file_name``) is used once. A missing or undecodable image is
  skipped and counted; its size is the image's when it differs from the file's
  ``width``/``height`` (warned). Image sizes come from the image header (decoded with
  ``verify_images``), cached in the ``coco`` folder of the user cache.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from .dataset_yaml import DatasetConfig, bad_class_name, load_dataset_yaml
from .images import image_size
from .index_cache import cache_file, cached_records
from .split import DatasetSplit, pixel_boxes_to_voc, voc_annotation

CACHE_FORMAT = "fastdsc-yolo-coco-cache"
_ESCAPE = re.compile(r"[\s%]")


@dataclass
class CocoFile:
    """What an annotation file holds, checked: images ``(id, file_name, width, height)``
    (sizes None when absent), categories ``[(id, name)]`` sorted by id, and per image id the
    objects ``(annotation index, category id, x, y, w, h, crowd)``."""
    path: str
    images: List[tuple]
    categories: List[Tuple[int, str]]
    objects: Dict[object, List[tuple]]


def read_json(path: str, expected: str = "") -> object:
    """A JSON file's value; a file that cannot be read or parsed is one UserError naming it
    (and, after a parse error, ``expected``: what the file should hold)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8-sig"))
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except ValueError as e:
        line = getattr(e, "lineno", None)
        raise UserError(f"{path}: not valid JSON ({f'line {line}: ' if line else ''}"
                        f"{getattr(e, 'msg', str(e))}){expected}") from None


def read_coco_json(path: str) -> CocoFile:
    """Parse and check a COCO annotation file (see the module doc for what is an error)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a COCO object with images, annotations and "
                        f"categories, got {type(data).__name__}")
    images = _images(path, _list(path, data, "images"))
    categories = _categories(path, _list(path, data, "categories"))
    known = {i[0] for i in images}
    cats = {c for c, _ in categories}
    objects: Dict[object, List[tuple]] = {}
    anns = _list(path, data, "annotations") if "annotations" in data else []   # image info
    for k, a in enumerate(anns):
        o = _annotation(path, k, a, known, cats)
        objects.setdefault(o[0], []).append((k, *o[1:]))
    return CocoFile(path, images, categories, objects)


def _list(path: str, data: dict, key: str) -> list:
    v = data.get(key)
    if not isinstance(v, list):
        raise UserError(f"{path}: {key}: expected a list, got "
                        f"{'nothing' if v is None else type(v).__name__}")
    return v


def _field(path: str, where: str, d, key: str, ok, what: str, required: bool = True):
    if not isinstance(d, dict):
        raise UserError(f"{path}: {where}: expected an object, got {type(d).__name__}")
    v = d.get(key)
    if v is None and not required:
        return None
    if v is None or not ok(v):
        got = "nothing" if v is None else repr(v)[:60]
        raise UserError(f"{path}: {where}.{key}: expected {what}, got {got}")
    return v


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_id(v) -> bool:
    return _is_int(v) or (isinstance(v, str) and bool(v))


def _images(path: str, items: list) -> List[tuple]:
    out, seen = [], set()
    for i, d in enumerate(items):
        where = f"images[{i}]"
        iid = _field(path, where, d, "id", _is_id, "an integer or string id")
        name = _field(path, where, d, "file_name", lambda v: isinstance(v, str) and v.strip(),
                      "a file name")
        w = _field(path, where, d, "width", lambda v: _is_int(v) and v > 0,
                   "a positive integer", required=False)
        h = _field(path, where, d, "height", lambda v: _is_int(v) and v > 0,
                   "a positive integer", required=False)
        if iid in seen:
            raise UserError(f"{path}: {where}.id: {iid!r} is the id of an earlier image too")
        seen.add(iid)
        out.append((iid, name, w, h))
    return out


def _categories(path: str, items: list) -> List[Tuple[int, str]]:
    out, ids, names = [], set(), set()
    for i, d in enumerate(items):
        where = f"categories[{i}]"
        cid = _field(path, where, d, "id", _is_int, "an integer id")
        name = _field(path, where, d, "name", lambda v: True, "a name")
        why = bad_class_name(name)
        if why:
            raise UserError(f"{path}: {where}.name: {why}")
        if cid in ids or name in names:
            raise UserError(f"{path}: {where}: id {cid} or name {name!r} is an earlier "
                            f"category's too")
        ids.add(cid)
        names.add(name)
        out.append((cid, name))
    return sorted(out)


def _is_box(v) -> bool:
    return isinstance(v, list) and len(v) == 4 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def _annotation(path: str, k: int, a, images: set, cats: set) -> tuple:
    """``(image id, category id, x, y, w, h, crowd)`` of ``annotations[k]``."""
    where = f"annotations[{k}]"
    iid = _field(path, where, a, "image_id", _is_id, "an image id")
    cid = _field(path, where, a, "category_id", _is_int, "a category id")
    box = _field(path, where, a, "bbox", _is_box, "[x, y, width, height] (4 finite numbers)")
    flag = lambda key: _field(path, where, a, key, lambda v: v in (0, 1), "0 or 1",
                              required=False)
    if iid not in images:
        raise UserError(f"{path}: {where}.image_id: {iid!r} is not the id of an image in "
                        f"images")
    if cid not in cats:
        raise UserError(f"{path}: {where}.category_id: {cid} is not the id of a category in "
                        f"categories")
    return (iid, cid, *map(float, box), bool(flag("iscrowd") or flag("ignore")))


def image_id_of(file_name: str) -> str:
    """The image id of a ``file_name``: without the extension, ``/``-separated, escaped."""
    stem = os.path.splitext(file_name.replace("\\", "/").lstrip("/"))[0]
    return _ESCAPE.sub(lambda m: "%%%02X" % ord(m.group()), stem)


def split_image_paths(config: DatasetConfig, split: str) -> List[str]:
    """Every image path of ``split`` (the file's ``images``, each once)."""
    src = config.coco_source(split)
    seen, out = set(), []
    for _, name, _, _ in read_coco_json(src.annotations).images:
        p = os.path.normpath(os.path.join(src.images_dir, name))
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


class COCODataset(DatasetSplit):
    """One split of a COCO-JSON dataset; arguments and access as :class:`.voc.VOCDataset`."""

    format = "coco"

    def __init__(self, data: Union[str, DatasetConfig], split: str = "val",
                 names: Optional[Sequence[str]] = None, cache: Union[bool, str] = True,
                 verify_images: bool = True, workers: int = 4):
        config = data if isinstance(data, DatasetConfig) else load_dataset_yaml(data)
        self.source = config.coco_source(split)
        coco = read_coco_json(self.source.annotations)
        file_names = config.names or [n for _, n in coco.categories]
        if not file_names:
            raise UserError(f"{self.source.annotations}: categories: empty, and the dataset "
                            f"YAML gives no names")
        super().__init__(config, split, names if names is not None else file_names)
        cat_names = dict(coco.categories)
        by_name = {n: c for c, n in coco.categories}
        self._category_ids = [by_name.get(n) for n in self.names]
        self._coco_ids: Dict[str, object] = {}
        self._build(coco, cat_names, cache, verify_images, max(1, int(workers)))

    def _build(self, coco: CocoFile, cat_names: Dict[int, str], cache, verify_images: bool,
               workers: int) -> None:
        items, seen, ids = [], {}, set()
        for iid, name, w, h in coco.images:
            img = os.path.normpath(os.path.join(self.source.images_dir, name))
            if img in seen:
                self.skipped["duplicate"] += 1
                self._warner.warn("duplicate", f"{coco.path}: image id {iid!r}: {name} is "
                                  f"image {seen[img]!r} too; skipped")
                continue
            seen[img] = iid
            image_id = image_id_of(name)
            if image_id in ids:                   # a.jpg and a.png: keep the extension
                image_id = image_id_of(name + ".")
            ids.add(image_id)
            items.append((iid, image_id, img, (w, h)))
        flag = "\0v" if verify_images else ""
        keyed = [(img + flag, (img,)) for _, _, img, _ in items]
        path = cache_file("coco", cache, [self.source.annotations, self.source.images_dir])
        records = cached_records(keyed, lambda files, st: _read_image(files, st, verify_images),
                                 path, CACHE_FORMAT, workers)
        index = {n: i for i, n in enumerate(self.names)}
        for (iid, image_id, img, size), (key, _) in zip(items, keyed):
            rec = records[key]
            if "img_error" in rec:
                self._skip("image", img, rec["img_error"])
                continue
            w, h = (int(v) for v in rec["image_size"])
            if size[0] and (size[0], size[1]) != (w, h):
                self._warner.warn("size", f"{coco.path}: image id {iid!r}: width x height "
                                  f"{size[0]}x{size[1]} differs from the image's {w}x{h}; "
                                  f"using the image's")
            objs = coco.objects.get(iid, [])
            self._add(image_id, img, self._annotation(image_id, w, h, objs, cat_names, index))
            self._coco_ids[image_id] = iid
        self._report()

    def _annotation(self, image_id: str, w: int, h: int, objs, cat_names, index):
        boxes, labels, crowd, where = [], [], [], []
        for k, cid, x, y, bw, bh, is_crowd in objs:
            name = cat_names[cid]
            c = index.get(name)
            if c is None:
                self._unknown(name)
                continue
            boxes.append((x, y, x + bw, y + bh))
            labels.append(c)
            crowd.append(is_crowd)
            where.append(k)
        voc, keep = pixel_boxes_to_voc(boxes, w, h)
        for j in np.flatnonzero(~keep):
            self._bad_box(f"{self.source.annotations}: annotations[{where[j]}]",
                          self.names[labels[j]], w, h)
        return voc_annotation(image_id, w, h, voc[keep], np.array(labels, np.int64)[keep],
                              np.array(crowd, bool)[keep])

    def coco_image_ids(self) -> Dict[str, object]:
        return dict(self._coco_ids)

    def coco_category_ids(self) -> List[Optional[int]]:
        return list(self._category_ids)


def _read_image(files: Tuple[str, ...], st, verify_images: bool) -> dict:
    if st[0] is None:
        return {"img_error": "missing image file"}
    size = image_size(files[0], decode=verify_images)
    if isinstance(size, str):
        return {"img_error": size}
    return {"image_size": size}
