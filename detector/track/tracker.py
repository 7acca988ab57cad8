"""A ByteTrack-style multi-object tracker: identities for detections across frames.

Each frame (:meth:`Tracker.update`):

1. every track's box is moved ahead by its constant-velocity Kalman filter (``kalman.py``);
2. high-score detections are matched by IoU to the confirmed tracks, the lost ones included;
3. low-score detections are matched to the confirmed tracks still unmatched that were seen
   in the previous frame (an object being hidden scores lower: this keeps its track);
4. the remaining high-score detections are matched to the tentative tracks (seen but not yet
   confirmed);
5. recovery: lost tracks take remaining high-score detections of their class whose centre is
   near (``recover_distance`` times the track's extent), however little the boxes overlap;
   the rest start new tentative tracks;
6. a confirmed track left unmatched becomes lost, and ends after ``lost_frames`` frames;
   an unmatched tentative track is dropped.

Steps 1-4 and 6 are ByteTrack's; 5 is ours (see :class:`TrackerOptions`).

No appearance model: boxes and motion only. Tracks live in arrays (one row per track), so a
frame costs a fixed number of numpy calls plus a short Python loop over the matches.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..detection import Detection
from ..errors import ParamError
from .kalman import correct, initiate, predict
from .assign import iou_matrix, match
from .options import TrackerOptions

TENTATIVE, TRACKED, LOST = 0, 1, 2


def _xyxy(mean: np.ndarray) -> np.ndarray:
    cx, cy = mean[:, 0], mean[:, 1]
    w, h = np.maximum(mean[:, 2], 0.0), np.maximum(mean[:, 3], 0.0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2,
                     boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)


class _Tracks:
    """Struct of arrays, one row per track. The last ``trail`` matched boxes of each track
    are a ring: ``boxes[row, (head[row] - k) % trail]`` is the k-th latest (k < ``seen``)."""

    FIELDS = ("mean", "cov", "track_id", "class_id", "hits", "last", "state", "boxes",
              "head", "seen")

    def __init__(self, trail: int) -> None:
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 4, 3))                   # kalman.py's 2x2 blocks
        self.track_id = np.zeros(0, dtype=np.int64)      # 0 until confirmed
        self.class_id = np.zeros(0, dtype=np.int64)
        self.hits = np.zeros(0, dtype=np.int64)          # matched frames in a row
        self.last = np.zeros(0, dtype=np.int64)          # frame of the last match
        self.state = np.zeros(0, dtype=np.int8)
        self.boxes = np.zeros((0, trail, 4))             # matched boxes, a ring per track
        self.head = np.zeros(0, dtype=np.int64)          # slot of the latest box
        self.seen = np.zeros(0, dtype=np.int64)          # boxes in the ring

    def __len__(self) -> int:
        return len(self.track_id)

    def keep(self, mask: np.ndarray) -> None:
        for name in self.FIELDS:
            setattr(self, name, getattr(self, name)[mask])

    def add(self, boxes: np.ndarray, class_id: np.ndarray, frame: int) -> None:
        mean, cov = initiate(_cxcywh(boxes))
        n, trail = len(boxes), self.boxes.shape[1]
        ring = np.zeros((n, trail, 4))
        ring[:, 0] = boxes
        new = {"mean": mean, "cov": cov, "track_id": np.zeros(n, dtype=np.int64),
               "class_id": class_id.astype(np.int64), "hits": np.ones(n, dtype=np.int64),
               "last": np.full(n, frame, dtype=np.int64),
               "state": np.full(n, TENTATIVE, dtype=np.int8), "boxes": ring,
               "head": np.zeros(n, dtype=np.int64), "seen": np.ones(n, dtype=np.int64)}
        for name in self.FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), new[name]]))

    def push(self, rows: np.ndarray, boxes: np.ndarray) -> None:
        """Append each row's matched box to its ring."""
        self.head[rows] = (self.head[rows] + 1) % self.boxes.shape[1]
        self.boxes[rows, self.head[rows]] = boxes
        self.seen[rows] = np.minimum(self.seen[rows] + 1, self.boxes.shape[1])

    def latest(self, rows: np.ndarray) -> np.ndarray:
        """The last matched box of each row (N, 4)."""
        return self.boxes[rows, self.head[rows]]

    def extent(self, rows: np.ndarray) -> np.ndarray:
        """The longest box side each track has shown lately (before it was partly hidden)."""
        ring = self.boxes[rows]
        side = np.maximum(ring[:, :, 2] - ring[:, :, 0], ring[:, :, 3] - ring[:, :, 1])
        age = (self.head[rows, None] - np.arange(ring.shape[1])[None, :]) % ring.shape[1]
        return np.where(age < self.seen[rows, None], side, 0.0).max(1)

    def trail(self, row: int) -> List[Tuple[float, float, float, float]]:
        """The row's remembered boxes, oldest first."""
        k = np.arange(self.seen[row] - 1, -1, -1)
        return [tuple(b) for b in self.boxes[row, (self.head[row] - k) % self.boxes.shape[1]]
                .tolist()]


