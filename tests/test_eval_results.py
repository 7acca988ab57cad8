"""Devkit results files, the COCO bridge, the eval JSON/table and PR plots."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from detector.data.boxes import voc_to_pixel
from detector.data.voc import Annotation
from detector.errors import UserError
from detector.eval.coco import coco_map
from detector.eval.dets import Detections
from detector.eval.report import evaluate
from detector.eval.results import read_results, results_filename, write_results

NAMES = ["cat", "dog", "bird"]


def ann(iid, boxes, labels, difficult=None, w=200, h=150):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    d = np.zeros(len(b), bool) if difficult is None else np.array(difficult, bool)
    return Annotation(iid, w, h, b, np.array(labels, np.int64), d)


def some_gts():
    return [ann("000001", [[1, 1, 50, 40], [60, 60, 120, 140]], [0, 1]),
            ann("000002", [[10, 10, 100, 100], [120, 5, 180, 60]], [1, 2], [False, True]),
            ann("000003", [], [])]


def perfect(gts):
    d = Detections()
    for a in gts:
        d.add(a.image_id, voc_to_pixel(a.boxes), np.linspace(1, 0.5, len(a.boxes)), a.labels)
    return d


def test_pixel_and_voc_coordinates_round_trip():
    d = Detections()
    d.add("x", [[0, 0, 10, 20]], [0.5], [1])         # pixels: columns 0..9, rows 0..19
    np.testing.assert_array_equal(d.boxes, [[1, 1, 10, 20]])   # VOC: 1-based inclusive
    np.testing.assert_array_equal(voc_to_pixel(d.boxes), [[0, 0, 10, 20]])


def test_results_round_trip(tmp_path):
    d = Detections()
    d.add_voc("000001", [[1.5, 2, 30.25, 40], [3, 4, 5, 6]], [0.91, 0.5], [0, 0])
    d.add_voc("000002", [[10, 10, 100, 100]], [0.123456], [2])
    paths = write_results(str(tmp_path), "val", NAMES, d)
    assert [os.path.basename(p) for p in paths] == [results_filename("val", n) for n in NAMES]
    assert (tmp_path / "comp4_det_val_dog.txt").read_text() == ""      # every class written
    first = (tmp_path / "comp4_det_val_cat.txt").read_text().splitlines()[0].split()
    assert first[0] == "000001" and len(first) == 6
    np.testing.assert_allclose([float(x) for x in first[1:]], [0.91, 1.5, 2, 30.25, 40],
                               rtol=1e-7)
    r = read_results(str(tmp_path), "val", NAMES)
    assert len(r) == len(d)
    for c in range(len(NAMES)):
        (ri, rs, rb), (di, ds, db) = r.for_class(c), d.for_class(c)
        assert ri == di
        np.testing.assert_allclose(rs, ds, rtol=1e-8)
        np.testing.assert_allclose(rb, db, rtol=1e-8)


def test_results_keep_a_box_on_the_iou_threshold_where_it_was(tmp_path):
    """A detection whose IoU with its object is just under 0.5 stays a false positive read
    back from the file (two decimals moved such a box across the threshold)."""
    from detector.eval.voc_ap import voc_iou
    gt = np.array([[116.0, 35.0, 128.0, 56.0]])
    box = [115.66555023, 37.175457, 122.9262619, 58.62218094]
    assert 0.4999 < voc_iou(np.array(box), gt)[0] < 0.5
    d = Detections()
    d.add_voc("000017", [box], [0.5883475542068481], [0])
    write_results(str(tmp_path), "val", NAMES, d)
    back = read_results(str(tmp_path), "val", NAMES).for_class(0)[2][0]
    assert voc_iou(np.asarray(back, float), gt)[0] < 0.5


@pytest.mark.parametrize("line,fragment", [
    ("000001 0.5 1 2 3", "line 2: expected"),
    ("000001 high 1 2 3 4", "line 2: score and coordinates must be numbers"),
    ("000001 0.5 1 2 nan 4", "line 2: non-finite"),
    ("000001 0.5 10 2 3 4", "line 2: box has negative size"),
])
def test_bad_result_lines_name_file_and_line(tmp_path, line, fragment):
    p = tmp_path / "comp4_det_val_cat.txt"
    p.write_text("000001 0.9 1 1 10 10\n" + line + "\n")
    with pytest.raises(UserError) as e:
        read_results(str(tmp_path), "val", NAMES)
    assert str(p) in str(e.value) and fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_results_dir_problems(tmp_path, caplog):
    with pytest.raises(UserError, match="no such directory"):
        read_results(str(tmp_path / "nope"), "val", NAMES)
    with pytest.raises(UserError, match="no comp4_det_val_<class>.txt files"):
        read_results(str(tmp_path), "val", NAMES)
    (tmp_path / "comp4_det_val_cat.txt").write_text("a 0.5 1 1 5 5\n\n")
    r = read_results(str(tmp_path), "val", NAMES)           # dog, bird missing: warned
    assert len(r) == 1 and "dog, bird" in caplog.text
    (tmp_path / "comp4_det_val_horse.txt").write_text("")
    with pytest.raises(UserError, match="'horse' is not one of"):
        read_results(str(tmp_path), "val", NAMES)


def test_coco_perfect_empty_and_partial():
    gts = some_gts()
    assert coco_map(gts, perfect(gts), 3) == (pytest.approx(1.0), pytest.approx(1.0))
    assert coco_map(gts, Detections(), 3) == (0.0, 0.0)
    # only difficult ground truth: nothing to measure
    assert coco_map([ann("a", [[1, 1, 9, 9]], [0], [True])], Detections(), 1) == (None, None)
    # one 100x100 gt, detection 100x162 over it: IoU 10000/16200 = .617 (devkit and COCO
    # agree thanks to the +1 conversion): a match at IoU .50 .55 .60 only -> 3/10
    g = [ann("a", [[1, 1, 100, 100]], [0], w=300, h=300)]
    d = Detections()
    d.add_voc("a", [[1, 1, 100, 162]], [0.9], [0])
    m, m50 = coco_map(g, d, 1)
    assert m50 == pytest.approx(1.0) and m == pytest.approx(0.3)


def test_coco_difficult_is_ignored_not_false_positive():
    g = [ann("a", [[1, 1, 50, 50], [100, 100, 150, 150]], [0, 0], [False, True])]
    d = Detections()
    d.add_voc("a", [[100, 100, 150, 150], [1, 1, 50, 50]], [0.9, 0.8], [0, 0])
    m, m50 = coco_map(g, d, 1)
    assert m == pytest.approx(1.0) and m50 == pytest.approx(1.0)


def test_report_json_and_table(tmp_path):
    gts = some_gts()
    res = evaluate(gts, perfect(gts), NAMES)
    res.fps = 12.345
    j = res.to_json()
    assert set(j) == {"voc07_map", "voc_map", "coco_map", "coco_map50", "per_class", "images",
                      "fps"}
    assert j["voc07_map"] == 1.0 and j["voc_map"] == 1.0 and j["coco_map"] == 1.0
    assert j["images"] == 3 and j["fps"] == 12.35
    assert j["per_class"]["bird"] == {"voc07_ap": None, "ap": None, "gt": 0, "dets": 1}
    assert j["per_class"]["cat"]["ap"] == 1.0
    path = tmp_path / "eval.json"
    res.write_json(str(path))
    assert json.loads(path.read_text()) == j
    t = res.table()
    assert "cat" in t and "mAP" in t and "COCO mAP@[.5:.95] 1.0000" in t and "12.3 FPS" in t


def test_pr_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from detector.eval.plots import plot_pr_curves
    gts = some_gts()
    d = perfect(gts)
    d.add_voc("000003", [[1, 1, 20, 20]], [0.99], [0])
    res = evaluate(gts, d, NAMES, coco=False)
    paths = plot_pr_curves(res.classes, NAMES, str(tmp_path / "plots"))
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["pr_all.png", "pr_cat.png", "pr_dog.png"]      # bird has no gt
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_without_matplotlib(tmp_path, monkeypatch, caplog):
    import builtins
    from detector.eval import plots
    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.setattr(plots, "_warned", False)
    gts = some_gts()
    res = evaluate(gts, perfect(gts), NAMES, coco=False)
    assert plots.plot_pr_curves(res.classes, NAMES, str(tmp_path)) == []
    assert plots.plot_pr_curves(res.classes, NAMES, str(tmp_path)) == []
    assert caplog.text.count("matplotlib is not installed") == 1
