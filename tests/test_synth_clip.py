"""The synthetic clip and its true tracks (``detector synth --clip``): frames, ground truth
with crossings and occlusion gaps, the MOT file, and the tracker on the true boxes."""
from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import pytest

from conftest import assert_user_error, run_cli
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


def test_clip_stills_are_frames_of_training_clips_labelled_like_the_stills():
    """One frame every STILL_EVERY of a training clip; VOC boxes (1-based, inclusive) of the
    visible pixels, ignored objects difficult, border-cut ones truncated; no training clip is
    the clip of any seed (the clips the tracking figures are measured on)."""
    stills = clip.clip_stills(seed=3, index=2, size=96, count=4)
    frames = list(clip.clip_scenes(4 * clip.STILL_EVERY, 96, seed=3, training=2))
    assert len(stills) == 4
    for k, (img, objs) in enumerate(stills):
        src, truth = frames[(k + 1) * clip.STILL_EVERY - 1]
        assert np.array_equal(img, src)
        assert [o.box for o in objs] == [(int(t.box[0]) + 1, int(t.box[1]) + 1, int(t.box[2]),
                                          int(t.box[3])) for t in truth]
        assert [o.label for o in objs] == [t.label for t in truth]
        assert [o.difficult for o in objs] == [t.ignored for t in truth]
        for o in objs:
            cut = o.box[0] == 1 or o.box[1] == 1 or o.box[2] == 96 or o.box[3] == 96
            assert o.truncated == cut
    first = [img for img, _ in clip.clip_stills(3, 0, 96, 2)]
    assert not np.array_equal(first[0], stills[0][0])           # another clip per index
    for seed in range(4):
        shown = next(iter(clip.clip_scenes(clip.STILL_EVERY, 96, seed)))[0]
        assert all(not np.array_equal(shown, img) for img in first)
    with pytest.raises(ValueError, match="count"):
        clip.clip_stills(3, 0, 96, clip.STILLS_PER_CLIP + 1)


def test_clip_images_join_the_train_split(tmp_path):
    """``detector synth --clip-images N``: N clip frames after the stills in the train split
    (ids after the val images), read back by the VOC reader with their labels, the val split
    untouched; the same bytes with worker processes; the data.yaml says how to remake it."""
    from detector.data import synth
    from detector.data.voc import VOCDataset
    from test_synth import tree_digest
    a, b, plain = (str(tmp_path / n) for n in ("a", "b", "plain"))
    st = synth.generate(a, train=2, val=2, size=64, seed=5, clip_images=62)
    synth.generate(b, train=2, val=2, size=64, seed=5, clip_images=62, workers=2)
    synth.generate(plain, train=2, val=2, size=64, seed=5)
    assert tree_digest(a) == tree_digest(b)
    assert st["images"] == 66 and st["clip_images"] == 62
    train = VOCDataset(os.path.join(a, "data.yaml"), "train", cache=False)
    assert len(train) == 64
    ids = [train.annotations(i).image_id for i in range(64)]
    assert ids == [f"{i:06d}" for i in (0, 1, *range(4, 66))]
    per = clip.STILLS_PER_CLIP
    want = [objs for c in range(7) for _, objs in clip.clip_stills(5, c, 64, min(per, 62 - per * c))]
    for i, objs in enumerate(want):
        got = train.annotations(2 + i)
        assert got.boxes.tolist() == [list(map(float, o.box)) for o in objs]
        assert got.labels.tolist() == [o.label for o in objs]
    pa, pp = tree_digest(a), tree_digest(plain)
    assert all(pa[k] == pp[k] for k in pp if "000002" in k or "000003" in k)   # val: the same
    y = open(os.path.join(a, "data.yaml")).read()
    assert "2 train + 62 clip frames / 2 val" in y and "--clip-images 62" in y


def test_synth_clip_images_command(tmp_path):
    p = run_cli("synth", tmp_path / "s", "--train", "1", "--val", "1", "--size", "64",
                "--clip-images", "3")
    assert p.returncode == 0, p.stderr
    assert "wrote 5 images (1 train + 3 clip frames, 1 val, 64 px" in p.stdout
    assert len(os.listdir(tmp_path / "s" / "VOCsynth" / "JPEGImages")) == 5
    p = run_cli("synth", tmp_path / "t", "--clip-images", "-1")
    assert_user_error(p, "--clip-images must be >= 0")