class Tracker:
    """Gives detections a ``track_id`` that stays with their object across frames.

        tracker = Tracker(TrackerOptions(lost_frames=60))
        for i, frame in enumerate(frames):
            tracked = tracker.update(det(frame), frame_index=i)   # Detections with track_id

    :meth:`update` returns the detections that belong to confirmed tracks, in input order,
    each with its ``track_id`` (1, 2, 3, ... in the order tracks are confirmed); the others
    (a first sighting, a stray low-score box) are left out. Counters: ``started`` (tracks
    confirmed so far), ``ended`` (confirmed tracks lost for longer than ``lost_frames``) and
    ``active`` (started and not ended, lost ones included). One tracker follows one source.
    """

    def __init__(self, options: Optional[TrackerOptions] = None):
        self.options = options if options is not None else TrackerOptions()
        self.started = 0
        self.ended = 0
        self.frame: Optional[int] = None     # index of the last frame seen
        self._tracks = _Tracks(self.options.trail_length)

    @property
    def active(self) -> int:
        return self.started - self.ended

    def reset(self) -> None:
        """Forget every track (a new scene); the counters and ids go on."""
        self.ended += self.active
        self._tracks = _Tracks(self.options.trail_length)
        self.frame = None

    def _advance(self, frame_index: Optional[int]) -> int:
        if frame_index is None:
            return 0 if self.frame is None else self.frame + 1
        if isinstance(frame_index, bool) or not isinstance(frame_index, (int, np.integer)):
            raise ParamError("frame_index", "expected an integer", value=frame_index)
        if self.frame is not None and frame_index <= self.frame:
            raise ParamError("frame_index", f"must increase (the last frame was {self.frame})",
                             value=frame_index)
        return int(frame_index)

    def update(self, detections: Sequence[Detection], frame_index: Optional[int] = None
               ) -> List[Detection]:
        """Track one frame's detections; ``frame_index`` (increasing, gaps allowed: the
        tracks move on by the frames skipped) defaults to the previous one + 1."""
        frame = self._advance(frame_index)
        previous, self.frame = self.frame, frame
        t = self._tracks
        predict(t.mean, t.cov, float(1 if previous is None else frame - previous))
        t.mean[t.state != TRACKED, 6:] = 0.0      # a hidden object keeps its size
        boxes, scores, classes = self._arrays(detections)
        pairs, high_left = self._associate(boxes, scores, classes, previous)
        recovered, high_left = self._recover(high_left, boxes, classes, {r for r, _ in pairs})
        ids = self._correct(pairs, boxes, classes, frame, previous)
        ids.update(self._restart(recovered, boxes, frame))
        self._age(frame, [row for row, _ in pairs + recovered])
        ids.update(self._start(boxes, scores, classes, high_left, frame, previous is None))
        return [Detection(*detections[i][:4], ids[i]) for i in sorted(ids)]

    @staticmethod
    def _arrays(detections: Sequence[Detection]):
        table = np.array([(*d.box, d.score, d.class_id) for d in detections],
                         dtype=np.float64).reshape(len(detections), 6)
        return table[:, :4], table[:, 4], table[:, 5].astype(np.int64)

    @staticmethod
    def _stage(iou: np.ndarray, tracks: np.ndarray, dets: np.ndarray, threshold: float):
        """Match the track rows ``tracks`` to the detection rows ``dets`` by their entries
        of ``iou`` (every track against every detection): (pairs, unmatched track rows,
        unmatched detection rows), all as rows of the whole arrays."""
        if len(tracks) == 0 or len(dets) == 0:
            return [], tracks, dets
        pairs, ut, ud = match(iou[np.ix_(tracks, dets)], threshold)
        return [(int(tracks[a]), int(dets[b])) for a, b in pairs], tracks[ut], dets[ud]

    def _associate(self, boxes, scores, classes, previous: Optional[int]):
        """The (track row, detection row) pairs of the three stages, and the high-score
        detections left unmatched."""
        o, t = self.options, self._tracks
        iou = iou_matrix(_xyxy(t.mean), boxes)
        if o.per_class:
            iou[t.class_id[:, None] != classes[None, :]] = 0.0
        high = np.nonzero(scores >= o.high_score)[0]
        low = np.nonzero((scores >= o.low_score) & (scores < o.high_score))[0]
        confirmed = np.nonzero(t.state != TENTATIVE)[0]
        p1, left, high_left = self._stage(iou, confirmed, high, o.match_iou)
        recent = left[t.state[left] == TRACKED]
        p2, _, _ = self._stage(iou, recent, low, o.low_match_iou)
        tentative = np.nonzero(t.state == TENTATIVE)[0]
        p3, _, high_left = self._stage(iou, tentative, high_left, o.new_match_iou)
        return p1 + p2 + p3, high_left

    def _correct(self, pairs, boxes, classes, frame: int, previous: Optional[int]
                 ) -> Dict[int, int]:
        """Kalman-correct the matched tracks, count their hits, confirm the tentative ones
        with enough; returns {detection row: track_id} of the confirmed matches."""
        if not pairs:
            return {}
        t, o = self._tracks, self.options
        rows = np.array([r for r, _ in pairs])
        dets = np.array([d for _, d in pairs])
        mean, cov = t.mean[rows], t.cov[rows]
        correct(mean, cov, _cxcywh(boxes[dets]))
        t.mean[rows], t.cov[rows] = mean, cov
        t.hits[rows] = np.where(t.last[rows] == previous, t.hits[rows] + 1, 1)
        t.last[rows] = frame
        if not o.per_class:
            t.class_id[rows] = classes[dets]
        t.push(rows, boxes[dets])
        tentative = t.state[rows] == TENTATIVE
        t.state[rows[~tentative]] = TRACKED
        self._confirm(rows[tentative & (t.hits[rows] >= o.min_hits)])
        ids = t.track_id[rows]
        return dict(zip(dets[ids > 0].tolist(), ids[ids > 0].tolist()))

    def _recover(self, dets: np.ndarray, boxes, classes, matched):
        """Lost tracks against the high-score detections nobody took, by the distance of
        centres in track extents (same class only; see :class:`TrackerOptions`): (pairs,
        detection rows left)."""
        t, gate = self._tracks, self.options.recover_distance
        lost = [r for r in np.nonzero(t.state == LOST)[0].tolist() if r not in matched]
        if gate <= 0 or not lost or len(dets) == 0:
            return [], dets
        rows = np.array(lost)
        ext = t.extent(rows)[:, None]
        last = t.latest(rows)
        centre = np.stack([(boxes[dets, 0] + boxes[dets, 2]) / 2,
                           (boxes[dets, 1] + boxes[dets, 3]) / 2], axis=1)
        seen = np.stack([(last[:, 0] + last[:, 2]) / 2, (last[:, 1] + last[:, 3]) / 2], axis=1)
        dist = np.minimum(np.linalg.norm(seen[:, None] - centre[None], axis=2),
                          np.linalg.norm(t.mean[rows, None, :2] - centre[None], axis=2))
        near = 1.0 - dist / (gate * np.maximum(ext, 1.0))
        near[t.class_id[rows][:, None] != classes[dets][None, :]] = -1.0
        pairs, _, left = match(near, 0.0)
        return [(int(rows[a]), int(dets[b])) for a, b in pairs], dets[left]

    def _restart(self, pairs, boxes, frame: int) -> Dict[int, int]:
        """Recovered tracks start their motion afresh at the detection (a box that was
        hidden reappears elsewhere than its motion said): {detection row: track_id}."""
        if not pairs:
            return {}
        t = self._tracks
        rows = np.array([r for r, _ in pairs])
        dets = np.array([d for _, d in pairs])
        t.mean[rows], t.cov[rows] = initiate(_cxcywh(boxes[dets]))
        t.hits[rows] = 1
        t.last[rows] = frame
        t.state[rows] = TRACKED
        t.push(rows, boxes[dets])
        return dict(zip(dets.tolist(), t.track_id[rows].tolist()))

    def _confirm(self, rows: np.ndarray) -> None:
        t = self._tracks
        for r in rows.tolist():
            self.started += 1
            t.track_id[r] = self.started
            t.state[r] = TRACKED

    def _age(self, frame: int, matched: List[int]) -> None:
        """Unmatched tracks: confirmed ones become lost (and end when lost too long),
        tentative ones are dropped."""
        t = self._tracks
        if len(t) == 0:
            return
        hit = np.zeros(len(t), dtype=bool)
        hit[matched] = True
        t.state[~hit & (t.state == TRACKED)] = LOST
        expired = (t.state == LOST) & (frame - t.last > self.options.lost_frames)
        drop = expired | (~hit & (t.state == TENTATIVE))
        if drop.any():
            self.ended += int(expired.sum())
            t.keep(~drop)

    def _start(self, boxes, scores, classes, high_left: np.ndarray, frame: int, first: bool
               ) -> Dict[int, int]:
        """New tentative tracks from the high-score detections nobody took (confirmed at
        once on a run's first frame, or with ``min_hits`` 1): {detection row: track_id}."""
        rows = high_left[scores[high_left] >= self.options.new_track_score]
        if len(rows) == 0:
            return {}
        t = self._tracks
        n0 = len(t)
        t.add(boxes[rows], classes[rows], frame)
        if not (first or self.options.min_hits <= 1):
            return {}
        self._confirm(np.arange(n0, len(t)))
        return {int(d): int(t.track_id[n0 + k]) for k, d in enumerate(rows.tolist())}

    def trails(self, n: Optional[int] = None) -> Dict[int, List[Tuple[float, float]]]:
        """Recent box centres (oldest first, at most ``n``; default ``trail_length``) of the
        confirmed tracks matched in the last frame, by track_id: for drawing."""
        t = self._tracks
        out = {}
        for r in np.nonzero((t.state == TRACKED) & (t.last == self.frame))[0].tolist():
            pts = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in t.trail(r)]
            out[int(t.track_id[r])] = pts[-n:] if n else pts
        return out
