"""Dataset YAML and VOC reader on a real (synthetic) VOC tree: JPEGs, XML, ImageSets."""
from __future__ import annotations

import os
import shutil
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.data import synth
from detector.data.dataset_yaml import load_dataset_yaml
from detector.data.voc import AnnotationError, VOCDataset, parse_voc_xml
from detector.errors import ConfigError, UserError

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<annotation><object><name>&lol9;</name></object></annotation>
"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<annotation><filename>&x;</filename></annotation>
"""


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth") / "ds")
    synth.generate(out, train=12, val=6, size=96, seed=3)
    return out


@pytest.fixture
def ds_copy(synth_dir, tmp_path):
    out = str(tmp_path / "ds")
    shutil.copytree(synth_dir, out)
    return out


def write_yaml(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


# ---- dataset YAML ------------------------------------------------------------------------

def test_synth_yaml_loads_with_relative_root(synth_dir):
    cfg = load_dataset_yaml(os.path.join(synth_dir, "data.yaml"))
    assert cfg.root == synth_dir and cfg.names == list(synth.CLASSES)
    assert cfg.splits == {"train": ["VOCsynth/train"], "val": ["VOCsynth/val"]}
    (src,) = cfg.sources("val")
    assert src.list_file == os.path.join(synth_dir, "VOCsynth", "ImageSets", "Main", "val.txt")
    assert src.images_dir.endswith(os.path.join("VOCsynth", "JPEGImages"))


def test_yaml_absolute_root_and_several_entries(synth_dir, tmp_path):
    y = write_yaml(tmp_path / "d.yaml", f"""\
        root: {synth_dir}
        both: [VOCsynth/train, VOCsynth/val]
        names: [{', '.join(synth.CLASSES)}]
        """)
    ds = VOCDataset(y, "both", cache=False)
    assert len(ds) == 18 and ds.image_ids[0] == "000000" and ds.image_ids[-1] == "000017"


@pytest.mark.parametrize("body,key,fragment", [
    ("train: [a/b]\n", "names", "missing"),
    ("names: cat\ntrain: [a/b]\n", "names", "expected a non-empty list"),
    ("names: [cat, cat]\ntrain: [a/b]\n", "names[1]", "duplicate"),
    ("names: [my cat]\ntrain: [a/b]\n", "names[0]", "without spaces"),
    ("names: [cat]\ntrain: 3\n", "train", "expected a list of DIR/LIST"),
    ("names: [cat]\ntrain: [VOC2007]\n", "train[0]", "expected DIR/LIST"),
    ("names: [cat]\ntrain: [a//b]\n", "train[0]", "expected DIR/LIST"),
    ("names: [cat]\nroot: 5\ntrain: [a/b]\n", "root", "expected a directory path"),
    ("names: [cat]\n", None, "no splits"),
    ("names: [cat]\ntrain: [a/b\n", None, "invalid YAML"),
])
def test_yaml_errors_name_file_and_key(tmp_path, body, key, fragment):
    y = write_yaml(tmp_path / "bad.yaml", body)
    with pytest.raises(ConfigError) as e:
        load_dataset_yaml(y)
    msg = str(e.value)
    assert msg.startswith(y) and fragment in msg and "\n" not in msg
    if key:
        assert f": {key}: " in msg


def test_unknown_split_lists_the_splits(synth_dir):
    with pytest.raises(ConfigError, match="no such split; splits in this file: train, val"):
        VOCDataset(os.path.join(synth_dir, "data.yaml"), "test")


def test_missing_directory_or_list_is_a_user_error(ds_copy):
    y = os.path.join(ds_copy, "data.yaml")
    os.remove(os.path.join(ds_copy, "VOCsynth", "ImageSets", "Main", "val.txt"))
    with pytest.raises(UserError, match=r"val\.txt: no such list file"):
        VOCDataset(y, "val")
    shutil.rmtree(os.path.join(ds_copy, "VOCsynth", "Annotations"))
    with pytest.raises(UserError, match=r"Annotations: no such directory"):
        VOCDataset(y, "train")
    shutil.rmtree(os.path.join(ds_copy, "VOCsynth"))
    with pytest.raises(UserError, match=r"entry 'VOCsynth/train': .*VOCsynth: no such directory"):
        VOCDataset(y, "train")


# ---- reading -----------------------------------------------------------------------------

def test_items_match_the_xml(synth_dir, tmp_path):
    ds = VOCDataset(os.path.join(synth_dir, "data.yaml"), "train", cache=str(tmp_path))
    assert len(ds) == 12 and ds.names == list(synth.CLASSES)
    assert ds.skipped == {k: 0 for k in ds.skipped}
    img, boxes, labels, difficult, iid = ds[0]
    assert img.dtype == np.uint8 and img.shape == (96, 96, 3)
    assert boxes.dtype == np.float32 and labels.dtype == np.int64 and difficult.dtype == bool
    assert iid == "000000"
    raw = parse_voc_xml(open(os.path.join(synth_dir, "VOCsynth", "Annotations", "000000.xml"),
                             "rb").read())
    assert boxes.tolist() == [o[2:] for o in raw["objects"]]
    assert [ds.names[i] for i in labels] == [o[0] for o in raw["objects"]]
    assert difficult.tolist() == [o[1] for o in raw["objects"]]
    for i in range(len(ds)):
        a = ds.annotations(i)
        assert (a.width, a.height) == (96, 96)
        assert (a.boxes[:, :2] >= 1).all() and (a.boxes[:, 2:] <= 96).all()
        assert (a.boxes[:, 2:] >= a.boxes[:, :2]).all()
    assert sum(len(a.labels) for a in ds.all_annotations()) > 12
    assert "12 images" in ds.summary()


def test_names_override_and_unknown_classes(synth_dir, caplog):
    ds = VOCDataset(os.path.join(synth_dir, "data.yaml"), "train", names=["star", "ring"],
                    cache=False)
    n_total = sum(1 for _ in open(os.path.join(synth_dir, "VOCsynth", "ImageSets", "Main",
                                               "train.txt")))
    assert len(ds) == n_total     # images are kept, only foreign objects go
    kept = sum(len(ds.annotations(i).labels) for i in range(len(ds)))
    assert ds.skipped["unknown_class"] > 0 and kept > 0
    assert "classes not in names" in caplog.text and "circle (" in caplog.text


def test_corrupt_items_are_skipped_counted_and_named(ds_copy, caplog):
    base = os.path.join(ds_copy, "VOCsynth")
    ann = os.path.join(base, "Annotations")
    jpg = os.path.join(base, "JPEGImages")
    with open(os.path.join(jpg, "000001.jpg"), "r+b") as f:       # truncated JPEG
        f.truncate(200)
    with open(os.path.join(jpg, "000002.jpg"), "wb") as f:        # not an image at all
        f.write(b"hello")
    with open(os.path.join(ann, "000003.xml"), "wb") as f:        # malformed XML
        f.write(b"<annotation><object><name>star</name>")
    with open(os.path.join(ann, "000004.xml"), "wb") as f:
        f.write(BILLION_LAUGHS)
    with open(os.path.join(ann, "000005.xml"), "wb") as f:
        f.write(XXE)
    os.remove(os.path.join(ann, "000006.xml"))
    os.remove(os.path.join(jpg, "000007.jpg"))
    ds = VOCDataset(os.path.join(ds_copy, "data.yaml"), "train", cache=False)
    assert len(ds) == 12 - 7
    assert ds.skipped["image"] == 3 and ds.skipped["annotation"] == 4
    for name in ("000001.jpg", "000002.jpg", "000003.xml", "000004.xml", "000005.xml",
                 "000006.xml", "000007.jpg"):
        assert name in caplog.text, name
    assert "unsafe XML rejected" in caplog.text and "malformed XML" in caplog.text
    assert "skipped 7 of 12 listed images" in caplog.text
    assert {os.path.basename(p) for p, _ in ds.skipped_files} >= {"000004.xml", "000001.jpg"}
    for i in range(len(ds)):
        assert ds[i].image.shape == (96, 96, 3)


def test_duplicate_ids_and_bad_boxes(ds_copy, tmp_path, caplog):
    y = write_yaml(tmp_path / "d.yaml", f"""\
        root: {ds_copy}
        x: [VOCsynth/train, VOCsynth/train]
        names: [{', '.join(synth.CLASSES)}]
        """)
    p = os.path.join(ds_copy, "VOCsynth", "Annotations", "000000.xml")
    xml = open(p).read()
    xml = xml.replace("<object>", "<object><name>star</name><bndbox><xmin>50</xmin><ymin>5"
                      "</ymin><xmax>40</xmax><ymax>9</ymax></bndbox></object><object>", 1)
    open(p, "w").write(xml)
    ds = VOCDataset(y, "x", cache=False)
    assert len(ds) == 12 and ds.skipped["duplicate"] == 12 and ds.skipped["bad_box"] == 1
    assert "already listed" in caplog.text and "empty or inverted box" in caplog.text


def test_cache_is_used_and_rebuilt_when_stale(ds_copy, tmp_path, monkeypatch):
    import detector.data.voc as voc
    y = os.path.join(ds_copy, "data.yaml")
    cache = str(tmp_path / "cache")
    first = VOCDataset(y, "val", cache=cache)
    assert len(os.listdir(cache)) == 1
    calls = []
    real = voc.parse_voc_xml
    monkeypatch.setattr(voc, "parse_voc_xml", lambda d: calls.append(1) or real(d))
    again = VOCDataset(y, "val", cache=cache)
    assert calls == [] and again.image_ids == first.image_ids
    for i in range(len(first)):
        np.testing.assert_array_equal(again.annotations(i).boxes, first.annotations(i).boxes)
    # edit one annotation (new size/mtime): only that one is parsed again, and it shows
    p = os.path.join(ds_copy, "VOCsynth", "Annotations", first.image_ids[0] + ".xml")
    xml = open(p).read().replace("<difficult>0</difficult>", "<difficult>1</difficult>")
    xml = xml.replace("<annotation>", "<annotation>\n", 1)
    open(p, "w").write(xml)
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    third = VOCDataset(y, "val", cache=cache)
    assert calls == [1]
    assert third.annotations(0).difficult.all()
    # a garbage cache file is ignored and rewritten
    (f,) = os.listdir(cache)
    open(os.path.join(cache, f), "w").write("{not json")
    assert VOCDataset(y, "val", cache=cache).image_ids == first.image_ids


def test_image_decoding_failure_after_indexing_uses_next(ds_copy, caplog):
    ds = VOCDataset(os.path.join(ds_copy, "data.yaml"), "val", cache=False)
    with open(ds.image_path(0), "wb") as f:
        f.write(b"garbage")
    s = ds[0]
    assert s.image_id == ds.image_ids[1] and "cannot decode image" in caplog.text
    assert ds.skipped["image"] == 1


def test_pickles_for_dataloader_workers(synth_dir):
    import pickle
    ds = VOCDataset(os.path.join(synth_dir, "data.yaml"), "val", cache=False)
    ds2 = pickle.loads(pickle.dumps(ds))
    assert ds2.image_ids == ds.image_ids and ds2[1].image_id == ds[1].image_id


# ---- the XML parser -----------------------------------------------------------------------

def test_parser_fields_and_rejections():
    good = (b"<annotation><size><width>50</width><height>40</height></size>"
            b"<object><name> dog </name><difficult>1</difficult><bndbox><xmin>1.5</xmin>"
            b"<ymin>2</ymin><xmax>30</xmax><ymax>39</ymax></bndbox>"
            b"<part><name>head</name><bndbox><xmin>9</xmin><ymin>9</ymin><xmax>9</xmax>"
            b"<ymax>9</ymax></bndbox></part></object>"
            b"<object><name>cat</name><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>4</xmax>"
            b"<ymax>4</ymax></bndbox></object></annotation>")
    r = parse_voc_xml(good)
    assert r == {"size": [50, 40], "objects": [["dog", True, 1.5, 2.0, 30.0, 39.0],
                                               ["cat", False, 3.0, 3.0, 4.0, 4.0]]}
    for bad, frag in [(BILLION_LAUGHS, "unsafe"), (XXE, "unsafe"), (b"", "malformed"),
                      (b"<a/>", "root element"),
                      (b"<annotation><object/></annotation>", "missing <name>"),
                      (b"<annotation><object><name>x</name></object></annotation>",
                       "missing <bndbox>"),
                      (b"<annotation><object><name>x</name><bndbox><xmin>a</xmin></bndbox>"
                       b"</object></annotation>", "not a number"),
                      (b"<annotation><object><name>x</name><bndbox><xmin>inf</xmin></bndbox>"
                       b"</object></annotation>", "not finite"),
                      (b"<annotation>" + b" " * (5 * 1024 * 1024) + b"</annotation>", "MiB")]:
        with pytest.raises(AnnotationError, match=frag):
            parse_voc_xml(bad)


_tags = st.sampled_from(["annotation", "object", "name", "bndbox", "xmin", "ymin", "xmax",
                         "ymax", "difficult", "size", "width", "height", "part", "x"])
_text = st.one_of(st.text(max_size=12), st.integers(-5, 2000).map(str),
                  st.floats(allow_nan=True).map(str), st.sampled_from(["&amp;", "&x;", "]]>"]))


@st.composite
def xml_trees(draw, depth=0):
    tag = draw(_tags)
    if depth > 3 or draw(st.booleans()):
        return f"<{tag}>{draw(_text)}</{tag}>"
    kids = draw(st.lists(xml_trees(depth=depth + 1), max_size=4))
    return f"<{tag}>{''.join(kids)}</{tag}>"


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), xml_trees().map(lambda s: s.encode()),
                 xml_trees().map(lambda s: ("<annotation>" + s + "</annotation>").encode()),
                 st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass"))))
def test_parser_never_crashes(data):
    try:
        r = parse_voc_xml(data)
    except AnnotationError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert set(r) == {"size", "objects"}
    for o in r["objects"]:
        assert isinstance(o[0], str) and o[0] and isinstance(o[1], bool)
        assert all(np.isfinite(o[2:]))


@settings(max_examples=40, deadline=2000)
@given(st.integers(1, 60))
def test_deeply_nested_xml_is_bounded(n):
    data = ("<annotation>" + "<object>" * (n * 50) + "</object>" * (n * 50) +
            "</annotation>").encode()
    try:
        r = parse_voc_xml(data)
    except AnnotationError:
        return
    assert isinstance(r["objects"], list)


def test_shipped_voc_yaml():
    from detector.models.spec import VOC_NAMES
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_dataset_yaml(os.path.join(here, "data", "voc.yaml"))
    assert cfg.names == VOC_NAMES
    assert cfg.splits == {"train": ["VOC2007/trainval", "VOC2012/trainval"],
                          "val": ["VOC2007/test"]}
    assert cfg.root == os.path.join(here, "data", "VOCdevkit")
