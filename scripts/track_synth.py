#!/usr/bin/env python3
"""Tracking quality on synthetic clips with crossings and occlusions (a script, not a test).

For each seed: ``write_clip`` writes OUT/clip-SEED.mp4 and its true tracks OUT/gt-SEED.txt
(as ``detector synth --clip`` does); the video is read back with OpenCV, every frame goes
through the detector (``detector.load``, confidence threshold ``--conf``, low enough for the
tracker's low-score stage; network input ``--img-size``, default the clip's size) and one
``Tracker`` with the default ``TrackerOptions`` (but ``--recover-distance``); the tracks
are written as OUT/pred-SEED.txt (MOT format) and scored against the truth with
``detector.eval.tracking`` (py-motmetrics).

Prints one line per clip and the totals over all clips (frames and ids offset so that the
clips read as one sequence: the MOT Challenge's combined figures) for three runs:

- ``tracker``: the detector's boxes through the tracker (the figure);
- ``detections alone``: every box at or above the tracker's ``high_score`` as a track of its
  own, what the detector gives before any tracking (MOTA's misses and false positives);
- ``true boxes``: the truth itself as detections (ignored objects at a low score), what the
  tracker loses on its own (identity switches at crossings and behind the post).

and the tracker's own time per frame on these detections.

    python scripts/track_synth.py                           # 10 clips x 150 frames at 320 px
    python scripts/track_synth.py --seeds 1 2 3 --frames 300 --json track.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detector                                                     # noqa: E402
from detector.data.clip import write_clip                           # noqa: E402
from detector.eval.tracking import evaluate_tracks                  # noqa: E402
from detector.io.mot import read_mot, rows_for_frame, write_mot     # noqa: E402
from detector.track import Tracker, TrackerOptions                  # noqa: E402

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights",
                    "demo-synth-tiny-fastdsc.safetensors")


def track_clip(det, video: str, options: TrackerOptions):
    """MOT rows of the tracks of every frame of ``video``, and the tracker's seconds per
    frame."""
    cap = cv2.VideoCapture(video)
    tracker = Tracker(options)
    rows, raw, times, i = [], [], [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        dets = det(frame)
        t0 = time.perf_counter()
        tracked = tracker.update(dets, frame_index=i)
        times.append(time.perf_counter() - t0)
        rows += rows_for_frame(i, tracked)
        raw += rows_for_frame(i, [d._replace(track_id=0) for d in dets
                                  if d.score >= options.high_score])
        i += 1
    cap.release()
    return rows, raw, times, tracker


def offset(rows, frames: int, ids: int):
    return [r._replace(frame=r.frame + frames, track_id=r.track_id + ids) for r in rows]


def untracked(video_rows):
    """Every detection as a track of its own."""
    return [r._replace(track_id=k + 1) for k, r in enumerate(video_rows)]


def true_boxes(gt, options: TrackerOptions):
    """The tracker's rows with the true boxes of ``gt`` as its detections."""
    tracker, rows = Tracker(options), []
    last = max(r.frame for r in gt)
    by = {f: [] for f in range(1, last + 1)}
    for r in gt:
        by[r.frame].append(r)
    for f in range(1, last + 1):
        dets = [detector.Detection(r.box, 0.9 if r.conf else 0.3, r.class_id, "")
                for r in by[f]]
        rows += rows_for_frame(f - 1, tracker.update(dets, frame_index=f - 1))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=DEMO)
    ap.add_argument("--backend", default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(101, 111)))
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--conf", type=float, default=0.1, help="detector threshold (default 0.1)")
    ap.add_argument("--img-size", type=int, help="network input (default: --size)")
    ap.add_argument("--nms-iou", type=float, default=0.45, help="the detector's NMS IoU")
    ap.add_argument("--recover-distance", type=float, default=TrackerOptions.recover_distance,
                    help="TrackerOptions.recover_distance (0: no recovery)")
    ap.add_argument("--out", default="track-synth-out")
    ap.add_argument("--json", help="write the figures as JSON")
    args = ap.parse_args()
    det = detector.load(args.weights, backend=args.backend, conf=args.conf,
                        img_size=args.img_size or args.size, nms_iou=args.nms_iou)
    options = TrackerOptions(recover_distance=args.recover_distance)
    os.makedirs(args.out, exist_ok=True)
    runs = {"tracker": [], "detections alone": [], "true boxes": []}
    all_gt, all_times, per_clip = [], [], {}
    frames = ids = 0
    for seed in args.seeds:
        video = os.path.join(args.out, f"clip-{seed}.mp4")
        gt_path = os.path.join(args.out, f"gt-{seed}.txt")
        write_clip(video, args.frames, args.size, seed, gt=gt_path)
        gt = read_mot(gt_path)
        rows, raw, times, tracker = track_clip(det, video, options)
        write_mot(os.path.join(args.out, f"pred-{seed}.txt"), rows)
        m = evaluate_tracks(rows, gt)
        per_clip[seed] = m.to_json()
        print(f"seed {seed}: MOTA {m.mota:.3f} IDF1 {m.idf1:.3f} ID switches {m.id_switches} "
              f"FP {m.false_positives} FN {m.misses} of {m.objects}; tracks started "
              f"{tracker.started}, true tracks {m.gt_tracks}", flush=True)
        for name, r in (("tracker", rows), ("detections alone", untracked(raw)),
                        ("true boxes", true_boxes(gt, options))):
            runs[name] += offset(r, frames, ids)
        all_gt += offset(gt, frames, ids)
        all_times += times
        frames += args.frames
        ids += 100000
    totals = {name: evaluate_tracks(rows, all_gt) for name, rows in runs.items()}
    print(f"all {len(args.seeds)} clips ({frames} frames, {args.size} px, network input "
          f"{args.img_size or args.size}, backend {det.runner.name}):")
    for name, total in totals.items():
        print(f"-- {name}:")
        if name == "detections alone":       # no identities: only misses and false positives
            bound = 1 - (total.misses + total.false_positives) / max(total.objects, 1)
            print(f"recall {total.recall:.4f}  precision {total.precision:.4f}  misses "
                  f"{total.misses}  false positives {total.false_positives}: MOTA at most "
                  f"{bound:.4f} before any identity error")
        else:
            print(total.table())
    ms = sorted(t * 1e3 for t in all_times)
    print(f"tracker time per frame on these detections: median {statistics.median(ms):.3f} ms, "
          f"p95 {ms[int(0.95 * (len(ms) - 1))]:.3f} ms")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"totals": {k: v.to_json() for k, v in totals.items()},
                       "clips": per_clip, "frames": args.frames,
                       "size": args.size, "seeds": args.seeds, "conf": args.conf,
                       "weights": args.weights}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
