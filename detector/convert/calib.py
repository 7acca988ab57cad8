"""Calibration images for the data-driven refinement, from a dataset YAML (VOCdevkit layout):

    root: VOCdevkit                 # relative to the YAML file, or absolute
    train: [VOC2007/trainval]       # DIR/LIST -> DIR/ImageSets/Main/LIST.txt, DIR/JPEGImages/<id>.jpg
    val: [VOC2007/test]
    names: [...]

Only the image lists and JPEGs are read (annotations are not needed). Images are letterboxed
exactly as at inference (``detector.preprocess``).
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np

from ..config import load_yaml
from ..errors import ConfigError, UserError

RESERVED_KEYS = ("root", "names")


def dataset_splits(path: str) -> Tuple[str, dict]:
    """(root directory, {split: [DIR/LIST, ...]}) of a dataset YAML."""
    data = load_yaml(path)
    root = data.get("root", ".")
    if not isinstance(root, str) or not root:
        raise ConfigError(path, "root", "expected a directory path")
    if not os.path.isabs(root):
        root = os.path.join(os.path.dirname(os.path.abspath(path)), root)
    splits = {}
    for key, value in data.items():
        if key in RESERVED_KEYS:
            continue
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list) or not entries or \
                not all(isinstance(e, str) and "/" in e.strip("/") for e in entries):
            raise ConfigError(path, f"split '{key}'", "expected a list of DIR/LIST strings "
                              "(e.g. [VOC2007/trainval])")
        splits[str(key)] = [e.strip("/") for e in entries]
    if not splits:
        raise ConfigError(path, None, "no split (e.g. train: [VOC2007/trainval])")
    return root, splits


def split_images(path: str, split: Optional[str] = None) -> Tuple[str, List[str]]:
    """(split used, image paths) of ``split`` (default: ``train``, else the first split)."""
    root, splits = dataset_splits(path)
    if split is None:
        split = "train" if "train" in splits else next(iter(splits))
    if split not in splits:
        raise UserError(f"{path}: no split {split!r} (splits: {', '.join(splits)})")
    images: List[str] = []
    for entry in splits[split]:
        base, list_name = entry.rsplit("/", 1)
        list_file = os.path.join(root, base, "ImageSets", "Main", list_name + ".txt")
        if not os.path.isfile(list_file):
            raise UserError(f"{path}: split {split!r}: image list {list_file} not found")
        with open(list_file, encoding="utf-8", errors="replace") as f:
            ids = [line.split()[0] for line in f if line.strip()]
        images += [os.path.join(root, base, "JPEGImages", i + ".jpg") for i in ids]
    if not images:
        raise UserError(f"{path}: split {split!r} lists no images")
    return split, images


def has_split(path: str, split: str) -> bool:
    return split in dataset_splits(path)[1]


def load_calibration(path: str, count: int, size: int, split: Optional[str] = None,
                     seed: int = 0) -> Tuple[np.ndarray, str]:
    """``count`` images drawn (seeded) from a split, letterboxed: ([N, 3, size, size] float32,
    split used)."""
    import cv2
    from ..preprocess import Preprocessor
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UserError(f"--calib-images {count!r} is invalid: must be a positive integer")
    split, paths = split_images(path, split)
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(paths), min(count, len(paths)), replace=False))
    pre = Preprocessor(size)
    out = np.empty((len(pick), 3, size, size), np.float32)
    for n, j in enumerate(pick):
        frame = cv2.imread(paths[j], cv2.IMREAD_COLOR)
        if frame is None:
            raise UserError(f"{path}: calibration image {paths[j]} is missing or unreadable")
        blob, _ = pre(frame)
        out[n] = blob[0]
    return out, split
