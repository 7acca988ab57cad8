"""The dataset YAML: where a dataset lives, in which of three layouts, and what its splits are.

The layout is detected from the keys:

*VOCdevkit* (``root``; split entries ``DIR/LIST``)::

    root: VOCdevkit                                 # relative to this YAML file, or absolute
    train: [VOC2007/trainval, VOC2012/trainval]     # DIR/LIST -> DIR/ImageSets/Main/LIST.txt
    val: [VOC2007/test]                             #   with DIR/JPEGImages, DIR/Annotations
    names: [aeroplane, bicycle, ...]

*YOLO* (ultralytics; ``path``, or ``nc``, or ``names`` as a map, or an entry that is an
``images/`` folder or a ``.txt`` list)::

    path: coco8                     # relative to this YAML file, or absolute (default: its folder)
    train: images/train             # a folder of images, a list file (one image path a line,
    val: [images/val, extra.txt]    #   relative to path), or a list of either
    names: {0: person, 1: bicycle}  # or a list

*COCO JSON* (a split that is a mapping)::

    path: coco                      # as for YOLO
    train: {images: images/train2017, annotations: annotations/instances_train2017.json}
    val: {images: images/val2017, annotations: annotations/instances_val2017.json}
    names: [person, bicycle]        # optional: the JSON's categories in id order

VOCdevkit: every key but ``root`` and ``names`` is a split. YOLO and COCO: every key but
``path``, ``names``, ``nc`` and ``download``. Loading checks the structure only (so a YAML can
be read for its class names without the data present); :meth:`DatasetConfig.sources`,
:meth:`~DatasetConfig.yolo_sources` and :meth:`~DatasetConfig.coco_source` check the folders
and files of one split and raise :class:`UserError` for a missing one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from ..config import kind_of, load_yaml
from ..errors import ConfigError, UserError

FORMATS = ("voc", "yolo", "coco")
RESERVED = ("root", "names")                         # VOCdevkit
FILE_RESERVED = ("path", "names", "nc", "download")  # YOLO and COCO
COCO_KEYS = ("images", "annotations")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_BAD_NAME_CHARS = re.compile(r"[\s/\\]")
_BAD_FILE_NAME_CHARS = re.compile(r"[/\\\t\r\n\x00-\x1f]")
_DESCRIBE = {"voc": "VOCdevkit", "yolo": "YOLO", "coco": "COCO"}


@dataclass(frozen=True)
class ListSource:
    """One ``DIR/LIST`` entry of a VOCdevkit split, resolved to absolute paths."""
    entry: str              # as written in the YAML, e.g. "VOC2007/trainval"
    dir: str                # ROOT/VOC2007
    list_name: str          # trainval
    list_file: str          # ROOT/VOC2007/ImageSets/Main/trainval.txt
    images_dir: str         # ROOT/VOC2007/JPEGImages
    annotations_dir: str    # ROOT/VOC2007/Annotations


@dataclass(frozen=True)
class FileSource:
    """One entry of a YOLO split: a folder of images or a list file."""
    entry: str              # as written in the YAML, e.g. "images/train"
    path: str               # absolute
    kind: str               # "folder" or "list"


@dataclass(frozen=True)
class CocoSource:
    """A COCO split: its image folder and annotation file (absolute)."""
    images_dir: str
    annotations: str


@dataclass(frozen=True)
class DatasetConfig:
    path: str                       # the YAML file (absolute)
    root: str                       # absolute: VOC's root, YOLO's and COCO's path
    names: Optional[List[str]]      # None: COCO without names (the JSON's categories)
    splits: Dict[str, object]       # VOC, YOLO: split -> [entry, ...]; COCO: split -> mapping
    format: str = "voc"             # one of FORMATS

    @property
    def format_name(self) -> str:
        return _DESCRIBE[self.format]

    def _split(self, split: str):
        if split not in self.splits:
            allowed = ", ".join(self.splits) or "(none)"
            raise ConfigError(self.path, split, f"no such split; splits in this file: {allowed}")
        return self.splits[split]

    def split_entries(self, split: str) -> List[str]:
        v = self._split(split)
        return list(v) if isinstance(v, list) else [v]

    def _need(self, fmt: str) -> None:
        if self.format != fmt:
            raise ConfigError(self.path, None, f"describes a {self.format_name} dataset, "
                              f"not {_DESCRIBE[fmt]}")

    def sources(self, split: str, annotations: bool = True) -> List[ListSource]:
        """The list entries of VOCdevkit ``split`` with their directories checked to exist
        (the ``Annotations`` folder only with ``annotations``)."""
        self._need("voc")
        out = []
        for entry in self.split_entries(split):
            d, _, list_name = entry.rpartition("/")
            base = d if os.path.isabs(d) else os.path.join(self.root, d)
            base = os.path.normpath(base)
            src = ListSource(entry=entry, dir=base, list_name=list_name,
                             list_file=os.path.join(base, "ImageSets", "Main", list_name + ".txt"),
                             images_dir=os.path.join(base, "JPEGImages"),
                             annotations_dir=os.path.join(base, "Annotations"))
            where = f"{self.path}: split '{split}' entry '{entry}'"
            if not os.path.isdir(base):
                raise UserError(f"{where}: {base}: no such directory (root is {self.root})")
            for sub in (src.images_dir, src.annotations_dir)[:2 if annotations else 1]:
                if not os.path.isdir(sub):
                    raise UserError(f"{where}: {sub}: no such directory (expected the VOCdevkit "
                                    f"layout DIR/JPEGImages, DIR/Annotations, "
                                    f"DIR/ImageSets/Main/LIST.txt)")
            if not os.path.isfile(src.list_file):
                raise UserError(f"{where}: {src.list_file}: no such list file")
            out.append(src)
        return out

    def yolo_sources(self, split: str) -> List[FileSource]:
        """The entries of YOLO ``split``, each an existing folder or list file."""
        self._need("yolo")
        out = []
        for entry in self.split_entries(split):
            p = self.resolve(entry)
            if os.path.isdir(p):
                out.append(FileSource(entry, p, "folder"))
            elif os.path.isfile(p):
                out.append(FileSource(entry, p, "list"))
            else:
                raise UserError(f"{self.path}: split '{split}' entry '{entry}': {p}: no such "
                                f"folder or list file (path is {self.root})")
        return out

    def coco_source(self, split: str) -> CocoSource:
        """The image folder and annotation file of COCO ``split``, checked to exist."""
        self._need("coco")
        v = self._split(split)
        src = CocoSource(self.resolve(v["images"]), self.resolve(v["annotations"]))
        if not os.path.isdir(src.images_dir):
            raise UserError(f"{self.path}: {split}.images: {src.images_dir}: no such directory "
                            f"(path is {self.root})")
        if not os.path.isfile(src.annotations):
            raise UserError(f"{self.path}: {split}.annotations: {src.annotations}: no such file "
                            f"(path is {self.root})")
        return src

    def resolve(self, p: str) -> str:
        """A path of the YAML, relative to ``root``, made absolute."""
        return os.path.normpath(os.path.join(self.root, os.path.expanduser(p)))


def load_dataset_yaml(path: str) -> DatasetConfig:
    """Read and validate a dataset YAML; errors name the file, the key and what is allowed."""
    path = os.path.abspath(os.fspath(path))
    data = load_yaml(path)
    fmt = detect_format(data, path)
    if fmt == "voc":
        root = _read_root(data, path, "root")
        names = _read_names(data, path)
        splits = {key: _read_split(key, value, path) for key, value in data.items()
                  if key not in RESERVED}
        if not splits:
            raise ConfigError(path, None, "no splits; add e.g. 'train: [VOC2007/trainval]' and "
                              "'val: [VOC2007/test]' (VOCdevkit), or 'path:', 'train: "
                              "images/train' and 'val: images/val' (YOLO)")
        return DatasetConfig(path=path, root=root, names=names, splits=splits)
    root = _read_root(data, path, "path")
    names = _read_file_names(data, path, required=fmt == "yolo")
    read = _read_yolo_split if fmt == "yolo" else _read_coco_split
    splits = {key: read(key, value, path) for key, value in data.items()
              if key not in FILE_RESERVED}
    if not splits:
        raise ConfigError(path, None, "no splits; add e.g. 'train: images/train' and 'val: "
                          "images/val'")
    return DatasetConfig(path=path, root=root, names=names, splits=splits, format=fmt)


def detect_format(data: dict, path: str) -> str:
    """``voc``, ``yolo`` or ``coco`` from the keys of a dataset YAML (see the module doc)."""
    mapped = [k for k, v in data.items() if k != "names" and isinstance(v, dict)]
    if mapped:
        if "root" in data:
            raise ConfigError(path, "root", "is the VOCdevkit key; a COCO dataset (a split "
                              f"given as a mapping: {mapped[0]}) names its folder 'path'")
        return "coco"
    if "root" in data:
        if "path" in data:
            raise ConfigError(path, "path", "'root' (VOCdevkit) and 'path' (YOLO or COCO) "
                              "cannot both be given")
        return "voc"
    if "path" in data or "nc" in data or isinstance(data.get("names"), dict):
        return "yolo"
    for key, value in data.items():
        if key in RESERVED or key in FILE_RESERVED:
            continue
        for e in value if isinstance(value, list) else [value]:
            if isinstance(e, str) and _looks_yolo(e):
                return "yolo"
    return "voc"


def _looks_yolo(entry: str) -> bool:
    parts = entry.replace("\\", "/").split("/")
    return entry.lower().endswith(".txt") or "images" in parts


def _read_root(data: dict, path: str, key: str) -> str:
    """The absolute dataset root (relative paths are relative to the YAML file)."""
    root = data.get(key, ".")
    if root is None:
        root = "."
    if not isinstance(root, str) or not root.strip():
        raise ConfigError(path, key, f"expected a directory path (relative to the YAML "
                          f"file, or absolute), got {kind_of(root)} {root!r}")
    return os.path.normpath(os.path.join(os.path.dirname(path), os.path.expanduser(root)))


def _read_names(data: dict, path: str) -> List[str]:
    if "names" not in data or data["names"] is None:
        raise ConfigError(path, "names", "missing; expected a list of class names")
    names = data["names"]
    if not isinstance(names, list) or not names:
        raise ConfigError(path, "names", f"expected a non-empty list of class names, "
                          f"got {kind_of(names)}")
    seen = set()
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n or _BAD_NAME_CHARS.search(n):
            raise ConfigError(path, f"names[{i}]", f"expected a class name without spaces or "
                              f"slashes, got {kind_of(n)} {n!r}")
        if n in seen:
            raise ConfigError(path, f"names[{i}]", f"duplicate class name {n!r}")
        seen.add(n)
    return list(names)


def bad_class_name(n) -> Optional[str]:
    """Why ``n`` cannot be a class name of a YOLO or COCO dataset (None when it can): class
    names become result file names and lines of names files, so no slashes, control
    characters or surrounding spaces."""
    if not isinstance(n, str) or not n.strip():
        return f"expected a class name, got {kind_of(n)} {n!r}"
    if n != n.strip() or _BAD_FILE_NAME_CHARS.search(n):
        return f"expected a class name without slashes, tabs or surrounding spaces, got {n!r}"
    return None


def _read_file_names(data: dict, path: str, required: bool) -> Optional[List[str]]:
    """``names`` of a YOLO or COCO YAML: a list, or a map 0..N-1 -> name; with ``nc``."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int) or nc < 1):
        raise ConfigError(path, "nc", f"expected the number of classes, got {kind_of(nc)} "
                          f"{nc!r}")
    if names is None:
        if nc is not None:
            return [f"class{i}" for i in range(nc)]          # as ultralytics names them
        if required:
            raise ConfigError(path, "names", "missing; expected a list of class names or a "
                              "map from class index to name")
        return None
    if isinstance(names, dict):
        keys = sorted(names, key=str)
        if any(isinstance(k, bool) or not isinstance(k, int) for k in keys) or \
                sorted(keys) != list(range(len(keys))):
            raise ConfigError(path, "names", f"expected a map from class index (0, 1, ...) to "
                              f"name, got the keys {', '.join(map(str, keys))[:80]}")
        names = [names[i] for i in range(len(keys))]
    if not isinstance(names, list) or not names:
        raise ConfigError(path, "names", f"expected a non-empty list of class names or a map "
                          f"from class index to name, got {kind_of(names)}")
    seen = set()
    for i, n in enumerate(names):
        why = bad_class_name(n)
        if why:
            raise ConfigError(path, f"names[{i}]", why)
        if n in seen:
            raise ConfigError(path, f"names[{i}]", f"duplicate class name {n!r}")
        seen.add(n)
    if nc is not None and nc != len(names):
        raise ConfigError(path, "nc", f"{nc}, but names has {len(names)} classes")
    return list(names)


