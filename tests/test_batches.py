"""Multi-scale batch order and deterministic, worker-independent, resumable samples."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from detector.data import synth
from detector.data.augment import AugmentConfig, multiscale_sizes
from detector.data.batches import MultiScaleBatches, TrainSet, collate
from detector.data.voc import VOCDataset


def test_epoch_order_sizes_and_resume():
    s = MultiScaleBatches(103, 4, multiscale_sizes(416), seed=1, every=10)
    assert len(s) == 25
    s.set_epoch(0)
    a = list(s)
    assert len(a) == 25 and all(len(b) == 4 for b in a)
    idx = [k[0] for b in a for k in b]
    assert len(set(idx)) == 100 and idx != sorted(idx)
    sizes = [b[0][1] for b in a]
    assert all(len({k[1] for k in b}) == 1 for b in a)          # one size per batch
    assert all(sizes[i] == sizes[i // 10 * 10] for i in range(25))   # redrawn every 10
    assert len(set(sizes)) > 1 and set(sizes) <= set(range(320, 609, 32))
    s.set_epoch(0, start_batch=7)
    assert list(s) == a[7:]                                      # resume mid-epoch
    s.set_epoch(1)
    b = list(s)
    assert b != a and {k[2] for bb in b for k in bb} == {1}


def test_final_epochs_run_at_the_final_size():
    """Progressive resizing: from ``final_from`` on every batch has ``final_size``; earlier
    epochs keep their multi-scale draw, so a resumed run sees the same sizes."""
    plain = MultiScaleBatches(64, 4, multiscale_sizes(320), seed=2, every=2)
    s = MultiScaleBatches(64, 4, multiscale_sizes(320), seed=2, every=2, final_size=384,
                          final_from=3)
    for epoch in range(5):
        plain.set_epoch(epoch)
        s.set_epoch(epoch)
        sizes = [b[0][1] for b in s]
        if epoch < 3:
            assert list(s) == list(plain) and len(set(sizes)) > 1
        else:
            assert set(sizes) == {384}
            assert [[k[0] for k in b] for b in s] == [[k[0] for k in b] for b in plain]


def test_ranks_partition_the_global_batches():
    full = MultiScaleBatches(40, 4, [256], seed=3)
    full.set_epoch(2)
    glob = list(full)
    parts = []
    for r in range(2):
        s = MultiScaleBatches(40, 4, [256], seed=3, rank=r, world=2)
        s.set_epoch(2)
        parts.append(list(s))
        assert len(s) == 5
    assert parts[0] == glob[0::2] and parts[1] == glob[1::2]
    assert len(list(MultiScaleBatches(10, 4, [64], drop_last=False))) == 3
    with pytest.raises(ValueError):
        MultiScaleBatches(10, 4, [64], rank=2, world=2)


def test_trainset_is_deterministic_per_key_and_collates(tmp_path):
    out = str(tmp_path / "s")
    synth.generate(out, 6, 1, 96, seed=2)
    voc = VOCDataset(os.path.join(out, "data.yaml"), "train", cache=False)
    ts = TrainSet(voc, seed=5)
    a, b = ts[(3, 64, 0)], ts[(3, 64, 0)]
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, ts[(3, 64, 1)].image)     # another epoch
    assert not a.difficult.any()                                # difficult left out
    assert TrainSet(voc, include_difficult=True)[(3, 64, 0)].labels.size >= a.labels.size
    images, targets = collate([ts[(i, 96, 0)] for i in range(4)])
    assert images.shape == (4, 3, 96, 96) and images.dtype == np.float32
    assert targets.shape[1] == 6 and targets.dtype == np.float32
    assert set(np.unique(targets[:, 0])) <= {0, 1, 2, 3}
    assert ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1.0001)).all()


@pytest.mark.torch
def test_jitter_and_hsv_options_reach_the_augmentation(tmp_path):
    """detector train --jitter 0 --no-hsv: every training image is the plain letterbox of the
    JPEG (or its mirror image), i.e. the spec's crop jitter and colour distortion are off;
    with the spec's settings the same keys give other pixels."""
    from detector.models.spec_yaml import load_spec
    from detector.preprocess import letterbox
    from detector.train.loader import augment_config
    from detector.train.options import TrainOptions
    out = str(tmp_path / "s")
    synth.generate(out, 4, 1, 96, seed=3)
    voc = VOCDataset(os.path.join(out, "data.yaml"), "train", cache=False)
    spec = load_spec("yolov2-tiny-voc-fastdsc")
    opts = TrainOptions(data="d", out="o", jitter=0.0, hsv=False)
    plain = TrainSet(voc, augment_config(spec, opts), seed=1)
    default = TrainSet(voc, augment_config(spec, TrainOptions(data="d", out="o")), seed=1)
    for i in range(4):
        ref = letterbox(voc[i].image, 96)[0][0]
        got = plain[(i, 96, 0)].image
        assert min(np.abs(got - ref).max(), np.abs(got - ref[:, :, ::-1]).max()) < 2e-2, i
        assert np.abs(default[(i, 96, 0)].image - ref).max() > 0.1


def test_mosaics_end_at_mosaic_until_and_leave_other_samples_unchanged(tmp_path):
    """With mosaics on, a sample is a mosaic (more boxes, from other images) until
    ``mosaic_until``; from then on, and with mosaics off, the same key gives the sample a
    run without mosaics gets, pixel for pixel."""
    out = str(tmp_path / "s")
    synth.generate(out, 12, 1, 96, seed=4)
    voc = VOCDataset(os.path.join(out, "data.yaml"), "train", cache=False)
    cfg = AugmentConfig(jitter=0.1, hue=0.0, saturation=1.0, exposure=1.0)
    plain = TrainSet(voc, cfg, seed=2)
    mixed = TrainSet(voc, dataclasses.replace(cfg, mosaic=1.0), seed=2, mosaic_until=3)
    assert mixed.mosaics_in(2) and not mixed.mosaics_in(3) and not plain.mosaics_in(0)
    more = 0
    for i in range(12):
        np.testing.assert_array_equal(mixed[(i, 96, 3)].image, plain[(i, 96, 3)].image)
        m, p = mixed[(i, 96, 0)], plain[(i, 96, 0)]
        assert not np.array_equal(m.image, p.image)
        np.testing.assert_array_equal(m.image, mixed[(i, 96, 0)].image)
        more += len(m.labels) > len(p.labels)
    assert more >= 3
