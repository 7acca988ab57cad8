"""Training a YOLO9000-style WordTree model: a fine-tune from darknet files with a tree
(a small hand-made tree over the synthetic shapes, written by our writer) on the synthetic
set, its classes mapped into the tree by name; darknet's tree loss drives it, validation
scores the mapped classes, and the checkpoint keeps the tree."""
import json
import os

import pytest

from conftest import run_cli
from detector.io.darknet_cfg import write_cfg
from detector.io.darknet_weights import write_weights
from detector.models.params import init_params
from detector.models.spec import Conv, MaxPool, ModelSpec, Region
from detector.wordtree import WordTree, parse_tree

pytestmark = [pytest.mark.slow, pytest.mark.torch]

# the synthetic shapes under two made-up parents (the dataset's classes are leaves)
SHAPES = ("shape -1\nother -1\nround 0\nangular 0\ncircle 2\nring 2\nsquare 3\ntriangle 3\n"
          "star 3\ncross 3\n")


def shapes_tree_spec():
    layers = []
    for filters in (16, 32, 32, 64, 64):
        layers += [Conv(filters, 3), MaxPool(2, 2)]
    layers += [Conv(64, 3), Conv(3 * (5 + 10), 1, bn=False, act="linear")]
    region = Region(anchors=[(0.5, 0.5), (1.0, 1.0), (1.6, 1.6)],
                    tree=WordTree(*parse_tree(SHAPES)))
    return ModelSpec("shapes9k", layers, region, 10, size=64, resize="darknet")


def test_a_tree_model_fine_tunes_on_a_mapped_dataset(tmp_path):
    synth = tmp_path / "synth"
    res = run_cli("synth", synth, "--train", 48, "--val", 16, "--size", 96, "--seed", 3)
    assert res.returncode == 0, res.stderr
    spec = shapes_tree_spec()
    write_cfg(spec, str(tmp_path / "s.cfg"))
    write_weights(str(tmp_path / "s.weights"), spec, init_params(spec, 0))
    out = tmp_path / "run"
    res = run_cli("train", "--weights", tmp_path / "s.weights", "--cfg", tmp_path / "s.cfg",
                  "--data", synth / "data.yaml", "--out", out, "--epochs", 16, "--val-every", 16,
                  "--no-multiscale", "--img-size", 64, "--batch", 8, "--seed", 11,
                  "--optimizer", "adamw", "--lr", 0.003, "--burn-in", 0.05, "--workers", 1,
                  timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [r.split(",") for r in (out / "metrics.csv").read_text().splitlines()
            if not r.startswith("#")]
    head, rows = rows[0], rows[1:]
    loss = [float(r[head.index("loss")]) for r in rows]
    cls = [float(r[head.index("cls")]) for r in rows]
    assert loss[-1] < 0.6 * loss[0] and cls[-1] < cls[0], (loss, cls)
    assert rows[-1][head.index("voc07_map")] != ""            # validated on the mapped classes
    # the checkpoint keeps the tree (its classes), with the dataset's names where they map
    from detector.io.checkpoint import load_checkpoint
    best = out / ("best.safetensors" if os.path.exists(out / "best.safetensors")
                  else "last.safetensors")
    ck_spec, _, names, _ = load_checkpoint(str(best))
    assert ck_spec.tree == spec.tree and ck_spec.classes == 10
    assert [names[m] for m in ck_spec.region.map] == \
        ["circle", "square", "triangle", "star", "cross", "ring"]
    res = run_cli("eval", "--weights", best, "--data", synth / "data.yaml", "--split", "train",
                  "--json", tmp_path / "e.json", "--backend", "ort")
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "e.json").read_text())
    assert set(got["per_class"]) == {"circle", "square", "triangle", "star", "cross", "ring"}
