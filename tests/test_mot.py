"""MOT Challenge files (read, write, round trip) and the tracking metrics of `detector eval
--tracks`, checked against a small case worked out by hand."""
from __future__ import annotations

import json

import pytest

from conftest import assert_user_error, run_cli
from detector.detection import Detection
from detector.errors import UserError
from detector.eval.tracking import evaluate_tracks
from detector.io.mot import MotRow, MotWriter, format_row, parse_mot, read_mot, rows_for_frame, \
    write_mot


def test_format_and_round_trip(tmp_path):
    rows = [MotRow(2, 7, 0.0, 1.5, 30.25, 40.0, 0.5, 0, 0.875),
            MotRow(1, 3, 10.5, 20.0, 30.25, 40.0, 0.91234, 1, -1.0),
            MotRow(1, 1, 3.0, 4.0, 5.0, 6.0, 1.0, -1, -1.0)]
    assert format_row(rows[1]) == "1,3,10.5,20,30.25,40,0.91234,2,-1"
    assert format_row(rows[2]) == "1,1,3,4,5,6,1,-1,-1"
    path = str(tmp_path / "sub" / "t.txt")
    write_mot(path, rows)
    with open(path) as f:
        assert [ln.split(",")[:2] for ln in f.read().splitlines()] == \
            [["1", "1"], ["1", "3"], ["2", "7"]]                    # by frame, then id
    assert read_mot(path) == sorted(rows, key=lambda r: (r.frame, r.track_id))
    assert read_mot(path)[2].box == (0.0, 1.5, 30.25, 41.5)


def test_rows_for_frame_and_streaming_writer(tmp_path):
    dets = [Detection((10.0, 20.0, 40.0, 60.0), 0.8, 2, "triangle", track_id=4),
            Detection((0.0, 0.0, 5.0, 5.0), 0.9, 0, "circle")]          # untracked: no row
    rows = rows_for_frame(0, dets)
    assert rows == [MotRow(1, 4, 10.0, 20.0, 30.0, 40.0, 0.8, 2, -1.0)]
    path = str(tmp_path / "pred.txt")
    with MotWriter(path) as w:
        w.write(0, dets)
        with open(path) as f:                                       # flushed frame by frame
            assert f.read() == "1,4,10,20,30,40,0.8,3,-1\n"
        w.write(5, [dets[0]._replace(track_id=9)])
    assert [(r.frame, r.track_id, r.class_id) for r in read_mot(path)] == [(1, 4, 2), (6, 9, 2)]
    assert w.rows == 2


def test_reads_other_layouts():
    text = ("# a comment\n\n"
            "1, 2, 10, 20, 30, 40\n"                       # six columns
            "2 2 11 21 30 40 0.7 -1 -1\n"                  # whitespace separated
            "3,2,12,22,30,40,0.6,-1,-1,-1\n")              # MOT15: ten columns
    rows = parse_mot(text, "x.txt")
    assert [r.frame for r in rows] == [1, 2, 3]
    assert rows[0].conf == 1.0 and rows[0].class_id == -1 and rows[0].visibility == -1
    assert rows[1].conf == 0.7 and rows[2].x == 12


@pytest.mark.parametrize("line,fragment", [
    ("1,2,3,4,5", "expected 6 to 10 values"),
    ("a,2,3,4,5,6", "expected numbers"),
    ("0,2,3,4,5,6", "frame must be an integer >= 1"),
    ("1.5,2,3,4,5,6", "frame must be an integer"),
    ("1,2,3,4,-5,6", "width and height must be >= 0"),
    ("1,2,3,4,nan,6", "finite"),
])
def test_bad_lines_name_file_and_line(line, fragment):
    with pytest.raises(UserError, match=fragment) as e:
        parse_mot("1,1,0,0,1,1\n" + line + "\n", "gt.txt")
    assert str(e.value).startswith("gt.txt:2: ")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_mot(str(tmp_path / "none.txt"))


# ---- metrics -----------------------------------------------------------------------------

A, B, FAR = (0.0, 0.0, 10.0, 10.0), (100.0, 0.0, 10.0, 10.0), (300.0, 300.0, 10.0, 10.0)


