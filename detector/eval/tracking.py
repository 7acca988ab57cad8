"""Tracking metrics of MOT Challenge files: MOTA, IDF1, ID switches (py-motmetrics).

``detector eval --tracks PRED --gt GT``. The CLEAR-MOT and identity metrics are py-motmetrics'
(:class:`motmetrics.MOTAccumulator`, the MOT Challenge's definitions); this module only feeds
it the distances, frame by frame, as the MOT Challenge evaluation does:

- a predicted box and a true one can match where their IoU is at least ``iou`` (0.5), and
  the distance is 1 - IoU;
- ground-truth rows with ``conf`` 0 are ignored: a prediction matched to one (an optimal
  one-to-one matching against all true boxes of the frame) is dropped, neither a hit nor a
  false positive, and the ignored object counts as no miss;
- matching is class-agnostic (a box of the wrong class that covers an object still tracks
  it), as in the MOT Challenge's single-class benchmarks.

HOTA is not reported: py-motmetrics' released versions do not compute it (see
docs/architecture.md for why TrackEval, which does, is not a dependency).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ParamError, UserError
from ..io.atomic import atomic_write_json
from ..io.mot import MotRow, read_mot
from ..track.assign import iou_matrix

_METRICS = {"mota": "mota", "motp": "motp", "idf1": "idf1", "idp": "idp", "idr": "idr",
            "precision": "precision", "recall": "recall", "id_switches": "num_switches",
            "fragmentations": "num_fragmentations", "false_positives": "num_false_positives",
            "misses": "num_misses", "objects": "num_objects", "predictions": "num_predictions",
            "gt_tracks": "num_unique_objects", "mostly_tracked": "mostly_tracked",
            "partly_tracked": "partially_tracked", "mostly_lost": "mostly_lost"}


@dataclass(frozen=True)
class TrackingMetrics:
    """Fractions in [0, 1] (MOTA may be negative) and counts over a sequence; ``motp`` is
    the mean 1 - IoU of the matches (lower is better), as py-motmetrics reports it."""
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    precision: float
    recall: float
    id_switches: int
    fragmentations: int
    false_positives: int
    misses: int
    objects: int            # true boxes counted (ignored ones excluded)
    predictions: int        # predicted boxes counted (those on ignored objects excluded)
    gt_tracks: int
    mostly_tracked: int
    partly_tracked: int
    mostly_lost: int
    frames: int
    pred_tracks: int
    ignored: int            # true boxes ignored (conf 0)

    @property
    def switches_per_100_frames(self) -> float:
        return 100.0 * self.id_switches / self.frames if self.frames else 0.0

    def to_json(self) -> dict:
        out = asdict(self)
        out["switches_per_100_frames"] = self.switches_per_100_frames
        return out

    def table(self) -> str:
        return "\n".join([
            f"MOTA {self.mota:.4f}  IDF1 {self.idf1:.4f}  ID switches {self.id_switches} "
            f"({self.switches_per_100_frames:.2f} per 100 frames)  MOTP {self.motp:.4f} (1 - IoU)",
            f"IDP {self.idp:.4f}  IDR {self.idr:.4f}  precision {self.precision:.4f}  "
            f"recall {self.recall:.4f}  false positives {self.false_positives}  "
            f"misses {self.misses}  fragmentations {self.fragmentations}",
            f"{self.frames} frames, {self.objects} true boxes ({self.ignored} ignored), "
            f"{self.gt_tracks} true tracks (mostly tracked {self.mostly_tracked}, partly "
            f"{self.partly_tracked}, mostly lost {self.mostly_lost}), {self.predictions} "
            f"predicted boxes in {self.pred_tracks} tracks"])


def _motmetrics():
    try:
        import motmetrics
    except ImportError:
        raise UserError("tracking metrics need py-motmetrics: pip install "
                        "'fastdsc-yolo[mot]' (or motmetrics)") from None
    return motmetrics


def _by_frame(rows: Sequence[MotRow], name: str) -> Dict[int, List[MotRow]]:
    out: Dict[int, List[MotRow]] = defaultdict(list)
    seen = set()
    for r in rows:
        if (r.frame, r.track_id) in seen:
            raise UserError(f"{name}: id {r.track_id} appears twice in frame {r.frame}")
        seen.add((r.frame, r.track_id))
        out[r.frame].append(r)
    return out


def _boxes(rows: Sequence[MotRow]) -> np.ndarray:
    return np.array([r.box for r in rows], dtype=np.float64).reshape(len(rows), 4)


def _drop_on_ignored(pred: List[MotRow], kept: List[MotRow], ignored: List[MotRow],
                     iou: float, lsa) -> List[MotRow]:
    """The predictions left after those an optimal matching gives to ignored objects."""
    if not pred or not ignored:
        return pred
    gt = kept + ignored
    overlap = iou_matrix(_boxes(gt), _boxes(pred))
    cost = np.where(overlap >= iou, 1.0 - overlap, 1e6)
    rows, cols = lsa(cost)
    drop = {int(c) for r, c in zip(rows, cols) if r >= len(kept) and overlap[r, c] >= iou}
    return [p for k, p in enumerate(pred) if k not in drop]


def _frame_update(acc, frame: int, gt: List[MotRow], pred: List[MotRow], iou: float, lsa) -> int:
    """Add one frame to the accumulator; returns the number of ignored true boxes."""
    kept = [g for g in gt if g.conf != 0]
    ignored = [g for g in gt if g.conf == 0]
    pred = _drop_on_ignored(pred, kept, ignored, iou, lsa)
    overlap = iou_matrix(_boxes(kept), _boxes(pred))
    dist = np.where(overlap >= iou, 1.0 - overlap, np.nan)
    acc.update([g.track_id for g in kept], [p.track_id for p in pred], dist, frameid=frame)
    return len(ignored)


def evaluate_tracks(pred: Sequence[MotRow], gt: Sequence[MotRow], iou: float = 0.5,
                    pred_name: str = "predictions", gt_name: str = "ground truth"
                    ) -> TrackingMetrics:
    """Metrics of predicted tracks against true ones over frames 1 .. the last frame of
    either; ``iou``: the least overlap of a match."""
    if not 0.0 < iou <= 1.0:
        raise ParamError("iou", "must be in (0, 1]", value=iou)
    mm = _motmetrics()
    pred_f, gt_f = _by_frame(pred, pred_name), _by_frame(gt, gt_name)
    last = max(list(pred_f) + list(gt_f) + [0])
    acc = mm.MOTAccumulator(auto_id=False)
    ignored = 0
    for frame in range(1, last + 1):
        ignored += _frame_update(acc, frame, gt_f.get(frame, []), pred_f.get(frame, []), iou,
                                 mm.lap.linear_sum_assignment)
    summary = mm.metrics.create().compute(acc, metrics=list(_METRICS.values()), name="all")
    row = summary.loc["all"]
    values = {k: float(row[v]) for k, v in _METRICS.items()}
    counts = {k: int(round(v)) for k, v in values.items()
              if k not in ("mota", "motp", "idf1", "idp", "idr", "precision", "recall")}
    fracs = {k: (0.0 if np.isnan(v) else v) for k, v in values.items() if k not in counts}
    return TrackingMetrics(**fracs, **counts, frames=last,
                           pred_tracks=len({r.track_id for r in pred}),
                           ignored=ignored)


def evaluate_track_files(pred_path: str, gt_path: str, json_out: Optional[str] = None,
                         iou: float = 0.5) -> TrackingMetrics:
    """``detector eval --tracks PRED --gt GT``: read both MOT files, print the metrics,
    optionally write them as JSON."""
    gt = read_mot(gt_path)
    if not gt:
        raise UserError(f"{gt_path}: no ground-truth rows")
    res = evaluate_tracks(read_mot(pred_path), gt, iou, pred_path, gt_path)
    print(res.table())
    if json_out:
        atomic_write_json(json_out, res.to_json())
    return res
