"""Calibration images for the data-driven refinement, from a dataset YAML (VOCdevkit layout):

    root: VOCdevkit                 # relative to the YAML file, or absolute
    train: [VOC2007/trainval]       # DIR/LIST -> DIR/ImageSets/Main/LIST.txt,
                                    #             DIR/JPEGImages/<id>.jpg
    val: [VOC2007/test]
    names: [...]

The YAML is read by ``detector.data.dataset_yaml``; only the image lists and JPEGs are used
(annotations are not needed). Images are letterboxed exactly as at inference
(``detector.preprocess``).
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy as np

from ..errors import ParamError, UserError


def split_images(path: str, split: Optional[str] = None) -> Tuple[str, List[str]]:
    """(split used, image paths) of ``split`` (default: ``train``, else the first split)."""
    from ..data.dataset_yaml import load_dataset_yaml
    cfg = load_dataset_yaml(path)
    if split is None:
        split = "train" if "train" in cfg.splits else next(iter(cfg.splits))
    images: List[str] = []
    for src in cfg.sources(split):
        with open(src.list_file, encoding="utf-8", errors="replace") as f:
            ids = [line.split()[0] for line in f if line.strip()]
        images += [os.path.join(src.images_dir, i + ".jpg") for i in ids]
    if not images:
        raise UserError(f"{path}: split {split!r} lists no images")
    return split, images


def has_split(path: str, split: str) -> bool:
    from ..data.dataset_yaml import load_dataset_yaml
    return split in load_dataset_yaml(path).splits


def load_calibration(path: str, count: int, size: int, split: Optional[str] = None,
                     seed: int = 0) -> Tuple[np.ndarray, str]:
    """``count`` images drawn (seeded) from a split, letterboxed: ([N, 3, size, size] float32,
    split used)."""
    import cv2
    from ..preprocess import Preprocessor
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ParamError("count", "must be a positive integer", value=count)
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
