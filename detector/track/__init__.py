"""Object tracking: identities that stay with objects across frames (ByteTrack-style).

    tracker.py   Tracker: Kalman prediction, two-stage IoU association (high then low
                 scores), lost-track buffer, counters, trails for the overlay
    options.py   TrackerOptions: score and IoU thresholds, track life
    kalman.py    constant-velocity Kalman filter over many boxes at once
    assign.py    IoU matrix and optimal one-to-one matching

From Python, on any detections::

    import detector
    from detector.track import Tracker, TrackerOptions

    det = detector.load("best.safetensors", conf=0.1)   # low-score boxes help the tracker
    tracker = Tracker(TrackerOptions())
    for i, frame in enumerate(frames):
        for d in tracker.update(det(frame), frame_index=i):
            print(i, d.track_id, d.class_name, d.box)

The MOT Challenge files of tracks (``gt.txt``, results) are read and written by
:mod:`detector.io.mot` (re-exported here).
"""
from __future__ import annotations

from ..io.mot import MotRow, MotWriter, read_mot, rows_for_frame, write_mot
from .options import TrackerOptions
from .tracker import Tracker

__all__ = ["Tracker", "TrackerOptions", "MotRow", "MotWriter", "read_mot", "rows_for_frame",
           "write_mot"]
