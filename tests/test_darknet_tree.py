"""YOLO9000's WordTree: reading tree= and map= as darknet does, the hierarchical softmax and
darknet's hierarchy_top_prediction (against darknet's own functions in libdarknet where it
is installed), round trips through cfg, spec YAML, checkpoint and ONNX, the tree loss, and
the command line on a tree model."""
import ctypes
import json
import multiprocessing
import os

import numpy as np
import pytest

from conftest import REPO, assert_user_error, random_state, run_cli
from darknet_binary import DARKNET_DATA, DARKNET_LIB
from detector.errors import ConfigError
from detector.io.darknet_cfg import spec_from_cfg, write_cfg
from detector.io.darknet_weights import read_weights, write_weights
from detector.models.spec import Conv, MaxPool, ModelSpec, Region
from detector.models.spec_yaml import spec_from_dict
from detector.postprocess import (decode_region, hierarchy_top, tree_probabilities,
                                  tree_softmax)
from detector.wordtree import TreeError, WordTree, parse_tree

LIB = os.path.join(DARKNET_LIB, "libdarknet.so")
TREE_9K = os.path.join(DARKNET_DATA, "9k.tree")
needs_libdarknet = pytest.mark.skipif(
    not (os.path.isfile(LIB) and os.path.isfile(TREE_9K)),
    reason="darknet is not installed (apt-get install darknet)")

# a small hand-made tree: two roots; "dog" has two children
SMALL = "animal -1\nthing -1\ndog 0\ncat 0\ncar 1\nboat 1\npoodle 2\nterrier 2\n"
SMALL_NAMES = ["animal", "thing", "dog", "cat", "car", "boat", "poodle", "terrier"]


def small_tree():
    return WordTree(*parse_tree(SMALL))


def test_groups_are_runs_of_siblings():
    t = small_tree()
    assert t.group_offset.tolist() == [0, 2, 4, 6] and t.group_size.tolist() == [2, 2, 2, 2]
    assert t.child.tolist() == [1, 2, 3, -1, -1, -1, -1, -1]
    assert t.leaf.tolist() == [False, False, False, True, True, True, True, True]
    assert t.path(7) == [7, 2, 0]


@pytest.mark.parametrize("text,line", [("a 0\n", 1), ("a -1\nb 5\n", 2), ("a -1\n\nb 0\n", 2),
                                       ("a -1\nb x\n", 2)])
def test_bad_trees_name_the_line(text, line):
    with pytest.raises(TreeError) as e:
        parse_tree(text)
    assert e.value.line == line


# ---- against darknet's own code --------------------------------------------------------------

class _Tree(ctypes.Structure):
    _fields_ = [("leaf", ctypes.POINTER(ctypes.c_int)), ("n", ctypes.c_int),
                ("parent", ctypes.POINTER(ctypes.c_int)), ("child", ctypes.POINTER(ctypes.c_int)),
                ("group", ctypes.POINTER(ctypes.c_int)), ("name", ctypes.POINTER(ctypes.c_char_p)),
                ("groups", ctypes.c_int), ("group_size", ctypes.POINTER(ctypes.c_int)),
                ("group_offset", ctypes.POINTER(ctypes.c_int))]


def _libdarknet():
    """libdarknet, loaded in the calling process. Debian builds it with fast-math, whose
    start-up code sets flush-to-zero for the process's floats: only child processes load it
    (:func:`_in_child`), so the rest of the suite keeps IEEE subnormals."""
    lib = ctypes.CDLL(LIB)
    lib.read_tree.restype = ctypes.POINTER(_Tree)
    lib.read_tree.argtypes = [ctypes.c_char_p]
    lib.hierarchy_top_prediction.restype = ctypes.c_int
    lib.hierarchy_top_prediction.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(_Tree),
                                             ctypes.c_float, ctypes.c_int]
    lib.hierarchy_predictions.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int,
                                          ctypes.POINTER(_Tree), ctypes.c_int, ctypes.c_int]
    lib.softmax.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_float,
                            ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    return lib


