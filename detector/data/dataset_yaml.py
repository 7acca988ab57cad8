"""The dataset YAML: where a VOCdevkit-layout dataset lives and what its splits are.

::

    root: VOCdevkit                                 # relative to this YAML file, or absolute
    train: [VOC2007/trainval, VOC2012/trainval]     # DIR/LIST -> DIR/ImageSets/Main/LIST.txt
    val: [VOC2007/test]                             #   with DIR/JPEGImages, DIR/Annotations
    names: [aeroplane, bicycle, ...]

Every key but ``root`` and ``names`` is a split. Loading checks the structure only (so a
YAML can be read for its class names without the data present); :meth:`DatasetConfig.sources`
checks the directories and list files of one split and raises :class:`UserError` for a missing
one.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List

from ..config import kind_of, load_yaml
from ..errors import ConfigError, UserError

RESERVED = ("root", "names")
_SPLIT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_BAD_NAME_CHARS = re.compile(r"[\s/\\]")


@dataclass(frozen=True)
class ListSource:
    """One ``DIR/LIST`` entry of a split, resolved to absolute paths."""
    entry: str              # as written in the YAML, e.g. "VOC2007/trainval"
    dir: str                # ROOT/VOC2007
    list_name: str          # trainval
    list_file: str          # ROOT/VOC2007/ImageSets/Main/trainval.txt
    images_dir: str         # ROOT/VOC2007/JPEGImages
    annotations_dir: str    # ROOT/VOC2007/Annotations


@dataclass(frozen=True)
class DatasetConfig:
    path: str                       # the YAML file (absolute)
    root: str                       # absolute
    names: List[str]
    splits: Dict[str, List[str]]    # split -> ["DIR/LIST", ...] in file order

    def split_entries(self, split: str) -> List[str]:
        if split not in self.splits:
            allowed = ", ".join(self.splits) or "(none)"
            raise ConfigError(self.path, split, f"no such split; splits in this file: {allowed}")
        return list(self.splits[split])

    def sources(self, split: str) -> List[ListSource]:
        """The list entries of ``split`` with their directories checked to exist."""
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
            for sub in (src.images_dir, src.annotations_dir):
                if not os.path.isdir(sub):
                    raise UserError(f"{where}: {sub}: no such directory (expected the VOCdevkit "
                                    f"layout DIR/JPEGImages, DIR/Annotations, "
                                    f"DIR/ImageSets/Main/LIST.txt)")
            if not os.path.isfile(src.list_file):
                raise UserError(f"{where}: {src.list_file}: no such list file")
            out.append(src)
        return out


def load_dataset_yaml(path: str) -> DatasetConfig:
    """Read and validate a dataset YAML; errors name the file, the key and what is allowed."""
    path = os.path.abspath(os.fspath(path))
    data = load_yaml(path)
    root = _read_root(data, path)
    names = _read_names(data, path)
    splits = {key: _read_split(key, value, path) for key, value in data.items()
              if key not in RESERVED}
    if not splits:
        raise ConfigError(path, None, "no splits; add e.g. 'train: [VOC2007/trainval]' and "
                          "'val: [VOC2007/test]'")
    return DatasetConfig(path=path, root=root, names=names, splits=splits)


def _read_root(data: dict, path: str) -> str:
    """The absolute dataset root (relative paths are relative to the YAML file)."""
    root = data.get("root", ".")
    if root is None:
        root = "."
    if not isinstance(root, str) or not root.strip():
        raise ConfigError(path, "root", f"expected a directory path (relative to the YAML "
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


def _read_split(key, value, path: str) -> List[str]:
    """The ``DIR/LIST`` entries of one split key."""
    if not isinstance(key, str) or not _SPLIT_RE.match(key):
        raise ConfigError(path, str(key), "not a valid split name; keys are root, names, "
                          "and split names (letters, digits, _ . -)")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(path, key, f"expected a list of DIR/LIST strings (e.g. "
                          f"[VOC2007/trainval]), got {kind_of(value)}")
    for i, e in enumerate(value):
        if not isinstance(e, str) or "/" not in e.strip("/") or e.endswith("/") \
                or any(not p for p in e.rstrip("/").split("/")[1:]):
            raise ConfigError(path, f"{key}[{i}]", f"expected DIR/LIST (e.g. "
                              f"VOC2007/trainval), got {kind_of(e)} {e!r}")
    return list(value)
