"""Synthetic VOC dataset: layout, determinism (same bytes), content (the clip: test_synth_clip.py)."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from detector.data import synth
from detector.data.voc import VOCDataset
from conftest import assert_user_error, run_cli
from detector.errors import UserError


def tree_digest(root):
    h = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                h[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return h


def test_layout_and_yaml(tmp_path):
    out = str(tmp_path / "s")
    st = synth.generate(out, train=5, val=3, size=80, seed=0)
    assert st["images"] == 8 and st["objects"] >= 8
    base = os.path.join(out, "VOCsynth")
    assert sorted(os.listdir(os.path.join(base, "JPEGImages"))) == \
        [f"{i:06d}.jpg" for i in range(8)]
    main = os.path.join(base, "ImageSets", "Main")
    assert open(os.path.join(main, "train.txt")).read().split() == [f"{i:06d}" for i in range(5)]
    assert open(os.path.join(main, "val.txt")).read().split() == ["000005", "000006", "000007"]
    for c in synth.CLASSES:
        rows = [ln.split() for ln in open(os.path.join(main, f"{c}_val.txt"))]
        assert [r[0] for r in rows] == ["000005", "000006", "000007"]
        assert all(r[1] in ("1", "0", "-1") for r in rows)
    y = open(os.path.join(out, "data.yaml")).read()
    assert y.startswith(synth.MARKER) and "root: .\n" in y
    assert "names: [circle, square, triangle, star, cross, ring]" in y
    with open(os.path.join(base, "JPEGImages", "000000.jpg"), "rb") as f:
        assert f.read(3) == b"\xff\xd8\xff"


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    synth.generate(a, 6, 2, 96, seed=11)
    synth.generate(b, 6, 2, 96, seed=11, workers=2)      # parallel gives the same bytes
    synth.generate(c, 6, 2, 96, seed=12)
    da, db, dc = tree_digest(a), tree_digest(b), tree_digest(c)
    assert da == db
    jpgs = [k for k in da if k.endswith(".jpg")]
    assert len(jpgs) == 8 and all(da[k] != dc[k] for k in jpgs)


def test_refuses_foreign_directory_but_regenerates_own(tmp_path):
    d = tmp_path / "x"
    d.mkdir()
    (d / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        synth.generate(str(d), 2, 1, 64)
    assert (d / "precious.txt").exists()
    out = str(tmp_path / "y")
    synth.generate(out, 4, 2, 64, seed=1)
    synth.generate(out, 2, 1, 64, seed=1)        # earlier output: replaced, no stale files
    assert len(os.listdir(os.path.join(out, "VOCsynth", "JPEGImages"))) == 3
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(UserError, match="not a directory"):
        synth.generate(str(f), 2, 1, 64)


@pytest.mark.parametrize("kw,frag", [({"train": -1}, "train=-1"), ({"size": 16}, "size=16"),
                                     ({"train": 0, "val": 0}, "nothing to generate"),
                                     ({"size": 5000}, "size=5000: must be at most 4096")])
def test_bad_arguments(tmp_path, kw, frag):
    """The library names its parameters; the command line names the flags."""
    args = dict(train=2, val=1, size=64)
    args.update(kw)
    with pytest.raises(UserError, match=frag) as e:
        synth.generate(str(tmp_path / "z"), **args)
    assert "--" not in str(e.value)


@pytest.mark.parametrize("args,message", [
    (["--size", "16"], "error: --size 16: expected an integer >= 32"),
    (["--size", "5000"], "error: --size 5000: must be at most 4096"),
    (["--train", "0", "--val", "0"], "error: --train and --val are both 0: nothing to generate"),
])
def test_cli_names_the_flags(tmp_path, args, message):
    proc = run_cli("synth", tmp_path / "z", *args)
    assert_user_error(proc)
    assert proc.stderr.strip() == message


def test_content_statistics():
    """Enough variety to be a real benchmark: all classes, several objects per image, some
    difficult, a range of sizes and aspects, boxes tight on visible pixels."""
    objs, per_image = [], []
    for i in range(60):
        img, o = synth.render_image(synth.image_rng(5, "train", i), 128)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        objs += o
        per_image.append(len(o))
    labels = {o.label for o in objs}
    assert labels == set(range(len(synth.CLASSES)))
    assert 2.5 <= np.mean(per_image) <= 4.5 and max(per_image) >= 5
    diff = np.mean([o.difficult for o in objs])
    assert 0.03 <= diff <= 0.25
    sides = np.array([(o.box[2] - o.box[0] + 1, o.box[3] - o.box[1] + 1) for o in objs])
    assert sides.min() <= 8 and sides.max() >= 55
    ar = sides[:, 0] / sides[:, 1]
    assert ar.min() < 0.7 and ar.max() > 1.4
    assert all(1 <= o.box[0] <= o.box[2] <= 128 and 1 <= o.box[1] <= o.box[3] <= 128
               for o in objs)
    assert any(o.truncated for o in objs)


def test_reader_reads_it_and_xml_matches_render(tmp_path):
    out = str(tmp_path / "s")
    synth.generate(out, 3, 2, 72, seed=4)
    ds = VOCDataset(os.path.join(out, "data.yaml"), "val", cache=False)
    _, objs = synth.render_image(synth.image_rng(4, "val", 1), 72)
    a = ds.annotations(1)
    assert a.image_id == "000004"
    assert a.boxes.tolist() == [list(map(float, o.box)) for o in objs]
    assert a.labels.tolist() == [o.label for o in objs]
    assert a.difficult.tolist() == [o.difficult for o in objs]


def test_fast_enough(tmp_path):
    """1000 images at 256 px must take well under a minute on 2 cores: measure CPU time of
    40 in one process (robust to a busy machine) and allow 30 ms each."""
    import time
    t = time.process_time()
    synth.generate(str(tmp_path / "s"), 30, 10, 256, seed=0)
    assert time.process_time() - t < 40 * 0.030