def _in_child(check, tmp_path) -> None:
    """Run ``check(folder)`` in a fresh process (its assertion errors come back here)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(check, (str(tmp_path),))


def _trees(folder):
    path = os.path.join(folder, "small.tree")
    with open(path, "w") as f:
        f.write(SMALL)
    return [path, TREE_9K]


def _f32(a):
    a = np.ascontiguousarray(a, np.float32)
    return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


@needs_libdarknet
def test_tree_structure_is_darknets_read_tree(tmp_path):
    _in_child(_check_tree_structure, tmp_path)


def _check_tree_structure(folder):
    darknet = _libdarknet()
    for path in _trees(folder):
        ours = WordTree(*parse_tree(open(path).read()))
        t = darknet.read_tree(path.encode()).contents
        n, g = t.n, t.groups
        assert (n, g) == (ours.size, ours.groups)
        for field in ("parent", "child", "group", "leaf"):
            assert [getattr(t, field)[i] for i in range(n)] == getattr(ours, field).astype(int).tolist()
        assert [t.group_size[i] for i in range(g)] == ours.group_size.tolist()
        assert [t.group_offset[i] for i in range(g)] == ours.group_offset.tolist()


@needs_libdarknet
def test_softmax_products_and_top_prediction_are_darknets(tmp_path):
    _in_child(_check_softmax_and_top_prediction, tmp_path)


def _check_softmax_and_top_prediction(folder):
    darknet = _libdarknet()
    rng = np.random.default_rng(0)
    for path in _trees(folder):
        ours = WordTree(*parse_tree(open(path).read()))
        t = darknet.read_tree(path.encode())
        logits = rng.normal(0, 3, (ours.size, 24)).astype(np.float32)
        cond = tree_softmax(logits, ours, axis=0)
        for g in range(ours.groups):             # darknet's softmax(), one group of one cell
            off, size = ours.group_offset[g], ours.group_size[g]
            x, px = _f32(logits[off:off + size, 5])
            y, py = _f32(np.zeros(size))
            darknet.softmax(px, size, 1.0, 1, py)
            np.testing.assert_allclose(cond[off:off + size, 5], y, rtol=1e-5, atol=1e-7)
        prob = tree_probabilities(cond, ours)
        for thresh in (0.0, 0.3, 0.5, 0.9):
            top = hierarchy_top(prob, ours, thresh)
            for cell in range(prob.shape[1]):
                column = np.ascontiguousarray(cond[:, cell])
                buf, p = _f32(column)
                darknet.hierarchy_predictions(p, ours.size, t, 0, 1)
                np.testing.assert_array_equal(buf, prob[:, cell])
                assert darknet.hierarchy_top_prediction(p, t, thresh, 1) == top[cell]


def test_top_prediction_walks_down_while_the_product_stays_above_the_threshold():
    t = small_tree()
    # cond: animal .9 (thing .1); dog .8 (cat .2); poodle .7 (terrier .3)
    cond = np.array([.9, .1, .8, .2, .5, .5, .7, .3], np.float32)[:, None]
    prob = tree_probabilities(cond, t)           # absolute: dog .72, poodle .504
    np.testing.assert_allclose(prob[[0, 2, 6], 0], [.9, .72, .504], rtol=1e-6)
    # darknet multiplies the absolute probabilities again on the way down:
    # .9 > th, then .9 * .72 = .648, then .648 * .504 = .327
    assert hierarchy_top(prob, t, 0.3)[0] == 6          # poodle
    assert hierarchy_top(prob, t, 0.5)[0] == 2          # dog: stops above poodle
    assert hierarchy_top(prob, t, 0.7)[0] == 0          # animal
    assert hierarchy_top(prob, t, 0.95)[0] == 0         # a root even below the threshold


def test_decode_gives_one_class_per_cell_scored_by_objectness():
    t = small_tree()
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 2, (2 * (5 + 8), 3, 3)).astype(np.float32)
    boxes, scores = decode_region(raw, [(1, 1), (2, 2)], 8, tree=t, hier_thresh=0.4)
    assert scores.shape == (18, 8) and ((scores > 0).sum(1) == 1).all()
    obj = 1 / (1 + np.exp(-raw.reshape(2, 13, 3, 3)[:, 4].reshape(-1)))
    np.testing.assert_allclose(scores.max(1), obj, rtol=1e-5)
    mapped = decode_region(raw, [(1, 1), (2, 2)], 8, tree=t, mapping=[6, 4])[1]
    assert mapped.shape == (18, 2)


# ---- files ----------------------------------------------------------------------------------

def tree_spec(size=64, mapping=None, names=None):
    """A small detector with the hand-made tree's head."""
    layers = [Conv(8, 3), MaxPool(2, 2), Conv(16, 3), MaxPool(2, 2), Conv(16, 3), MaxPool(2, 2),
              Conv(16, 3), MaxPool(2, 2), Conv(16, 3), MaxPool(2, 2),
              Conv(2 * (5 + 8), 1, bn=False, act="linear")]
    region = Region(anchors=[(1.5, 1.5), (4.0, 4.0)], tree=small_tree(), map=mapping)
    return ModelSpec("tree-small", layers, region, 8, size=size, names=names, resize="darknet")


