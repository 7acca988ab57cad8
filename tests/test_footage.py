"""Footage from anything (folders, videos, live streams, dataset YAMLs without annotations),
its held-out part, calibration from it, and ``compare``'s agreement against hand-made
detections with a known answer."""
from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from conftest import assert_user_error, run_cli
from distill_helpers import LoopingMjpeg, write_images
from detector.data.footage import Footage, Frame, holdout_indices
from detector.detection import Detection
from detector.eval.compare import agreement
from detector.stream.footage import read_footage
from stream_helpers import frame_image, write_video


def det(box, score, c, names=("a", "b")):
    return Detection(tuple(float(v) for v in box), float(score), c, names[c])


# ---- compare: a known answer ------------------------------------------------------------

def test_agreement_of_hand_made_detections():
    """A's boxes >= 0.25 are the ground truth. Class a: two boxes of A; B finds one exactly,
    the other at IoU 100/120, plus a false positive between them in score order and a
    low-score duplicate: AP = 0.5 * 1 + 0.5 * 2/3. Class b: B finds A's box (IoU 400/480)
    but ranks a box on a frame where A sees nothing above it: AP = 0.5. A's low-score box is
    not ground truth. At B's operating point (>= 0.25): 3 of A's 3 boxes matched, 3 of B's 5
    boxes."""
    a = [[det((0, 0, 10, 10), .9, 0), det((20, 20, 30, 30), .8, 0),
          det((50, 50, 70, 70), .6, 1), det((200, 200, 210, 210), .1, 0)],
         []]
    b = [[det((0, 0, 10, 10), .95, 0), det((100, 100, 110, 110), .7, 0),
          det((20, 20, 30, 32), .5, 0), det((50, 50, 70, 74), .3, 1),
          det((0, 0, 10, 10), .1, 0)],
         [det((5, 5, 25, 25), .9, 1)]]
    res = agreement(a, b, ["a", "b"])
    assert res.per_class["a"]["ap"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert res.per_class["b"]["ap"] == pytest.approx(0.5)
    assert res.agreement == pytest.approx((0.5 + 0.5 * 2 / 3 + 0.5) / 2)
    assert res.mean_iou == pytest.approx((1 + 100 / 120 + 400 / 480) / 3)
    assert (res.reference_boxes, res.candidate_boxes, res.matched) == (3, 5, 3)
    assert res.recall == 1.0 and res.precision == pytest.approx(3 / 5)
    assert res.per_class["a"]["mean_iou"] == pytest.approx((1 + 100 / 120) / 2)
    assert res.frames == 2
    # a model agrees with itself completely; with nothing to agree on, agreement is None
    same = agreement(a, a, ["a", "b"])
    assert same.agreement == 1.0 and same.mean_iou == 1.0 and same.precision == 1.0
    assert agreement([[]], b[:1], ["a", "b"]).agreement is None
    json.dumps(res.to_json())


# ---- footage ------------------------------------------------------------------------------

def test_folder_glob_and_image(tmp_path):
    folder = write_images(tmp_path / "imgs", 6)
    f = read_footage(folder, 4, seed=1)
    assert len(f) == 4 and all(fr.group is None and fr.path for fr in f.frames)
    assert f.image_ids == sorted(f.image_ids)
    assert f.image(0).shape == (72, 96, 3)
    assert len(read_footage(folder, 10)) == 6
    assert len(read_footage(str(tmp_path / "imgs" / "im0*.png"), 10)) == 6
    one = read_footage([folder + "/im03.png", folder], 2)
    assert len(one) == 3 and one.frames[0].id.endswith("im03.png")


def test_video_frames_spread_over_the_video(tmp_path):
    path = write_video(str(tmp_path / "clip.avi"), 30)
    f = read_footage(path, 5)
    assert [fr.id.rsplit("#", 1)[1] for fr in f.frames] == ["0", "7", "14", "22", "29"]
    cap = cv2.VideoCapture(path)
    decoded = [cap.read()[1] for _ in range(30)]
    for fr in f.frames:
        np.testing.assert_array_equal(fr.image, decoded[int(fr.id.rsplit("#", 1)[1])])
    assert {fr.group for fr in f.frames} == {path}
    assert len(read_footage(path, 100)) == 30


@pytest.fixture
def looping_stream():
    frames = [frame_image(10 * i, 96, 72) for i in range(5)]
    stream = LoopingMjpeg(frames)
    yield stream, frames
    stream.close()


def test_live_source_first_distinct_frames(looping_stream):
    """A live source loops 5 pictures: the first 3 distinct frames are 3 of them; asking for
    8 gives the 5 there are (the repeats are not distinct), with a warning."""
    stream, frames = looping_stream
    f = read_footage(stream.url, 3)
    assert len(f) == 3 and all(fr.live and fr.image is not None for fr in f.frames)
    warnings = []
    f = read_footage(stream.url, 8, warn=warnings.append)
    assert len(f) == 5 and warnings and "5 distinct frames, not 8" in warnings[0]
    # each kept frame is one of the looped pictures (JPEG-decoded), each picture once
    best = [int(np.argmin([np.abs(fr.image.astype(int) - p).mean() for p in frames]))
            for fr in f.frames]
    assert sorted(best) == [0, 1, 2, 3, 4]


def test_dataset_yaml_needs_no_annotations(tmp_path):
    """The issue's failure: a VOC tree without Annotations calibrates; with them, the
    frames keep their ground truth."""
    from convert_helpers import write_voc
    data = write_voc(str(tmp_path / "voc"), n_train=6, n_val=2, size=64)
    labelled = read_footage(data, 4)
    assert labelled.labelled and len(labelled) == 4
    assert labelled.annotations(0).image_id == labelled.frames[0].id
    shutil.rmtree(tmp_path / "voc" / "VOCsynth" / "Annotations")
    f = read_footage(data, 10, split="val")
    assert len(f) == 2 and not f.labelled


def test_holdout_keeps_the_last_frames_of_a_video_and_samples_images():
    groups = ["v"] * 10 + [None] * 10
    fit, held = holdout_indices(groups, 0.2, seed=0)
    assert set(fit).isdisjoint(held) and sorted(fit + held) == list(range(20))
    assert [i for i in held if i < 10] == [8, 9]          # the video's end, in time
    assert len([i for i in held if i >= 10]) == 2
    assert holdout_indices(groups, 0.2, seed=0) == (fit, held)
    footage = Footage([Frame(str(i), g) for i, g in enumerate(groups)])
    a, b = footage.split(0.2)
    assert a.image_ids == [str(i) for i in fit] and b.image_ids == [str(i) for i in held]
    assert holdout_indices(["v", "v"], 0.1) == ([0], [1])


def test_footage_errors_are_one_line(tmp_path):
    a = str(tmp_path / "a.safetensors")
    from convert_helpers import mini_spec, random_state
    from detector.io.checkpoint import save_checkpoint
    save_checkpoint(a, mini_spec(), random_state(mini_spec()))
    assert_user_error(run_cli("compare", a, a, "--data", str(tmp_path / "none")),
                      "none", "no such file")
    os.makedirs(tmp_path / "empty")
    assert_user_error(run_cli("compare", a, a, "--data", str(tmp_path / "empty")),
                      "no images")
    assert_user_error(run_cli("compare", a, a, "--data", str(tmp_path / "x.yaml")),
                      "x.yaml")


# ---- calibration from footage ------------------------------------------------------------

@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from distill_helpers import save_teacher
    return save_teacher(str(tmp_path_factory.mktemp("teacher") / "t.safetensors"))


def _dd(teacher, calib, out, n=10):
    from detector.convert import ConvertOptions, convert
    return convert(ConvertOptions(teacher, "dd", terms=2, calib=calib, calib_images=n,
                                  img_size=64, out=out, latency_runs=0, progress=False))


@pytest.mark.torch
def test_calibration_from_a_video_and_a_looping_live_source(tmp_path, teacher, looping_stream):
    video = write_video(str(tmp_path / "clip.avi"), 40, 96, 72)
    res = _dd(teacher, video, str(tmp_path / "v.safetensors"), n=16)
    cal = res.report["calibration"]
    assert (cal["fit_images"], cal["eval_images"]) == (14, 2)
    assert cal["output_err"] is not None and cal["data"] == video
    ag = res.report["agreement"]
    assert ag["frames"] == 2 and "1 video/live source" in ag["footage"]
    stream, _ = looping_stream
    res = _dd(teacher, stream.url, str(tmp_path / "l.safetensors"), n=5)
    cal = res.report["calibration"]
    assert (cal["images"], cal["fit_images"], cal["eval_images"]) == (5, 4, 1)
    assert "agreement" in res.report


@pytest.mark.torch
def test_cli_convert_calibrates_on_a_folder_and_compares(tmp_path, teacher):
    folder = write_images(tmp_path / "imgs", 12)
    out, rep = str(tmp_path / "dd.safetensors"), str(tmp_path / "r.json")
    proc = run_cli("convert", "--weights", teacher, "--method", "dd", "--terms", "2",
                   "--calib", folder, "--calib-images", "8", "--img-size", "64", "--out", out,
                   "--report", rep, "--latency-runs", "0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "agreement with the original on 1 held-out frames" in proc.stdout
    with open(rep) as f:
        report = json.load(f)
    assert report["calibration"]["fit_images"] == 7 and report["map"].get("skipped")
    assert 0.0 <= (report["agreement"]["agreement"] or 0.0) <= 1.0
    js = str(tmp_path / "cmp.json")
    proc = run_cli("compare", teacher, out, "--data", folder, "--img-size", "64", "--json",
                   js, "--backend", "torch")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "agreement (mAP@0.5" in proc.stdout
    with open(js) as f:
        got = json.load(f)
    assert got["frames"] == 12 and got["reference_boxes"] > 0
    proc = run_cli("compare", teacher, teacher, "--data", folder, "--img-size", "64",
                   "--quiet", "--backend", "torch")
    assert proc.returncode == 0 and proc.stdout.startswith("agreement (mAP@0.5 vs A's boxes "
                                                            ">= 0.25) 1.0000, mean IoU 1.0000")