def hand_case():
    """Two objects over five frames; by hand (ignored boxes out, IoU >= 0.5 matches):
    frame 1: both found (10 on 1, 20 on 2)
    frame 2: object 2 missed (FN), 30 lies elsewhere (FP)
    frame 3: object 1 now found as 11 (an ID switch), object 2 as 20
    frame 4: object 1 is ignored (conf 0): 11 on it is neither hit nor FP; 20 on 2
    frame 5: object 2 missed (FN)
    true boxes 8 (2+2+2+1+1), predicted 7, FN 2, FP 1, switches 1:
    MOTA = 1 - (2 + 1 + 1) / 8 = 0.5
    IDF1: best id pairs 1-10 (2 frames), 2-20 (3 frames): IDTP 5, IDF1 = 2*5 / (8 + 7)."""
    gt = [MotRow(f, 1, *A) for f in (1, 2, 3)] + [MotRow(4, 1, *A, conf=0.0)] + \
        [MotRow(f, 2, *B) for f in (1, 2, 3, 4, 5)]
    pred = [MotRow(1, 10, *A), MotRow(1, 20, *B), MotRow(2, 10, *A), MotRow(2, 30, *FAR),
            MotRow(3, 11, *A), MotRow(3, 20, *B), MotRow(4, 11, *A), MotRow(4, 20, *B)]
    return pred, gt


def test_metrics_match_the_hand_computed_case():
    pred, gt = hand_case()
    m = evaluate_tracks(pred, gt)
    assert (m.objects, m.predictions, m.misses, m.false_positives, m.id_switches, m.ignored) \
        == (8, 7, 2, 1, 1, 1)
    assert m.mota == pytest.approx(0.5)
    assert m.idf1 == pytest.approx(10 / 15)
    assert m.idp == pytest.approx(5 / 7) and m.idr == pytest.approx(5 / 8)
    assert m.frames == 5 and m.switches_per_100_frames == pytest.approx(20.0)
    assert m.motp == pytest.approx(0.0) and m.gt_tracks == 2 and m.pred_tracks == 4


def test_metrics_perfect_and_partial_overlap():
    gt = [MotRow(f, 1, 10.0 * f, 0.0, 20.0, 20.0) for f in range(1, 11)]
    assert evaluate_tracks(gt, gt).mota == 1.0 and evaluate_tracks(gt, gt).idf1 == 1.0
    shifted = [r._replace(x=r.x + 5) for r in gt]                    # IoU 15/25 = 0.6
    m = evaluate_tracks(shifted, gt)
    assert m.mota == 1.0 and m.motp == pytest.approx(1 - 0.6)
    m = evaluate_tracks([r._replace(x=r.x + 8) for r in gt], gt)      # IoU 12/28 < 0.5
    assert m.mota == pytest.approx(-1.0) and m.idf1 == 0.0


def test_duplicate_ids_in_a_frame_are_refused():
    gt = [MotRow(1, 1, *A), MotRow(1, 1, *B)]
    with pytest.raises(UserError, match="id 1 appears twice in frame 1"):
        evaluate_tracks(gt[:1], gt, gt_name="gt.txt")


def test_eval_tracks_command(tmp_path):
    pred, gt = hand_case()
    write_mot(str(tmp_path / "pred.txt"), pred)
    write_mot(str(tmp_path / "gt.txt"), gt)
    p = run_cli("eval", "--tracks", tmp_path / "pred.txt", "--gt", tmp_path / "gt.txt",
                "--json", tmp_path / "m.json")
    assert p.returncode == 0, p.stderr
    assert "MOTA 0.5000  IDF1 0.6667  ID switches 1" in p.stdout
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["mota"] == pytest.approx(0.5) and res["id_switches"] == 1
    assert res["switches_per_100_frames"] == pytest.approx(20.0)


def test_eval_tracks_user_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("1,2,3\n")
    (tmp_path / "gt.txt").write_text("1,1,0,0,10,10,1,1,1\n")
    assert_user_error(run_cli("eval", "--tracks", tmp_path / "gt.txt"), "--tracks and --gt")
    assert_user_error(run_cli("eval", "--tracks", tmp_path / "bad.txt", "--gt",
                              tmp_path / "gt.txt"), "bad.txt:1:")
    assert_user_error(run_cli("eval", "--tracks", tmp_path / "gt.txt", "--gt",
                              tmp_path / "none.txt"), "none.txt")
    assert_user_error(run_cli("eval", "--tracks", tmp_path / "gt.txt", "--gt",
                              tmp_path / "gt.txt", "--data", "x.yaml"), "drop --data")
    assert_user_error(run_cli("eval", "--weights", "w.safetensors"), "--data")


def test_eval_tracks_without_motmetrics_says_what_to_install(tmp_path):
    from conftest import REPO, cli_env
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "motmetrics.py").write_text("raise ImportError('no motmetrics here')\n")
    (tmp_path / "gt.txt").write_text("1,1,0,0,10,10,1,1,1\n")
    env = cli_env(PYTHONPATH=str(stub) + ":" + REPO)
    proc = run_cli("eval", "--tracks", tmp_path / "gt.txt", "--gt", tmp_path / "gt.txt", env=env)
    assert_user_error(proc, "py-motmetrics", "fastdsc-yolo[mot]")
