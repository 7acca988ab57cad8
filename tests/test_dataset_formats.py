"""Dataset YAMLs in the VOCdevkit, YOLO and COCO layouts: detection, readers, bad input.

Every format is read from files written by ``synth --format`` and from files written here by
hand (the bad cases)."""
from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

from detector.data import synth
from detector.data.dataset import open_dataset, split_has_labels, split_images
from detector.data.dataset_yaml import load_dataset_yaml
from detector.data.images import header_size, image_size
from detector.data.synth import SynthConfig
from detector.data.yolo import label_path, parse_yolo_labels
from detector.errors import ConfigError, UserError

FORMATS = ("voc", "yolo", "coco")
NAMES = ["cat", "dog", "bird"]
# no difficult objects: every layout holds the same boxes (YOLO cannot mark difficult ones)
PLAIN = SynthConfig(difficult_min_side=0.0, difficult_visible=0.0)


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


def image(path, w=100, h=80):
    import cv2
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    assert cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return str(path)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The same synthetic set in the three layouts (default content, with difficult ones)."""
    base = tmp_path_factory.mktemp("formats")
    out = {}
    for f in FORMATS:
        out[f] = str(base / f)
        synth.generate(out[f], train=8, val=6, size=96, seed=7, fmt=f)
    return out


# ---- the YAML --------------------------------------------------------------------------------

@pytest.mark.parametrize("body,fmt", [
    ("root: .\ntrain: [a/b]\nnames: [x]\n", "voc"),
    ("train: [VOC2007/trainval]\nnames: [x]\n", "voc"),
    ("path: .\ntrain: a\nnames: [x]\n", "yolo"),
    ("train: images/train\nnames: [x]\n", "yolo"),
    ("train: train.txt\nval: [images/v, more.txt]\nnames: [x]\n", "yolo"),
    ("train: x/y\nnames: {0: a, 1: b}\n", "yolo"),
    ("train: x/y\nnc: 2\nnames: [a, b]\n", "yolo"),
    ("train: {images: i, annotations: a.json}\n", "coco"),
    ("path: d\nval: {images: i, annotations: a.json}\nnames: [a]\n", "coco"),
])
def test_format_is_detected_from_the_keys(tmp_path, body, fmt):
    assert load_dataset_yaml(write(tmp_path / "d.yaml", body)).format == fmt


def test_yolo_yaml_forms(tmp_path):
    c = load_dataset_yaml(write(tmp_path / "d.yaml", """\
        path: ds
        train: [images/train, lists/extra.txt]
        val: images/val
        test: images/test
        download: https://example.invalid/ds.zip
        names: {1: dog, 0: traffic light}
        """))
    assert c.root == str(tmp_path / "ds") and c.names == ["traffic light", "dog"]
    assert c.splits == {"train": ["images/train", "lists/extra.txt"], "val": ["images/val"],
                        "test": ["images/test"]}
    c = load_dataset_yaml(write(tmp_path / "e.yaml", "train: images/t\nnc: 3\n"))
    assert c.names == ["class0", "class1", "class2"] and c.root == str(tmp_path)


def test_coco_yaml_names_are_optional(tmp_path):
    c = load_dataset_yaml(write(tmp_path / "d.yaml",
                                "val: {images: im, annotations: a/v.json}\n"))
    assert c.format == "coco" and c.names is None
    assert c.splits == {"val": {"images": "im", "annotations": "a/v.json"}}


@pytest.mark.parametrize("body,key,fragment", [
    ("path: .\ntrain: images/t\n", "names", "missing"),
    ("path: .\ntrain: images/t\nnames: {0: a, 2: b}\n", "names", "map from class index"),
    ("path: .\ntrain: images/t\nnames: [a, a]\n", "names[1]", "duplicate"),
    ("path: .\ntrain: images/t\nnames: [a/b]\n", "names[0]", "without slashes"),
    ("path: .\ntrain: images/t\nnames: [a]\nnc: 2\n", "nc", "names has 1 classes"),
    ("path: .\ntrain: images/t\nnames: [a]\nnc: x\n", "nc", "number of classes"),
    ("path: .\ntrain: [images/t, 3]\nnames: [a]\n", "train[1]", "folder or list file"),
    ("path: .\nnames: [a]\n", None, "no splits"),
    ("path: 4\ntrain: images/t\nnames: [a]\n", "path", "directory path"),
    ("root: .\npath: .\ntrain: [a/b]\nnames: [a]\n", "path", "cannot both"),
    ("train: {images: i}\n", "train.annotations", "missing"),
    ("train: {images: i, annotations: a.json, labels: x}\n", "train.labels", "unknown key"),
    ("train: {images: i, annotations: a.json}\nval: images/v\n", "val", "other splits"),
    ("root: .\ntrain: {images: i, annotations: a.json}\n", "root", "names its folder 'path'"),
])
def test_yaml_errors_name_file_and_key(tmp_path, body, key, fragment):
    y = write(tmp_path / "bad.yaml", body)
    with pytest.raises(ConfigError) as e:
        load_dataset_yaml(y)
    msg = str(e.value)
    assert msg.startswith(y) and fragment in msg and "\n" not in msg, msg
    if key:
        assert f": {key}: " in msg, msg


def test_missing_folders_and_files_name_the_path(tmp_path):
    y = write(tmp_path / "y.yaml", "path: ds\ntrain: images/train\nnames: [a]\n")
    with pytest.raises(UserError, match=r"entry 'images/train': .*ds/images/train: no such "
                                        r"folder or list file"):
        open_dataset(y, "train")
    c = write(tmp_path / "c.yaml", "val: {images: im, annotations: a.json}\n")
    with pytest.raises(UserError, match=r"val\.images: .*im: no such directory"):
        open_dataset(c, "val")
    os.makedirs(tmp_path / "im")
    with pytest.raises(UserError, match=r"val\.annotations: .*a\.json: no such file"):
        open_dataset(c, "val")
    with pytest.raises(ConfigError, match="no such split; splits in this file: val"):
        open_dataset(c, "train")


# ---- synth --format: the same data in every layout -------------------------------------------

def test_synth_layouts(sets):
    y = sets["yolo"]
    assert sorted(os.listdir(os.path.join(y, "images", "val"))) == \
        [f"{i:06d}.jpg" for i in range(8, 14)]
    assert sorted(os.listdir(os.path.join(y, "labels", "train"))) == \
        [f"{i:06d}.txt" for i in range(8)]
    c = json.load(open(os.path.join(sets["coco"], "annotations", "instances_val.json")))
    assert [i["id"] for i in c["images"]] == list(range(8, 14))
    assert [k["id"] for k in c["categories"]] == [1, 2, 3, 4, 5, 6]
    for f in FORMATS:
        text = open(os.path.join(sets[f], "data.yaml")).read()
        assert text.startswith(synth.MARKER)
        assert load_dataset_yaml(os.path.join(sets[f], "data.yaml")).format == f
    # the images are the same bytes in every layout
    a = open(os.path.join(sets["voc"], "VOCsynth", "JPEGImages", "000009.jpg"), "rb").read()
    assert a == open(os.path.join(y, "images", "val", "000009.jpg"), "rb").read()


def test_every_layout_reads_back_the_same_annotations(sets):
    ds = {f: open_dataset(os.path.join(sets[f], "data.yaml"), "val", cache=False)
          for f in FORMATS}
    voc, yolo, coco = ds["voc"], ds["yolo"], ds["coco"]
    assert voc.image_ids == yolo.image_ids == coco.image_ids == [f"{i:06d}" for i in range(8, 14)]
    assert voc.names == yolo.names == coco.names == list(synth.CLASSES)
    assert sum(int(a.difficult.sum()) for a in voc.all_annotations()) > 0
    for i in range(len(voc)):
        a, b, c = voc.annotations(i), yolo.annotations(i), coco.annotations(i)
        assert (a.width, a.height) == (b.width, b.height) == (c.width, c.height) == (96, 96)
        np.testing.assert_array_equal(c.boxes, a.boxes)           # COCO: exact, crowd = difficult
        np.testing.assert_array_equal(c.labels, a.labels)
        np.testing.assert_array_equal(c.difficult, a.difficult)
        keep = ~a.difficult                                        # YOLO: difficult left out
        np.testing.assert_allclose(b.boxes, a.boxes[keep], atol=1e-4)
        np.testing.assert_array_equal(b.labels, a.labels[keep])
        assert not b.difficult.any()
        assert voc[i].image.shape == yolo[i].image.shape == coco[i].image.shape


def test_every_reader_pickles_for_dataloader_workers(sets):
    import pickle
    for f in FORMATS:
        ds = open_dataset(os.path.join(sets[f], "data.yaml"), "val", cache=False)
        again = pickle.loads(pickle.dumps(ds))
        assert again.image_ids == ds.image_ids and again[2].image_id == ds[2].image_id
        assert again.coco_image_ids() == ds.coco_image_ids()


def test_without_difficult_objects_the_layouts_are_identical(tmp_path):
    ds = {}
    for f in FORMATS:
        synth.generate(str(tmp_path / f), 4, 3, 80, seed=2, cfg=PLAIN, fmt=f)
        ds[f] = open_dataset(str(tmp_path / f / "data.yaml"), "train", cache=False)
    for i in range(4):
        a = ds["voc"].annotations(i)
        for f in ("yolo", "coco"):
            b = ds[f].annotations(i)
            np.testing.assert_allclose(b.boxes, a.boxes, atol=1e-4)
            np.testing.assert_array_equal(b.labels, a.labels)


def test_split_images_and_labels_of_every_layout(sets):
    for f in FORMATS:
        y = os.path.join(sets[f], "data.yaml")
        split, paths = split_images(y)
        assert split == "train" and len(paths) == 8 and all(os.path.isfile(p) for p in paths)
        assert [os.path.basename(p) for p in split_images(y, "val")[1]] == \
            [f"{i:06d}.jpg" for i in range(8, 14)]
        assert split_has_labels(y, "val")


def test_regenerating_in_another_layout_leaves_no_stale_files(tmp_path):
    out = str(tmp_path / "s")
    synth.generate(out, 2, 1, 64, fmt="voc")
    synth.generate(out, 2, 1, 64, fmt="yolo")
    assert sorted(os.listdir(out)) == ["data.yaml", "images", "labels"]
    synth.generate(out, 2, 1, 64, fmt="coco")
    assert sorted(os.listdir(out)) == ["annotations", "data.yaml", "images"]
    with pytest.raises(UserError, match="fmt=xml: allowed values: voc, yolo, coco"):
        synth.generate(out, 2, 1, 64, fmt="xml")


# ---- YOLO, by hand -------------------------------------------------------------------------

def yolo_set(root, labels):
    """``root/images/train/<name>.jpg`` (100 x 80) with ``labels[name]`` (None: no file)."""
    for name, text in labels.items():
        image(os.path.join(root, "images", "train", name + ".jpg"))
        if text is not None:
            write(os.path.join(root, "labels", "train", name + ".txt"), text)
    return write(os.path.join(root, "data.yaml"),
                 "path: .\ntrain: images/train\nnames: [cat, dog, bird]\n")


def test_yolo_reader_conventions_and_bad_labels(tmp_path, caplog):
    y = yolo_set(str(tmp_path), {
        "a": "0 0.5 0.5 0.2 0.25\n\n2 0.1 0.1 0.1 0.1\n",     # two objects, blank line
        "b": "",                                              # empty: an image without objects
        "c": None,                                            # no label file: no objects
        "d": "1 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n",        # class 7 out of range
        "e": "0 0.5 0.5 0.2\n",                               # malformed: 4 numbers
        "f": "0 0.9 0.5 0.4 0.2\n1 1.5 0.5 0.2 0.2\n",        # clipped; entirely outside
        "g": "2 0.1 0.2 0.3 0.2 0.2 0.6\n",                   # a polygon
        "h": "1.5 0.5 0.5 0.1 0.1\n",                         # class not whole
    })
    ds = open_dataset(y, "train", cache=False)
    assert ds.image_ids == ["a", "b", "c", "d", "f", "g"]
    a = ds.annotations(0)
    # cx .5 w .2 on 100 px: pixels 40..60 -> VOC 41..60; cy .5 h .25 on 80 px: 30..50
    np.testing.assert_allclose(a.boxes, [[41, 31, 60, 50], [6, 5, 15, 12]], atol=1e-4)
    assert a.labels.tolist() == [0, 2] and (a.width, a.height) == (100, 80)
    assert len(ds.annotations(1).labels) == 0 and len(ds.annotations(2).labels) == 0
    assert ds.annotations(3).labels.tolist() == [1]
    np.testing.assert_allclose(ds.annotations(4).boxes, [[71, 33, 100, 48]], atol=1e-4)
    np.testing.assert_allclose(ds.annotations(5).boxes, [[11, 17, 30, 48]], atol=1e-4)
    assert ds.unlabelled == 1
    assert ds.skipped["annotation"] == 2 and ds.skipped["unknown_class"] == 1
    assert ds.skipped["bad_box"] == 1 and ds.unknown_classes == {"class 7": 1}
    text = caplog.text
    assert os.path.join("labels", "train", "d.txt") + ": line 2: class 7 is out of range" in text
    assert os.path.join("labels", "train", "e.txt") + ": line 1: expected 'class cx cy w h'" \
        in text
    assert "h.txt: line 1: class '1.5' is not a whole number" in text
    assert "f.txt: line 2: object 'dog' has an empty or inverted box" in text
    assert "1 images have no label file" in text


def test_yolo_lists_names_override_and_ids(tmp_path, caplog):
    root = str(tmp_path)
    for name in ("x1", "x2"):
        image(os.path.join(root, "images", "a", name + ".png"))
        write(os.path.join(root, "labels", "a", name + ".txt"), "1 0.5 0.5 0.5 0.5\n")
    image(os.path.join(root, "images", "b", "sub", "x1.jpg"))
    write(os.path.join(root, "labels", "b", "sub", "x1.txt"), "0 0.5 0.5 0.5 0.5\n")
    write(os.path.join(root, "lists", "more.txt"),
          "# a comment\nimages/b/sub/x1.jpg\n\nimages/b/sub/gone.jpg\n")
    write(os.path.join(root, "lists", "dup.txt"), "images/a/x2.png\n")
    y = write(os.path.join(root, "d.yaml"), """\
        path: .
        train: [images/a, lists/more.txt, lists/dup.txt]
        names: {0: cat, 1: dog}
        """)
    ds = open_dataset(y, "train", names=["dog"], cache=False)
    # the list's x1 collides with the folder's x1: it gets its path relative to `path`
    assert ds.image_ids == ["x1", "x2", "images/b/sub/x1"]
    assert ds.skipped["duplicate"] == 1 and ds.skipped["image"] == 1
    assert ds.unknown_classes == {"cat": 1}
    assert [a.labels.tolist() for a in ds.all_annotations()] == [[0], [0], []]
    assert "gone.jpg: missing image file; skipped" in caplog.text


def test_yolo_errors_that_stop(tmp_path):
    root = str(tmp_path)
    image(os.path.join(root, "pics", "a.jpg"))
    y = write(os.path.join(root, "d.yaml"), "path: .\ntrain: [pics]\nnames: [cat]\nnc: 1\n")
    with pytest.raises(UserError, match=r"a\.jpg is not inside an 'images' folder"):
        open_dataset(y, "train")
    image(os.path.join(root, "images", "t", "a.jpg"))
    y = write(os.path.join(root, "e.yaml"), "path: .\ntrain: images/t\nnames: [cat]\n")
    with pytest.raises(UserError, match=r"none of the 1 images has a label file \(e\.g\. .*"
                                        r"labels/t/a\.txt"):
        open_dataset(y, "train")
    assert not split_has_labels(y, "train") and len(split_images(y)[1]) == 1


def test_yolo_label_parser():
    assert parse_yolo_labels(b"3 0.5 0.5 0.2 0.4\n") == [[1, 3, 0.4, 0.3, 0.6, 0.7]]
    assert parse_yolo_labels(b"\xef\xbb\xbf0 1 1 0 0\n") == [[1, 0, 1.0, 1.0, 1.0, 1.0]]
    for bad, frag in [(b"0 a b c d", "line 1: expected numbers"),
                      (b"0 0.5 0.5 nan 0.1", "non-finite"), (b"\xff\xfe", "not UTF-8"),
                      (b"\n\n0 1 2 3 4 5", "line 3: expected 'class cx cy w h'")]:
        with pytest.raises(ValueError, match=frag):
            parse_yolo_labels(bad)
    assert label_path(os.path.join("/d", "images", "x", "images", "a.b.jpg")) == \
        os.path.join("/d", "images", "x", "labels", "a.b.txt")
    assert label_path(os.path.join("/d", "pics", "images.jpg")) is None


def test_yolo_cache_parses_once(tmp_path, monkeypatch):
    import detector.data.yolo as yolo
    y = yolo_set(str(tmp_path / "ds"), {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    cache = str(tmp_path / "cache")
    first = open_dataset(y, "train", cache=cache)
    calls = []
    real = yolo.parse_yolo_labels
    monkeypatch.setattr(yolo, "parse_yolo_labels", lambda d: calls.append(1) or real(d))
    again = open_dataset(y, "train", cache=cache)
    assert calls == [] and again.image_ids == first.image_ids
    p = str(tmp_path / "ds" / "labels" / "train" / "b.txt")
    write(p, "2 0.5 0.5 0.4 0.4\n")
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    third = open_dataset(y, "train", cache=cache)
    assert calls == [1] and third.annotations(1).labels.tolist() == [2]


# ---- COCO, by hand -------------------------------------------------------------------------

def coco_set(root, anns, images=None, categories=None, names=None):
    imgs = images if images is not None else [
        {"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 11, "file_name": "sub/b.jpg", "width": 100, "height": 80},
        {"id": 12, "file_name": "c.jpg", "width": 100, "height": 80}]
    for d in imgs:
        if d.get("file_name") != "missing.jpg":
            image(os.path.join(root, "im", d["file_name"]))
    cats = categories if categories is not None else [
        {"id": 7, "name": "bird"}, {"id": 3, "name": "dog"}, {"id": 5, "name": "cat"}]
    write(os.path.join(root, "ann.json"), json.dumps(
        {"images": imgs, "annotations": anns, "categories": cats}))
    text = "val: {images: im, annotations: ann.json}\n"
    if names:
        text += f"names: [{', '.join(names)}]\n"
    return write(os.path.join(root, "data.yaml"), text)


def ann(i, image_id, cat, box, **kw):
    return dict(id=i, image_id=image_id, category_id=cat, bbox=box, **kw)


def test_coco_reader_classes_crowd_and_clipping(tmp_path, caplog):
    y = coco_set(str(tmp_path), [
        ann(1, 10, 3, [10, 20, 30, 40]),                      # dog
        ann(2, 10, 7, [0, 0, 5, 5], iscrowd=1),               # bird, crowd -> difficult
        ann(3, 11, 5, [90.5, 70, 20, 20]),                    # cat reaching outside: clipped
        ann(4, 11, 5, [150, 10, 5, 5]),                       # entirely outside: skipped
        ann(5, 11, 3, [10, 10, -4, 5]),                       # negative width: skipped
    ])
    ds = open_dataset(y, "val", cache=False)
    assert ds.names == ["dog", "cat", "bird"]                 # category ids 3, 5, 7
    assert ds.image_ids == ["a", "sub/b", "c"]
    a, b, c = ds.all_annotations()
    np.testing.assert_array_equal(a.boxes, [[11, 21, 40, 60], [1, 1, 5, 5]])
    assert a.labels.tolist() == [0, 2] and a.difficult.tolist() == [False, True]
    np.testing.assert_allclose(b.boxes, [[91.5, 71, 100, 80]])
    assert b.labels.tolist() == [1] and len(c.labels) == 0
    assert ds.skipped["bad_box"] == 2
    assert "ann.json: annotations[3]: object 'cat' has an empty or inverted box" in caplog.text
    assert ds.coco_image_ids() == {"a": 10, "sub/b": 11, "c": 12}
    assert ds.coco_category_ids() == [3, 5, 7]


def test_coco_names_from_the_yaml_and_missing_images(tmp_path, caplog):
    images = [{"id": "x", "file_name": "a.jpg", "width": 100, "height": 80},
              {"id": "y", "file_name": "missing.jpg", "width": 100, "height": 80},
              {"id": "z", "file_name": "c.jpg", "width": 64, "height": 64}]
    y = coco_set(str(tmp_path), [ann(1, "x", 3, [1, 1, 9, 9]), ann(2, "x", 7, [1, 1, 9, 9]),
                                 ann(3, "z", 5, [1, 1, 9, 9])], images=images,
                 names=["cat", "dog"])
    ds = open_dataset(y, "val", cache=False)
    assert ds.names == ["cat", "dog"] and ds.image_ids == ["a", "c"]
    assert [x.labels.tolist() for x in ds.all_annotations()] == [[1], [0]]
    assert ds.unknown_classes == {"bird": 1} and ds.skipped["image"] == 1
    assert (ds.annotations(1).width, ds.annotations(1).height) == (100, 80)
    assert "width x height 64x64 differs from the image's 100x80" in caplog.text
    assert ds.coco_category_ids() == [5, 3]


@pytest.mark.parametrize("anns,fragment", [
    ([ann(1, 99, 3, [1, 1, 2, 2])], "annotations[0].image_id: 99 is not the id of an image"),
    ([ann(1, 10, 4, [1, 1, 2, 2])], "annotations[0].category_id: 4 is not the id"),
    ([ann(1, 10, 3, [1, 1, 2])], "annotations[0].bbox: expected [x, y, width, height]"),
    ([ann(1, 10, 3, [1, 1, 2, "w"])], "annotations[0].bbox"),
    ([{"id": 1, "image_id": 10, "bbox": [1, 1, 2, 2]}], "annotations[0].category_id: expected"),
    ([ann(1, 10, 3, [1, 1, 2, 2], iscrowd=2)], "annotations[0].iscrowd: expected 0 or 1"),
    ("nope", "annotations: expected a list"),
])
def test_coco_broken_files_stop_with_file_and_field(tmp_path, anns, fragment):
    y = coco_set(str(tmp_path), anns)
    with pytest.raises(UserError) as e:
        open_dataset(y, "val")
    assert str(tmp_path / "ann.json") in str(e.value) and fragment in str(e.value), str(e.value)


def test_coco_not_json_names_the_line(tmp_path):
    y = coco_set(str(tmp_path), [])
    write(tmp_path / "ann.json", '{"images": [],\n "annotations": [,]}')
    with pytest.raises(UserError, match=r"ann\.json: not valid JSON \(line 2: "):
        open_dataset(y, "val")
    write(tmp_path / "ann.json", json.dumps({"images": [{"id": 1}], "annotations": [],
                                             "categories": []}))
    with pytest.raises(UserError, match=r"images\[0\]\.file_name: expected a file name"):
        open_dataset(y, "val")
    write(tmp_path / "ann.json", json.dumps({"images": [], "annotations": [],
                                             "categories": [{"id": 1, "name": "a/b"}]}))
    with pytest.raises(UserError, match=r"categories\[0\]\.name: expected a class name"):
        open_dataset(y, "val")


def test_coco_image_info_file_without_annotations(tmp_path):
    y = coco_set(str(tmp_path), [])
    write(tmp_path / "ann.json", json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}],
                                             "categories": [{"id": 1, "name": "a"}]}))
    ds = open_dataset(y, "val", cache=False)
    assert ds.image_ids == ["a"] and len(ds.annotations(0).labels) == 0
    assert (ds.annotations(0).width, ds.annotations(0).height) == (100, 80)   # the header's
    assert split_images(y)[1] == [str(tmp_path / "im" / "a.jpg")]


# ---- image sizes ---------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp"])
def test_header_size_matches_decoding(tmp_path, ext):
    p = image(tmp_path / ("x" + ext), w=123, h=45)
    assert image_size(p) == [123, 45] == image_size(p, decode=False)
    assert header_size(p) == ([123, 45] if ext != ".bmp" else None)
    with open(p, "r+b") as f:
        f.truncate(30)
    assert isinstance(image_size(p), str)