def test_cfg_tree_and_map_round_trip_byte_for_byte(tmp_path):
    spec = tree_spec(mapping=[6, 3, 4])
    written = write_cfg(spec, str(tmp_path / "a.cfg"))
    assert written == [str(tmp_path / "a.cfg"), str(tmp_path / "a.tree"), str(tmp_path / "a.map")]
    assert (tmp_path / "a.tree").read_text() == SMALL
    text = (tmp_path / "a.cfg").read_text()
    assert "tree=a.tree" in text and "map=a.map" in text
    back = spec_from_cfg(str(tmp_path / "a.cfg"))
    assert back.region == spec.region and back.tree == spec.tree and back.region.map == [6, 3, 4]
    os.makedirs(tmp_path / "b")
    write_cfg(back, str(tmp_path / "b" / "a.cfg"))
    for f in ("a.cfg", "a.tree", "a.map"):    # (a cfg's first line names the spec)
        assert (tmp_path / f).read_bytes().split(b"\n")[1:] == \
            (tmp_path / "b" / f).read_bytes().split(b"\n")[1:]


def test_tree_files_are_found_as_darknet_finds_them(tmp_path, monkeypatch):
    write_cfg(tree_spec(), str(tmp_path / "m.cfg"))
    text = (tmp_path / "m.cfg").read_text().replace("tree=m.tree", "tree=data/m.tree")
    (tmp_path / "m.cfg").write_text(text)
    spec_from_cfg(str(tmp_path / "m.cfg"))              # beside the cfg, by file name
    os.makedirs(tmp_path / "run" / "data")
    (tmp_path / "run" / "data" / "m.tree").write_text("x -1\n" * 8)
    monkeypatch.chdir(tmp_path / "run")                 # darknet's rule first: from the cwd
    assert spec_from_cfg(str(tmp_path / "m.cfg")).tree.names == ["x"] * 8
    (tmp_path / "m.cfg").write_text(text.replace("data/m.tree", "gone.tree"))
    with pytest.raises(ConfigError, match=r"\[region\] tree: file gone.tree not found"):
        spec_from_cfg(str(tmp_path / "m.cfg"))


def test_tree_and_resize_survive_spec_yaml_and_checkpoints(tmp_path):
    from detector.io.checkpoint import load_checkpoint, save_checkpoint
    spec = tree_spec(mapping=[2, 4])
    back = spec_from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back.region == spec.region and back.resize == "darknet"
    save_checkpoint(str(tmp_path / "t.safetensors"), spec, random_state(spec), SMALL_NAMES)
    spec2, _, names, _ = load_checkpoint(str(tmp_path / "t.safetensors"))
    assert spec2.tree == spec.tree and spec2.region.map == [2, 4] and names == SMALL_NAMES
    bad = spec.to_dict()
    bad["region"]["tree"]["parents"][0] = 3
    with pytest.raises(ConfigError, match="region.tree.parents"):
        spec_from_dict(bad)


def test_yolo9000_cfg_reads_with_its_tree_and_map():
    cfg = os.path.join(REPO, "detector", "io", "darknet_files", "yolo9000.cfg")
    spec = spec_from_cfg(cfg)
    assert spec.classes == 9418 and spec.tree.groups == 1846 and len(spec.region.map) == 80
    assert spec.num_outputs == 28269 and spec.resize == "darknet"


# ---- running a tree model -------------------------------------------------------------------

def _tree_files(tmp_path, mapping=None):
    spec = tree_spec(mapping=mapping)
    write_cfg(spec, str(tmp_path / "t.cfg"))
    write_weights(str(tmp_path / "t.weights"), spec, random_state(spec, 3))
    (tmp_path / "t.names").write_text("".join(n.upper() + "\n" for n in SMALL_NAMES))
    return str(tmp_path / "t.cfg"), str(tmp_path / "t.weights"), str(tmp_path / "t.names")


