"""Detection files of a split, by what the path is: a folder of VOC devkit results files
(``comp4_det_<split>_<class>.txt``, :mod:`.results`) or a COCO results JSON file
(:mod:`.coco_results`), read and written against a dataset split's names and ids."""
from __future__ import annotations

import os

from ..errors import UserError
from .coco_results import read_coco_results, write_coco_results
from .dets import Detections
from .results import read_results, write_results


def is_coco_results(path: str) -> bool:
    """A file (or, not there yet, a ``.json`` name) holds COCO results; a folder holds
    devkit results files."""
    return os.path.isfile(path) or (not os.path.exists(path) and path.lower().endswith(".json"))


def read_detections(path: str, split: str, dataset) -> Detections:
    """The detections in ``path`` (a devkit results folder or a COCO results JSON) for split
    ``split`` of ``dataset`` (a :class:`detector.data.split.DatasetSplit`)."""
    if is_coco_results(path):
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such file (expected a COCO results JSON, or a folder "
                            f"of devkit results files)")
        return read_coco_results(path, dataset.coco_image_ids(), dataset.coco_category_ids())
    return read_results(path, split, dataset.names)


def write_detections(path: str, split: str, dataset, dets: Detections) -> None:
    """Write ``dets`` to ``path``: a COCO results JSON when it ends in ``.json``, else devkit
    results files in that folder."""
    if path.lower().endswith(".json"):
        write_coco_results(path, dets, dataset.coco_image_ids(), dataset.coco_category_ids())
    else:
        write_results(path, split, dataset.names, dets)
