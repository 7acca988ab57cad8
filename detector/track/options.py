"""What the tracker is asked to do: :class:`TrackerOptions` and its checks."""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import ParamError


@dataclass(frozen=True)
class TrackerOptions:
    """ByteTrack's association thresholds (scores in [0, 1], IoU in (0, 1]) and track life.

    Scores: a detection at or above ``high_score`` is matched first (and may start a track if
    at least ``new_track_score``); one in [``low_score``, ``high_score``) is only used to
    continue a track the high ones left unmatched (an object partly hidden scores lower).
    Run the detector with a confidence threshold at or below ``low_score`` so that the low
    ones reach the tracker.

    IoU, between the Kalman-predicted box of a track and a detection: ``match_iou`` in the
    first stage, ``low_match_iou`` for the low-score stage, ``new_match_iou`` for tracks not
    yet confirmed.

    Life: a track is confirmed (gets its ``track_id``) after ``min_hits`` matched frames in a
    row (at once on the first frame of a run); a confirmed track that is not matched is kept
    ``lost_frames`` frames for its object to reappear, then ends. ``per_class``: a detection
    only continues a track of its own class (False: any class; the track takes the
    detection's). ``trail_length``: boxes remembered per track (centres for the overlay's
    trail; their longest side is the track's extent).

    Recovery (after ByteTrack's stages): a lost track takes a high-score detection of its class
    that nothing else took if their centres are at most ``recover_distance`` times the
    track's extent apart (from where it was last seen or where its motion puts it). The box
    of a detector trained on visible pixels jumps when its object passes behind something
    (before: the part not yet hidden; after: the part that shows again), too far for IoU.
    0 turns recovery off."""
    high_score: float = 0.5
    low_score: float = 0.1
    new_track_score: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    new_match_iou: float = 0.3
    min_hits: int = 2
    lost_frames: int = 30
    per_class: bool = True
    recover_distance: float = 1.5
    trail_length: int = 30

    def __post_init__(self) -> None:
        check_tracker(self)


def check_tracker(o: TrackerOptions) -> None:
    """ParamError naming the field of a value no tracker can use."""
    for f in fields(o):
        v = getattr(o, f.name)
        if f.type in ("float", float) and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ParamError(f.name, "expected a number", value=v)
        if f.type in ("int", int) and (isinstance(v, bool) or not isinstance(v, int)):
            raise ParamError(f.name, "expected an integer", value=v)
    for name in ("high_score", "low_score", "new_track_score"):
        if not 0.0 <= getattr(o, name) <= 1.0:
            raise ParamError(name, "must be in [0, 1]", value=getattr(o, name))
    for name in ("match_iou", "low_match_iou", "new_match_iou"):
        if not 0.0 < getattr(o, name) <= 1.0:
            raise ParamError(name, "must be in (0, 1]", value=getattr(o, name))
    if o.low_score > o.high_score:
        raise ParamError("low_score", f"must be at most high_score ({o.high_score})",
                         value=o.low_score)
    if o.min_hits < 1:
        raise ParamError("min_hits", "must be at least 1", value=o.min_hits)
    if o.recover_distance < 0:
        raise ParamError("recover_distance", "must be >= 0", value=o.recover_distance)
    if o.lost_frames < 0:
        raise ParamError("lost_frames", "must be >= 0", value=o.lost_frames)
    if o.trail_length < 1:
        raise ParamError("trail_length", "must be at least 1", value=o.trail_length)