def test_detect_a_tree_model_from_the_command_line(tmp_path):
    import cv2
    cfg, weights, names = _tree_files(tmp_path, mapping=[2, 4])
    img = np.random.default_rng(0).integers(0, 256, (80, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    res = run_cli("detect", tmp_path / "x.png", "--weights", weights, "--cfg", cfg, "--names",
                  names, "--conf", "0.2", "--json", tmp_path / "d.jsonl", "--quiet",
                  "--backend", "ort")
    assert res.returncode == 0, res.stderr
    frame = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    got = {d["class_name"] for d in frame["detections"]}
    assert got and got <= {n.upper() for n in SMALL_NAMES}
    res = run_cli("detect", tmp_path / "x.png", "--weights", weights, "--cfg", cfg, "--names",
                  names, "--conf", "0.01", "--tree-map", "--json", tmp_path / "m.jsonl",
                  "--quiet", "--backend", "ort")
    assert res.returncode == 0, res.stderr
    frame = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert {d["class_name"] for d in frame["detections"]} <= {"DOG", "CAR"}
    assert {d["class_id"] for d in frame["detections"]} <= {0, 1}


def test_a_classifier_does_not_detect(tmp_path):
    import cv2
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((40, 40, 3), np.uint8))
    res = run_cli("detect", tmp_path / "x.png", "--weights", tmp_path / "c.weights", "--cfg",
                  _classifier(tmp_path), "--quiet")
    assert_user_error(res, "classifier")


def _classifier(tmp_path):
    from detector.models.spec import AvgPool, Softmax
    spec = ModelSpec("c", [Conv(8, 3), MaxPool(2, 2), Conv(10, 1, bn=False, act="linear"),
                           AvgPool(), Softmax()], None, 10, size=64)
    write_cfg(spec, str(tmp_path / "c.cfg"))
    write_weights(str(tmp_path / "c.weights"), spec, random_state(spec))
    return str(tmp_path / "c.cfg")


def test_onnx_export_of_a_tree_model_documents_its_decode(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx
    import onnxruntime as ort
    import torch
    from detector.models.yolov2 import YOLOv2, load_state
    cfg, weights, names = _tree_files(tmp_path)
    res = run_cli("export", "--weights", weights, "--cfg", cfg, "--names", names, "--format",
                  "onnx", "--out", tmp_path / "t.onnx")
    assert res.returncode == 0, res.stderr
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "t.onnx")).metadata_props}
    assert json.loads(meta["tree"])["parents"] == small_tree().parents()
    assert "WordTree" in meta["postprocess"] and meta["resize"] == "darknet"
    spec = spec_from_cfg(cfg)
    _, state = read_weights(weights, spec)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    got = ort.InferenceSession(str(tmp_path / "t.onnx")).run(None, {"images": x})[0]
    with torch.no_grad():
        want = load_state(YOLOv2(spec), state).eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    tree = WordTree(*(json.loads(meta["tree"])[k] for k in ("names", "parents")))
    a = decode_region(got[0], spec.region.anchors, 8, tree=tree)
    b = decode_region(want[0], spec.region.anchors, 8, tree=spec.tree)
    assert np.array_equal(a.scores > 0, b.scores > 0)


def test_tree_loss_gradients_are_darknets_deltas():
    torch = pytest.importorskip("torch")
    from detector.train.region_loss import TreeLoss
    t = small_tree()
    logits = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([6, 3, 4])
    TreeLoss(t)(logits, target).backward()
    cond = tree_softmax(logits.detach().numpy().T, t, axis=0).T
    want = np.zeros((3, 8))
    for k, c in enumerate(target.tolist()):    # darknet's delta_region_class with a tree
        for node in t.path(c):
            g = t.group[node]
            off, size = t.group_offset[g], t.group_size[g]
            want[k, off:off + size] = cond[k, off:off + size]
            want[k, node] = cond[k, node] - 1
    np.testing.assert_allclose(logits.grad.numpy(), want, rtol=1e-5, atol=1e-6)


def test_a_tree_model_converts_and_keeps_its_tree(tmp_path):
    """ND with T = K*K terms is exact: the converted FastDSC model (tree, map and darknet's
    resize kept) gives the original's raw output."""
    pytest.importorskip("torch")
    from detector.api import load
    from detector.io.checkpoint import load_checkpoint
    cfg, weights, names = _tree_files(tmp_path, mapping=[2, 4])
    res = run_cli("convert", "--weights", weights, "--cfg", cfg, "--method", "nd", "--terms", 9,
                  "--out", tmp_path / "c.safetensors")
    assert res.returncode == 0, res.stderr[-2000:]
    spec, _, _, _ = load_checkpoint(str(tmp_path / "c.safetensors"))
    assert spec.tree == small_tree() and spec.region.map == [2, 4] and spec.resize == "darknet"
    assert "fastdsc" in [layer.type for layer in spec.layers]
    a = load(weights, cfg=cfg, backend="ort", conf=0.05)
    b = load(str(tmp_path / "c.safetensors"), backend="ort", conf=0.05)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(np.array(b.forward(x)), np.array(a.forward(x)), atol=2e-4)
