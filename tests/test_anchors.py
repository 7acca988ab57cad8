"""k-means anchors with the 1 - IoU distance."""
from __future__ import annotations

import os

import numpy as np
import pytest

from detector.cli import flag_for
from detector.errors import ParamError, UserError
from detector.train.anchors import (dataset_box_sizes, format_anchors, iou_wh, kmeans_anchors,
                                    main)


def clusters(seed=0, n=300):
    rng = np.random.default_rng(seed)
    centres = np.array([[1.0, 1.0], [3.0, 6.0], [8.0, 4.0]])
    pts = [c * np.exp(rng.normal(0, 0.05, (n, 2))) for c in centres]
    return np.concatenate(pts), centres


def test_iou_wh():
    iou = iou_wh(np.array([[2.0, 2.0], [1.0, 4.0]]), np.array([[2.0, 2.0], [4.0, 1.0]]))
    # [1,4] vs [4,1]: inter 1*1 = 1, union 4 + 4 - 1 = 7; [2,2] vs [4,1]: inter 2, union 6
    np.testing.assert_allclose(iou, [[1.0, 2 / 6], [2 / 6, 1 / 7]])


def test_finds_known_clusters_sorted_by_area():
    wh, centres = clusters()
    a, miou = kmeans_anchors(wh, 3, seed=1)
    np.testing.assert_allclose(a, centres, rtol=0.05)
    assert (np.diff(a[:, 0] * a[:, 1]) > 0).all()
    assert miou > 0.9


def test_deterministic_and_seeded():
    wh = np.random.default_rng(3).uniform(0.5, 10, (500, 2))
    a1, m1 = kmeans_anchors(wh, 5, seed=4)
    a2, m2 = kmeans_anchors(wh, 5, seed=4)
    np.testing.assert_array_equal(a1, a2)
    assert m1 == m2
    # more anchors never fit worse
    assert kmeans_anchors(wh, 9, seed=4)[1] > m1


def test_too_few_boxes():
    with pytest.raises(UserError, match="only 2 distinct box sizes for 5 anchors"):
        kmeans_anchors(np.array([[1.0, 1.0], [1.0, 1.0], [2.0, 3.0]]), 5)
    a, m = kmeans_anchors(np.array([[1.0, 1.0], [2.0, 3.0]]), 2)
    np.testing.assert_allclose(a, [[1, 1], [2, 3]])
    assert m == pytest.approx(1.0)


def test_format():
    assert format_anchors(np.array([[1.081, 1.19], [3.4, 4.405]])) == \
        "[[1.08, 1.19], [3.40, 4.41]]"


def test_on_dataset_grid_units_and_cli_function(tmp_path, capsys):
    from detector.data import synth
    from detector.data.voc import VOCDataset
    out = str(tmp_path / "s")
    synth.generate(out, 10, 2, 128, seed=0)
    y = os.path.join(out, "data.yaml")
    ds = VOCDataset(y, "train", cache=False)
    wh = dataset_box_sizes(ds, 256)
    a = ds.annotations(0)
    # 128 px images at 256: scale 2, in cells of 32 px: w_cells = (x2 - x1 + 1) * 2 / 32
    np.testing.assert_allclose(wh[0], [(a.boxes[0, 2] - a.boxes[0, 0] + 1) / 16,
                                       (a.boxes[0, 3] - a.boxes[0, 1] + 1) / 16], rtol=1e-6)
    assert main(y, num=3, img_size=256) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert lines[0].startswith("# 3 anchors") and "mean IoU" in lines[0]
    assert lines[1].startswith("anchors: [[") and lines[1].count("[") == 4
    import yaml
    parsed = yaml.safe_load(lines[1])["anchors"]
    assert len(parsed) == 3 and all(len(p) == 2 for p in parsed)
    with pytest.raises(UserError, match="img.size"):
        main(y, num=3, img_size=100)
    with pytest.raises(ParamError, match="num") as e:      # the CLI shows it as --num
        main(y, num=0)
    assert e.value.render(flag_for(e.value.param)).startswith("--num 0: ")
