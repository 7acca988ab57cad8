"""Evaluation whatever layout holds the labels: the same detections on the same images give the
same mAP from VOCdevkit, YOLO and COCO labels; ``eval --dets`` reads devkit results files and
COCO results JSON; ``eval`` and ``anchors`` run on every layout as real commands."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import REPO, assert_user_error, run_cli
from detector.data import synth
from detector.data.boxes import voc_to_pixel
from detector.data.dataset import open_dataset
from detector.data.synth import SynthConfig
from detector.errors import UserError
from detector.eval.coco_results import read_coco_results, write_coco_results
from detector.eval.det_files import read_detections, write_detections
from detector.eval.dets import Detections
from detector.eval.report import evaluate
from detector.train.anchors import dataset_box_sizes, kmeans_anchors

FORMATS = ("voc", "yolo", "coco")
DEMO = os.path.join(REPO, "weights", "demo-synth-tiny-fastdsc.safetensors")
PLAIN = SynthConfig(difficult_min_side=0.0, difficult_visible=0.0)   # no difficult objects


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """One set without difficult objects, written in the three layouts."""
    base = tmp_path_factory.mktemp("plain")
    for f in FORMATS:
        synth.generate(str(base / f), train=6, val=12, size=128, seed=4, cfg=PLAIN, fmt=f)
    return {f: str(base / f / "data.yaml") for f in FORMATS}


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """The default content (with difficult objects) in the three layouts."""
    base = tmp_path_factory.mktemp("default")
    for f in FORMATS:
        synth.generate(str(base / f), train=6, val=10, size=128, seed=7, fmt=f)
    return {f: str(base / f / "data.yaml") for f in FORMATS}


def noisy_detections(ds, seed=0) -> Detections:
    """Ground truth moved, rescored, some relabelled, some doubled, plus false positives."""
    rng = np.random.default_rng(seed)
    d = Detections()
    for a in ds.all_annotations():
        b = voc_to_pixel(a.boxes)
        b = b + rng.normal(0, 3.0, b.shape)
        b = np.concatenate([np.minimum(b[:, :2], b[:, 2:]), np.maximum(b[:, :2], b[:, 2:])], 1)
        labels = a.labels.copy()
        flip = rng.random(len(labels)) < 0.15
        labels[flip] = rng.integers(0, len(ds.names), int(flip.sum()))
        fp = rng.uniform(0, a.width, (3, 2))
        fp = np.concatenate([fp, fp + rng.uniform(5, 40, (3, 2))], 1)
        boxes = np.concatenate([b, b[:2] + 1.5, fp])
        labels = np.concatenate([labels, labels[:2], rng.integers(0, len(ds.names), 3)])
        d.add(a.image_id, boxes, rng.uniform(0.01, 1.0, len(boxes)), labels)
    return d


def maps(res):
    return (res.voc07_map, res.voc_map, res.coco_map, res.coco_map50)


def test_same_detections_same_map_in_every_layout(plain):
    ds = {f: open_dataset(plain[f], "val", cache=False) for f in FORMATS}
    dets = noisy_detections(ds["voc"])
    res = {f: evaluate(ds[f].all_annotations(), dets, ds[f].names) for f in FORMATS}
    assert 0.2 < res["voc"].voc07_map < 0.95          # neither trivial nor perfect
    for f in ("yolo", "coco"):
        np.testing.assert_allclose(maps(res[f]), maps(res["voc"]), rtol=0, atol=1e-12)
        for c, c0 in zip(res[f].classes, res["voc"].classes):
            assert c.npos == c0.npos


def test_difficult_and_crowd_score_alike(default):
    """VOC difficult == COCO crowd exactly; YOLO, which cannot mark them, leaves them out."""
    ds = {f: open_dataset(default[f], "val", cache=False) for f in FORMATS}
    gts = ds["voc"].all_annotations()
    assert sum(int(a.difficult.sum()) for a in gts) > 0
    dets = noisy_detections(ds["voc"], seed=1)
    voc = evaluate(gts, dets, ds["voc"].names)
    coco = evaluate(ds["coco"].all_annotations(), dets, ds["coco"].names)
    np.testing.assert_allclose(maps(coco), maps(voc), rtol=0, atol=1e-12)
    dropped = [a._replace(boxes=a.boxes[~a.difficult], labels=a.labels[~a.difficult],
                          difficult=a.difficult[~a.difficult]) for a in gts]
    yolo = evaluate(ds["yolo"].all_annotations(), dets, ds["yolo"].names)
    np.testing.assert_allclose(maps(yolo), maps(evaluate(dropped, dets, ds["voc"].names)),
                               rtol=0, atol=1e-12)


def test_result_files_of_either_kind_score_the_same_on_every_layout(plain, tmp_path):
    voc = open_dataset(plain["voc"], "val", cache=False)
    dets = noisy_detections(voc, seed=2)
    write_detections(str(tmp_path / "devkit"), "val", voc, dets)
    write_detections(str(tmp_path / "dets.json"), "val", voc, dets)
    rows = json.load(open(tmp_path / "dets.json"))
    assert {r["image_id"] for r in rows} <= set(range(6, 18))       # "000006" -> 6
    assert {r["category_id"] for r in rows} <= set(range(1, 7))
    want = maps(evaluate(voc.all_annotations(), dets, voc.names))
    for f in FORMATS:
        ds = open_dataset(plain[f], "val", cache=False)
        for src in ("devkit", "dets.json"):
            got = read_detections(str(tmp_path / src), "val", ds)
            assert len(got) == len(dets)
            # files round boxes to 1/100 (devkit) or 1/1000 (JSON) of a pixel
            np.testing.assert_allclose(maps(evaluate(ds.all_annotations(), got, ds.names)),
                                       want, atol=2e-3)


def test_coco_results_round_trip_with_a_coco_dataset(plain, tmp_path):
    ds = open_dataset(plain["coco"], "val", cache=False)
    dets = noisy_detections(ds, seed=3)
    p = str(tmp_path / "r.json")
    assert write_coco_results(p, dets, ds.coco_image_ids(), ds.coco_category_ids()) == len(dets)
    back = read_coco_results(p, ds.coco_image_ids(), ds.coco_category_ids())
    assert back.image_ids == dets.image_ids
    np.testing.assert_array_equal(back.labels, dets.labels)
    np.testing.assert_allclose(back.boxes, dets.boxes, atol=1e-3)
    np.testing.assert_allclose(back.scores, dets.scores, atol=1e-6)
    # string image ids work too
    json.dump([{"image_id": "000006", "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5}],
              open(p, "w"))
    one = read_coco_results(p, open_dataset(plain["voc"], "val", cache=False).coco_image_ids(),
                            list(range(1, 7)))
    assert one.image_ids == ["000006"] and one.labels.tolist() == [1]
    np.testing.assert_allclose(one.boxes, [[2, 3, 4, 6]])           # pixels -> VOC


@pytest.mark.parametrize("content,fragment", [
    ("{}", "expected a list of detections"),
    ("[1, 2]", "[0]: expected an object"),
    ('[{"image_id": 6, "category_id": 1, "bbox": [1, 1, 2, 2]}]', "[0].score: missing"),
    ('[{"image_id": 99, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 1}]',
     "[0].image_id: 99 is not an image of this split"),
    ('[{"image_id": 6, "category_id": 0, "bbox": [1, 1, 2, 2], "score": 1}]',
     "[0].category_id: 0 is not a category"),
    ('[{"image_id": 6, "category_id": 1, "bbox": [1, 1, 2], "score": 1}]',
     "[0].bbox: expected [x, y, width, height]"),
    ('[{"image_id": 6, "category_id": 1, "bbox": [1, 1, -2, 2], "score": 1}]',
     "[0].bbox: negative width"),
    ('[{"image_id": 6, "category_id": 1, "bbox": [1, 1, 2, 2], "score": NaN}]',
     "[0].score: expected a finite number"),
    ('[{"image_id": 6,', "not valid JSON (line 1"),
])
def test_bad_coco_results_name_file_and_entry(plain, tmp_path, content, fragment):
    p = tmp_path / "r.json"
    p.write_text(content)
    ds = open_dataset(plain["voc"], "val", cache=False)
    with pytest.raises(UserError) as e:
        read_detections(str(p), "val", ds)
    assert str(e.value).startswith(str(p)) and fragment in str(e.value), str(e.value)
    assert "\n" not in str(e.value)


def test_anchors_read_every_layout(plain):
    sizes = {f: dataset_box_sizes(open_dataset(plain[f], "train", cache=False), 256)
             for f in FORMATS}
    for f in ("yolo", "coco"):
        np.testing.assert_allclose(sizes[f], sizes["voc"], atol=1e-4)
    a = {f: kmeans_anchors(sizes[f], 3, seed=0)[0] for f in FORMATS}
    np.testing.assert_allclose(a["yolo"], a["voc"], atol=1e-4)
    np.testing.assert_allclose(a["coco"], a["voc"], atol=1e-4)


def test_fitted_anchors_leave_difficult_objects_out(default):
    """``--anchors auto`` fits the boxes training learns from: a VOC or COCO copy, which marks
    its difficult objects, fits the anchors of the YOLO copy, which leaves them out."""
    from detector.models.spec import with_classes
    from detector.models.spec_yaml import load_spec
    from detector.train.initial import fit_anchors
    spec = with_classes(load_spec("yolov2-tiny-voc-fastdsc").replace(size=128), 6,
                        list(synth.CLASSES))
    sets = {f: open_dataset(default[f], "train", cache=False) for f in FORMATS}
    assert sum(int(a.difficult.sum()) for a in sets["voc"].all_annotations()) > 0
    assert len(dataset_box_sizes(sets["voc"], 128, include_difficult=True)) > \
        len(dataset_box_sizes(sets["voc"], 128))
    fitted = {f: np.array(fit_anchors(spec, sets[f], seed=0).region.anchors) for f in FORMATS}
    np.testing.assert_allclose(fitted["voc"], fitted["yolo"], atol=1e-3)
    np.testing.assert_array_equal(fitted["coco"], fitted["voc"])


# ---- the commands --------------------------------------------------------------------------

def test_cli_synth_eval_dets_and_anchors_per_layout(tmp_path):
    """``synth --format F``, then ``eval --dets`` (devkit folder and COCO JSON written for the
    VOC copy) and ``anchors`` on each layout, as real commands: the same numbers."""
    for f in FORMATS:
        p = run_cli("synth", tmp_path / f, "--train", 4, "--val", 6, "--size", 96, "--seed", 2,
                    "--format", f)
        assert p.returncode == 0, p.stderr
        assert f"({f} layout)" in p.stdout and (tmp_path / f / "data.yaml").is_file()
    voc = open_dataset(str(tmp_path / "voc" / "data.yaml"), "val", cache=False)
    dets = noisy_detections(voc, seed=4)
    write_detections(str(tmp_path / "devkit"), "val", voc, dets)
    write_detections(str(tmp_path / "dets.json"), "val", voc, dets)
    out = {}
    for f in FORMATS:
        y = tmp_path / f / "data.yaml"
        for src in ("devkit", "dets.json"):
            j = tmp_path / f"{f}-{src}.out.json"
            p = run_cli("eval", "--dets", tmp_path / src, "--data", y, "--json", j)
            assert p.returncode == 0, p.stderr
            assert "VOC07" in p.stdout and "COCO mAP" in p.stdout
            out[f, src] = json.load(open(j))
        p = run_cli("anchors", "--data", y, "--num", 3, "--img-size", 128)
        assert p.returncode == 0 and p.stdout.splitlines()[-1].startswith("anchors: [["), p.stderr
    ref = out["voc", "devkit"]
    for (f, src), r in out.items():
        if f == "yolo":       # its labels leave the difficult objects out: compare structure
            assert r["images"] == ref["images"] and set(r["per_class"]) == set(ref["per_class"])
            continue
        for k in ("voc07_map", "voc_map", "coco_map", "coco_map50"):
            assert r[k] == pytest.approx(ref[k], abs=2e-3), (f, src, k)


@pytest.mark.skipif(not os.path.isfile(DEMO), reason="demo weights not in this checkout")
def test_cli_eval_weights_per_layout(tmp_path):
    """A real network evaluated on the same images in each layout: VOC and COCO identical,
    YOLO (without the difficult objects) close; ``--save-dets x.json`` feeds ``--dets``."""
    res = {}
    for f in FORMATS:
        assert run_cli("synth", tmp_path / f, "--train", 0, "--val", 12, "--size", 128,
                       "--seed", 9, "--format", f).returncode == 0
        j = tmp_path / f"{f}.json"
        p = run_cli("eval", "--weights", DEMO, "--data", tmp_path / f / "data.yaml",
                    "--img-size", 128, "--backend", "ort", "--json", j,
                    "--save-dets", tmp_path / f"{f}-dets.json")
        assert p.returncode == 0, p.stderr
        res[f] = json.load(open(j))
    for k in ("voc07_map", "voc_map", "coco_map", "coco_map50"):
        assert res["coco"][k] == res["voc"][k]
        assert res["yolo"][k] == pytest.approx(res["voc"][k], abs=0.05)
    j = tmp_path / "again.json"
    p = run_cli("eval", "--dets", tmp_path / "coco-dets.json", "--data",
                tmp_path / "voc" / "data.yaml", "--json", j)
    assert p.returncode == 0, p.stderr
    assert json.load(open(j))["voc07_map"] == pytest.approx(res["voc"]["voc07_map"], abs=2e-3)


def test_cli_bad_datasets_end_with_one_line(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "ann.json").write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], '
                                       '"annotations": [{"image_id": 1, "category_id": 1, '
                                       '"bbox": [0, 0, 1]}], "categories": [{"id": 1, '
                                       '"name": "a"}]}')
    coco = tmp_path / "c.yaml"
    coco.write_text("val: {images: im, annotations: ann.json}\ntrain: {images: im, "
                    "annotations: ann.json}\n")
    assert_user_error(run_cli("anchors", "--data", coco), "ann.json", "annotations[0].bbox")
    assert_user_error(run_cli("eval", "--dets", tmp_path / "nope.json", "--data", coco),
                      "ann.json", "annotations[0].bbox")
    yolo = tmp_path / "y.yaml"
    yolo.write_text("path: ds\ntrain: images/train\nval: images/val\nnames: {0: a}\n")
    assert_user_error(run_cli("anchors", "--data", yolo), "y.yaml", "images/train",
                      "no such folder or list file")
    bad = tmp_path / "b.yaml"
    bad.write_text("path: .\ntrain: images/t\nnames: {0: a, 5: b}\n")
    assert_user_error(run_cli("eval", "--dets", tmp_path, "--data", bad), "b.yaml", "names",
                      "map from class index")


@pytest.mark.slow
@pytest.mark.torch
def test_training_reads_every_layout_alike(tmp_path):
    """One epoch on the same set in each layout: the COCO copy trains to the same weights
    bit for bit as the VOCdevkit one (the same annotations); the YOLO copy (the same boxes to
    float precision: optimizer steps amplify that) trains too."""
    from safetensors.numpy import load_file
    w = {}
    for f in FORMATS:
        assert run_cli("synth", tmp_path / f, "--train", 24, "--val", 8, "--size", 96,
                       "--seed", 3, "--format", f).returncode == 0
        out = tmp_path / f"run-{f}"
        p = run_cli("train", "--data", tmp_path / f / "data.yaml", "--out", out, "--epochs", 1,
                    "--model", "yolov2-tiny-voc-fastdsc", "--img-size", 64, "--batch", 8,
                    "--workers", 1, "--seed", 11, "--lr", 0.002, "--burn-in", 0.05)
        assert p.returncode == 0, p.stderr[-3000:]
        w[f] = load_file(str(out / "last.safetensors"))
    assert w["coco"].keys() == w["voc"].keys() == w["yolo"].keys()
    for k in w["voc"]:
        np.testing.assert_array_equal(w["coco"][k], w["voc"][k], err_msg=k)
        assert w["yolo"][k].shape == w["voc"][k].shape and np.isfinite(w["yolo"][k]).all()
