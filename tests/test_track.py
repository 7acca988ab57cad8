"""The tracker on hand-made detection sequences whose identities are known, and its parts
(Kalman filter, optimal matching)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.detection import Detection
from detector.errors import ParamError
from detector.track import Tracker, TrackerOptions
from detector.track.assign import hungarian, iou_matrix, match
from detector.track.kalman import (POSITION_NOISE, VELOCITY_NOISE, correct, full_cov, initiate,
                                    predict)


def box(cx, cy, w=20.0, h=20.0, score=0.9, cls=0):
    return Detection((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), score, cls, f"c{cls}")


def run(tracker, frames):
    return [tracker.update(dets, frame_index=i) for i, dets in enumerate(frames)]


# ---- sequences ---------------------------------------------------------------------------

def test_first_frame_confirmed_at_once_later_objects_after_min_hits():
    t = Tracker()
    out = t.update([box(50, 50), box(150, 50)])
    assert sorted(d.track_id for d in out) == [1, 2] and t.started == 2
    out = t.update([box(52, 50), box(152, 50), box(300, 200)])       # a newcomer: tentative
    assert sorted(d.track_id for d in out) == [1, 2]
    out = t.update([box(54, 50), box(154, 50), box(302, 200)])       # second sighting
    assert sorted(d.track_id for d in out) == [1, 2, 3] and t.started == 3


def test_output_keeps_input_order_and_detections():
    t = Tracker()
    dets = [box(150, 50, score=0.7), box(50, 50, score=0.8)]
    out = t.update(dets)
    assert [d._replace(track_id=None) for d in out] == dets
    assert [d.track_id for d in out] == [1, 2]


def test_crossing_objects_keep_their_ids():
    """Two objects of one class on one line pass through each other (their boxes overlap
    fully at the crossing); the constant-velocity prediction tells them apart."""
    frames = [[box(20 + 6 * f, 100), box(200 - 6 * f, 103)] for f in range(30)]
    t = Tracker()
    outs = run(t, frames)
    first = {d.box[1] + 10: d.track_id for d in outs[0]}           # {centre y: id}
    for f, out in enumerate(outs):
        assert sorted((d.box[1] + 10, d.track_id) for d in out) == sorted(first.items()), f
    assert t.started == 2 and t.ended == 0


def test_occlusion_gap_keeps_the_id_and_long_gap_ends_the_track():
    opts = TrackerOptions(lost_frames=10)
    t = Tracker(opts)
    seq = [[box(20 + 4 * f, 60)] for f in range(10)]
    seq += [[] for _ in range(6)]                                   # hidden for 6 frames
    seq += [[box(20 + 4 * f, 60)] for f in range(16, 24)]           # back where it went
    outs = run(t, seq)
    assert {d.track_id for out in outs for d in out} == {1}
    assert all(len(out) == 1 for out in outs[:10] + outs[16:])
    assert t.active == 1 and t.ended == 0
    for i in range(24, 24 + opts.lost_frames + 1):                  # gone for good
        t.update([], frame_index=i)
    assert t.ended == 1 and t.active == 0
    out = t.update([box(500, 60)], frame_index=40)
    out = t.update([box(502, 60)], frame_index=41)
    assert [d.track_id for d in out] == [2]


def test_missed_frame_and_skipped_frame_index():
    t = Tracker()
    seq = [[box(20 + 5 * f, 60), box(200, 20 + 5 * f, cls=1)] for f in range(8)]
    seq[4] = [seq[4][1]]                                            # object 1 missed once
    outs = run(t, seq)
    assert [sorted(d.track_id for d in out) for out in outs] == \
        [[1, 2]] * 4 + [[2]] + [[1, 2]] * 3
    # frames 8, 9 skipped (a live source keeps only the newest frame): the motion goes on
    out = t.update([box(20 + 5 * 10, 60), box(200, 20 + 5 * 10, cls=1)], frame_index=10)
    assert sorted(d.track_id for d in out) == [1, 2]


def test_low_score_boxes_continue_tracks_but_start_none():
    t = Tracker()
    t.update([box(50, 50)])
    out = t.update([box(53, 50, score=0.3), box(200, 200, score=0.3)])
    assert [d.track_id for d in out] == [1] and out[0].score == 0.3
    t.update([box(56, 50, score=0.3), box(200, 200, score=0.3)])
    assert t.started == 1
    out = t.update([box(59, 50, score=0.05)])                      # below low_score
    assert out == []


def test_class_decides_matching_per_class_only():
    seq = [[box(50, 50, cls=0)], [box(52, 50, cls=0)], [box(54, 50, cls=3)], [box(56, 50, cls=3)]]
    per_class = run(Tracker(), seq)
    assert [d.track_id for d in per_class[3]] == [2]               # a new track for class 3
    agnostic = run(Tracker(TrackerOptions(per_class=False)), seq)
    assert [d.track_id for d in agnostic[3]] == [1] and agnostic[3][0].class_id == 3


def test_hidden_object_reappearing_elsewhere_is_recovered():
    """A detector of visible pixels: the box shrinks as the object goes behind a post, is
    gone for three frames and reappears beyond it, far from where IoU could match."""
    seq = [[box(40 + 4 * f, 80, w=40, h=40)] for f in range(6)]
    seq += [[box(70, 80, w=20, h=40)], [box(76, 80, w=8, h=40)], [], [], []]
    seq += [[box(122, 80, w=10, h=40)], [box(126, 80, w=20, h=40)], [box(130, 80, w=40, h=40)]]
    outs = run(Tracker(), seq)
    assert {d.track_id for out in outs for d in out} == {1}
    assert all(len(outs[i]) == 1 for i in (11, 12, 13))
    off = run(Tracker(TrackerOptions(recover_distance=0)), seq)
    assert {d.track_id for out in off for d in out} == {1, 2}


def test_recovery_needs_the_same_class_and_nearness():
    seq = [[box(40 + 4 * f, 80, w=40, h=40)] for f in range(6)] + [[], []]
    far = run(Tracker(), seq + [[box(300, 80, w=40, h=40)], [box(304, 80, w=40, h=40)]])
    assert [d.track_id for d in far[-1]] == [2]
    other = run(Tracker(), seq + [[box(72, 80, w=40, h=40, cls=2)], [box(76, 80, w=40, h=40, cls=2)]])
    assert [d.track_id for d in other[-1]] == [2]


def test_trails_are_recent_centres_of_visible_tracks():
    t = Tracker(TrackerOptions(trail_length=4))
    for f in range(6):
        t.update([box(10 + f, 20), box(100, 100 + 2 * f)] if f < 5 else [box(10 + f, 20)])
    trails = t.trails()
    assert list(trails) == [1]                                      # track 2 not seen now
    assert trails[1] == [(12.0, 20.0), (13.0, 20.0), (14.0, 20.0), (15.0, 20.0)]
    assert t.trails(2)[1] == [(14.0, 20.0), (15.0, 20.0)]


def test_counters_and_reset():
    t = Tracker(TrackerOptions(lost_frames=2))
    t.update([box(10, 10), box(100, 100)])
    assert (t.started, t.ended, t.active) == (2, 0, 2)
    t.reset()
    assert (t.started, t.ended, t.active) == (2, 2, 0)
    out = t.update([box(10, 10)], frame_index=0)                   # a new run: frame 0 again
    assert [d.track_id for d in out] == [3]


def test_bad_options_and_frame_index_name_the_parameter():
    with pytest.raises(ParamError, match="high_score"):
        TrackerOptions(high_score=1.5)
    with pytest.raises(ParamError, match="low_score"):
        TrackerOptions(low_score=0.6, high_score=0.5)
    with pytest.raises(ParamError, match="min_hits"):
        TrackerOptions(min_hits=0)
    with pytest.raises(ParamError, match="lost_frames"):
        TrackerOptions(lost_frames=2.5)
    with pytest.raises(ParamError, match="match_iou"):
        TrackerOptions(match_iou=0)
    t = Tracker()
    t.update([], frame_index=5)
    with pytest.raises(ParamError, match="frame_index"):
        t.update([], frame_index=5)
    with pytest.raises(ParamError, match="frame_index"):
        t.update([], frame_index="6")


def test_many_objects_random_walk_keep_ids():
    """50 objects on a grid moving with small random accelerations: every id holds."""
    rng = np.random.default_rng(0)
    pos = np.stack(np.meshgrid(np.arange(10) * 60.0, np.arange(5) * 60.0), -1).reshape(-1, 2)
    vel = rng.uniform(-2, 2, (50, 2))
    t = Tracker()
    seen = {}
    for _ in range(60):
        vel += rng.normal(0, 0.2, vel.shape)
        pos += vel
        dets = [box(x, y, w=24, h=24, cls=k % 3) for k, (x, y) in enumerate(pos)]
        out = t.update(dets)
        assert len(out) == 50
        for d in out:
            k = next(i for i, dd in enumerate(dets) if dd.box == d.box)
            assert seen.setdefault(k, d.track_id) == d.track_id
    assert t.started == 50


# ---- parts -------------------------------------------------------------------------------

def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0], [0, 0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 2)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2 ** 32 - 1))
def test_hungarian_is_optimal(n, m, seed):
    cost = np.random.default_rng(seed).random((n, m))
    pairs = hungarian(cost)
    assert len(pairs) == min(n, m)
    assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == min(n, m)
    if n <= m:
        best = min(sum(cost[i, p[i]] for i in range(n))
                   for p in itertools.permutations(range(m), n))
    else:
        best = min(sum(cost[p[j], j] for j in range(m))
                   for p in itertools.permutations(range(n), m))
    assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


def test_match_maximises_summed_iou_above_threshold():
    iou = np.array([[0.9, 0.6, 0.0],
                    [0.8, 0.0, 0.0],
                    [0.0, 0.0, 0.1]])
    pairs, rows, cols = match(iou, 0.2)
    assert pairs == [(0, 1), (1, 0)] and rows == [2] and cols == [2]   # 0.6 + 0.8 > 0.9
    assert match(np.zeros((0, 3)), 0.2) == ([], [], [0, 1, 2])


def test_kalman_learns_a_constant_velocity():
    mean, cov = initiate(np.array([[100.0, 50.0, 20.0, 10.0]]))
    for f in range(1, 40):
        predict(mean, cov)
        correct(mean, cov, np.array([[100.0 + 3 * f, 50.0 - 1 * f, 20.0, 10.0]]))
    np.testing.assert_allclose(mean[0, 4:6], [3.0, -1.0], atol=0.05)
    predict(mean, cov, steps=2.0)
    np.testing.assert_allclose(mean[0, :2], [100 + 3 * 41, 50 - 41], atol=0.3)
    assert np.all(np.linalg.eigvalsh(full_cov(cov)[0]) > 0)


def test_kalman_blocks_equal_the_full_filter():
    """The 2x2-block filter gives the textbook 8x8 filter's numbers (F P F^T + Q, then the
    gain P H^T (H P H^T + R)^-1 with H = [I 0]), boxes of different sizes at once."""
    rng = np.random.default_rng(3)
    boxes = rng.uniform([50, 50, 10, 10], [500, 400, 120, 90], (5, 4))
    mean, cov = initiate(boxes)
    m_ref, p_ref = mean.copy(), full_cov(cov)
    f, h = np.eye(8), np.eye(4, 8)
    for step in (1.0, 2.0, 1.0, 3.0, 1.0):
        side = np.tile(np.maximum(m_ref[:, 2:4], 1.0), 2)
        f[:4, 4:] = step * np.eye(4)
        q = np.concatenate([POSITION_NOISE * side, VELOCITY_NOISE * side], axis=1) ** 2
        m_ref = m_ref @ f.T
        p_ref = np.stack([f @ p @ f.T + step * np.diag(qq) for p, qq in zip(p_ref, q)])
        predict(mean, cov, step)
        np.testing.assert_allclose(mean, m_ref, rtol=1e-12)
        np.testing.assert_allclose(full_cov(cov), p_ref, rtol=1e-9, atol=1e-12)
        z = m_ref[:, :4] + rng.normal(0, 3, (5, 4))
        side = np.tile(np.maximum(m_ref[:, 2:4], 1.0), 2)[:, :4]
        for i in range(5):
            s = h @ p_ref[i] @ h.T + np.diag((POSITION_NOISE * side[i]) ** 2)
            k = p_ref[i] @ h.T @ np.linalg.inv(s)
            m_ref[i] = m_ref[i] + k @ (z[i] - h @ m_ref[i])
            p_ref[i] = (np.eye(8) - k @ h) @ p_ref[i]
        correct(mean, cov, z)
        np.testing.assert_allclose(mean, m_ref, rtol=1e-9)
        np.testing.assert_allclose(full_cov(cov), p_ref, rtol=1e-9, atol=1e-9)