def _check_split_key(key, path: str, reserved) -> None:
    if not isinstance(key, str) or not _SPLIT_RE.match(key):
        raise ConfigError(path, str(key), f"not a valid split name; keys are "
                          f"{', '.join(reserved)}, and split names (letters, digits, _ . -)")


def _read_split(key, value, path: str) -> List[str]:
    """The ``DIR/LIST`` entries of one VOCdevkit split key."""
    _check_split_key(key, path, RESERVED)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(path, key, f"expected a list of DIR/LIST strings (e.g. "
                          f"[VOC2007/trainval]), got {kind_of(value)}")
    for i, e in enumerate(value):
        if not isinstance(e, str) or "/" not in e.strip("/") or e.endswith("/") \
                or any(not p for p in e.rstrip("/").split("/")[1:]):
            raise ConfigError(path, f"{key}[{i}]", f"expected DIR/LIST (e.g. "
                              f"VOC2007/trainval), got {kind_of(e)} {e!r}; a YOLO dataset "
                              f"YAML has a 'path' key")
    return list(value)


def _read_yolo_split(key, value, path: str) -> List[str]:
    """The entries (folders or list files) of one YOLO split key."""
    _check_split_key(key, path, FILE_RESERVED)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(path, key, f"expected a folder or list file (relative to path), or "
                          f"a list of them, got {kind_of(value)}")
    for i, e in enumerate(value):
        if not isinstance(e, str) or not e.strip():
            raise ConfigError(path, f"{key}[{i}]", f"expected a folder or list file path, got "
                              f"{kind_of(e)} {e!r}")
    return list(value)


def _read_coco_split(key, value, path: str) -> Dict[str, str]:
    """``{images: DIR, annotations: FILE}`` of one COCO split key."""
    _check_split_key(key, path, FILE_RESERVED)
    if not isinstance(value, dict):
        raise ConfigError(path, key, f"expected {{images: DIR, annotations: FILE.json}} as the "
                          f"other splits of this COCO dataset, got {kind_of(value)}")
    for k in value:
        if k not in COCO_KEYS:
            raise ConfigError(path, f"{key}.{k}", "unknown key; allowed keys: images, "
                              "annotations")
    for k in COCO_KEYS:
        v = value.get(k)
        if not isinstance(v, str) or not v.strip():
            what = "missing" if v is None else f"got {kind_of(v)} {v!r}"
            raise ConfigError(path, f"{key}.{k}", f"expected a {'folder' if k == 'images' else 'file'} "
                              f"path (relative to path); {what}")
    return {k: value[k] for k in COCO_KEYS}
