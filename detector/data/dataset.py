"""The dataset front: one split of a dataset YAML, whatever layout holds it.

::

    ds = open_dataset("data.yaml", "train")      # VOCdevkit, YOLO or COCO JSON: the YAML says
    sample = ds[0]                                # see detector.data.split.DatasetSplit
    split, paths = split_images("data.yaml")      # the image files only, no label read

The layout is detected from the YAML's keys (:func:`.dataset_yaml.detect_format`); every
reader gives the same annotations (VOC coordinates, :mod:`detector.data.boxes`), skip rules
and access, so training, evaluation, calibration and ``anchors`` read all three.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple, Union

from ..errors import UserError
from . import coco, voc, yolo
from .dataset_yaml import DatasetConfig, load_dataset_yaml
from .split import DatasetSplit

READERS = {"voc": voc.VOCDataset, "yolo": yolo.YOLODataset, "coco": coco.COCODataset}


def load_config(data: Union[str, DatasetConfig]) -> DatasetConfig:
    return data if isinstance(data, DatasetConfig) else load_dataset_yaml(data)


def open_dataset(data: Union[str, DatasetConfig], split: str = "val",
                 names: Optional[Sequence[str]] = None, cache: Union[bool, str] = True,
                 verify_images: bool = True, workers: int = 4) -> DatasetSplit:
    """Split ``split`` of the dataset YAML ``data`` (a path or a loaded config), indexed.

    ``names``: class names to label by instead of the dataset's (e.g. a model's; objects of
    other classes are ignored and counted). ``cache``: True (the user cache), a folder, or
    False. ``verify_images``: decode every image once (cached) to find corrupt files before
    training; without it only image headers are read where a size is needed."""
    config = load_config(data)
    return READERS[config.format](config, split, names=names, cache=cache,
                                  verify_images=verify_images, workers=workers)


def default_split(config: DatasetConfig) -> str:
    """``train`` when the YAML has it, else its first split."""
    return "train" if "train" in config.splits else next(iter(config.splits))


def split_has_labels(data: Union[str, DatasetConfig], split: str) -> bool:
    """Whether ``split`` has ground truth to read: VOCdevkit, an ``Annotations`` folder for
    every entry; YOLO, a label file for some image; COCO, always (the annotation file)."""
    config = load_config(data)
    if config.format == "coco":
        return True
    if config.format == "yolo":
        return any(os.path.isfile(p) for p in map(yolo.label_path, yolo.split_image_paths(
            config, split)) if p)
    return all(os.path.isdir(os.path.join(config.resolve(e.rpartition("/")[0]), "Annotations"))
               for e in config.split_entries(split))


def split_images(data: Union[str, DatasetConfig], split: Optional[str] = None
                 ) -> Tuple[str, List[str]]:
    """(split used, image paths in order) of ``split`` (default :func:`default_split`),
    without reading any label; listed images that do not exist are included (the caller
    reports them when it reads them)."""
    config = load_config(data)
    if split is None:
        split = default_split(config)
    if config.format == "yolo":
        paths = yolo.split_image_paths(config, split)
    elif config.format == "coco":
        paths = coco.split_image_paths(config, split)
    else:
        paths = voc.split_image_paths(config, split)
    if not paths:
        raise UserError(f"{config.path}: split {split!r} lists no images")
    return split, paths
