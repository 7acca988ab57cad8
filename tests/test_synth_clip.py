"""The synthetic clip and its true tracks (``detector synth --clip``): frames, ground truth
with crossings and occlusion gaps, the MOT file, and the tracker on the true boxes."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from conftest import run_cli
from detector.data import clip
from detector.detection import Detection
from detector.eval.tracking import evaluate_tracks
from detector.io.mot import read_mot, rows_for_frame
from detector.track import Tracker
from detector.track.assign import iou_matrix


def test_clip(tmp_path):
    import cv2
    p = clip.write_clip(str(tmp_path / "v" / "demo.mp4"), frames=12, size=(96, 64), seed=2)
    cap = cv2.VideoCapture(p)
    n, shape = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n, shape = n + 1, f.shape
    cap.release()
    assert n == 12 and shape == (64, 96, 3)
    a = list(clip.clip_frames(3, 64, seed=2))
    b = list(clip.clip_frames(3, 64, seed=2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], a[2])          # things move


@pytest.fixture(scope="module")
def scenes():
    return {seed: list(clip.clip_scenes(150, 128, seed)) for seed in (0, 1, 2)}


def test_truth_is_consistent(scenes):
    for seed, frames in scenes.items():
        ids = {o.track_id for _, truth in frames for o in truth}
        assert ids == set(range(1, len(ids) + 1)) and 4 <= len(ids) <= 6, seed
        for img, truth in frames:
            assert img.shape == (128, 128, 3)
            for o in truth:
                x1, y1, x2, y2 = o.box
                assert 0 <= x1 < x2 <= 128 and 0 <= y1 < y2 <= 128
                assert 0.12 <= o.visibility <= 1.0 and o.ignored == (o.visibility < 0.45)
                assert o.name in clip.CLASSES


def test_objects_cross_and_hide(scenes):
    """Every clip has objects whose boxes overlap (a crossing) and partly hidden ones; some
    object vanishes for a while and comes back (an occlusion gap)."""
    gaps = 0
    for seed, frames in scenes.items():
        overlaps = sum(1 for _, t in frames if len(t) > 1 and
                       (np.triu(iou_matrix([o.box for o in t], [o.box for o in t]), 1) > 0.05).any())
        assert overlaps >= 5, seed
        assert any(o.visibility < 0.9 for _, t in frames for o in t), seed
        seen = defaultdict(list)
        for i, (_, t) in enumerate(frames):
            for o in t:
                seen[o.track_id].append(i)
        gaps += sum(1 for f in seen.values() if np.any(np.diff(f) > 1))
    assert gaps >= 1


def test_write_clip_writes_the_truth(tmp_path):
    gt = str(tmp_path / "gt.txt")
    clip.write_clip(str(tmp_path / "c.mp4"), frames=20, size=96, seed=4, gt=gt)
    rows = read_mot(gt)
    want = [r for i, (_, t) in enumerate(clip.clip_scenes(20, 96, 4)) for r in clip.truth_rows(i, t)]
    assert [(r.frame, r.track_id, r.class_id, r.conf) for r in rows] == \
        [(r.frame, r.track_id, r.class_id, r.conf) for r in want]
    np.testing.assert_allclose([r.box for r in rows], [r.box for r in want], atol=0.01)
    assert min(r.frame for r in rows) == 1 and max(r.frame for r in rows) == 20


def test_tracker_on_true_boxes_keeps_identities(scenes):
    """With perfect detections (ignored objects at a low score) the tracker's errors are its
    own: identities must survive the crossings and the gaps behind the post."""
    for seed, frames in scenes.items():
        tracker, pred, gt = Tracker(), [], []
        for i, (_, truth) in enumerate(frames):
            dets = [Detection(o.box, 0.3 if o.ignored else 0.9, o.label, o.name) for o in truth]
            pred += rows_for_frame(i, tracker.update(dets, frame_index=i))
            gt += clip.truth_rows(i, truth)
        m = evaluate_tracks(pred, gt)
        assert m.mota >= 0.95 and m.idf1 >= 0.9, (seed, m.table())


def test_synth_clip_command(tmp_path):
    out = tmp_path / "s"
    p = run_cli("synth", out, "--train", "0", "--val", "0", "--clip", "30", "--size", "96")
    assert p.returncode == 0, p.stderr
    assert (out / "clip.mp4").stat().st_size > 0 and "gt.txt" in p.stdout
    rows = read_mot(str(out / "gt.txt"))
    assert {r.frame for r in rows} <= set(range(1, 31)) and len(rows) >= 60
    p = run_cli("eval", "--tracks", out / "gt.txt", "--gt", out / "gt.txt")
    assert p.returncode == 0 and "MOTA 1.0000  IDF1 1.0000  ID switches 0" in p.stdout
