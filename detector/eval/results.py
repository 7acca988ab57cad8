"""The VOC devkit results files: evaluation writes them for a network and reads them back.

One file per class, ``DIR/comp4_det_<split>_<class>.txt``, one detection a line::

    <image_id> <score> <xmin> <ymin> <xmax> <ymax>

in VOC coordinates (1-based pixels, as in the annotations; see :mod:`detector.data.boxes`),
with 9 significant digits, which keep a float32 score or coordinate exactly: read back, the
file scores as the detections it was written from (rounder numbers move a box whose IoU with
its object is near 0.5 across the threshold, or tie two scores).
The writer writes a file for every class (empty when the class has no detection), as the
devkit expects. The reader accepts any amount of whitespace between fields, skips blank lines,
and rejects anything else with a :class:`UserError` naming the file and line.
"""
from __future__ import annotations

import logging
import math
import os
from typing import List, Sequence

import numpy as np

from ..errors import UserError
from ..io.atomic import atomic_write_bytes
from .dets import Detections

log = logging.getLogger("detector.eval")

PREFIX = "comp4_det_"
FORMAT = "'<image_id> <score> <xmin> <ymin> <xmax> <ymax>'"


def results_filename(split: str, name: str) -> str:
    return f"{PREFIX}{split}_{name}.txt"


def write_results(out_dir: str, split: str, names: Sequence[str], dets: Detections) -> List[str]:
    """Write one results file per class under ``out_dir`` (created); returns the paths."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out_dir}: cannot create directory: {e.strerror}") from None
    paths = []
    for c, name in enumerate(names):
        ids, scores, boxes = dets.for_class(c)
        lines = [f"{iid} {s:.9g} {b[0]:.9g} {b[1]:.9g} {b[2]:.9g} {b[3]:.9g}\n"
                 for iid, s, b in zip(ids, scores, boxes)]
        path = os.path.join(out_dir, results_filename(split, name))
        try:
            atomic_write_bytes(path, "".join(lines).encode("utf-8"))
        except OSError as e:
            raise UserError(f"{path}: cannot write: {e.strerror}") from None
        paths.append(path)
    return paths


def read_results(dets_dir: str, split: str, names: Sequence[str]) -> Detections:
    """Read ``comp4_det_<split>_<class>.txt`` for every class name. A class without a file
    has no detections (warned); no file at all, a file for an unknown class or a bad line is
    a :class:`UserError`."""
    if not os.path.isdir(dets_dir):
        raise UserError(f"{dets_dir}: no such directory (expected the devkit results files "
                        f"{results_filename(split, '<class>')})")
    present = sorted(f for f in os.listdir(dets_dir)
                     if f.startswith(f"{PREFIX}{split}_") and f.endswith(".txt"))
    wanted = {results_filename(split, n): c for c, n in enumerate(names)}
    unknown = [f for f in present if f not in wanted]
    if unknown:
        raise UserError(f"{os.path.join(dets_dir, unknown[0])}: class "
                        f"{unknown[0][len(PREFIX) + len(split) + 1:-4]!r} is not one of the "
                        f"dataset's classes ({', '.join(names)})")
    if not present:
        raise UserError(f"{dets_dir}: no {results_filename(split, '<class>')} files (one per "
                        f"class: {', '.join(names)})")
    missing = [n for n in names if results_filename(split, n) not in present]
    if missing:
        log.warning("%s: no results file for %s; no detections for %s", dets_dir,
                    ", ".join(missing), "it" if len(missing) == 1 else "them")
    dets = Detections()
    for fname in present:
        _read_file(os.path.join(dets_dir, fname), wanted[fname], dets)
    return dets


def _read_file(path: str, label: int, dets: Detections) -> None:
    ids, rows = [], []
    try:
        f = open(path, "r", encoding="utf-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    with f:
        try:
            for ln, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 6:
                    raise UserError(f"{path}: line {ln}: expected {FORMAT}, got "
                                    f"{line.strip()[:80]!r}")
                try:
                    v = [float(x) for x in parts[1:]]
                except ValueError:
                    raise UserError(f"{path}: line {ln}: score and coordinates must be "
                                    f"numbers, got {line.strip()[:80]!r}") from None
                if not all(math.isfinite(x) for x in v):
                    raise UserError(f"{path}: line {ln}: non-finite number in "
                                    f"{line.strip()[:80]!r}")
                if v[3] < v[1] - 1 or v[4] < v[2] - 1:
                    raise UserError(f"{path}: line {ln}: box has negative size (need "
                                    f"xmax >= xmin - 1 and ymax >= ymin - 1): "
                                    f"{line.strip()[:80]!r}")
                ids.append(parts[0])
                rows.append(v)
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None
    if rows:
        a = np.array(rows, np.float64)
        dets.extend_voc(ids, a[:, 1:5], a[:, 0], np.full(len(a), label, np.int64))
