"""Augmentation keeps boxes on the objects; letterbox; flip symmetry; determinism."""
from __future__ import annotations

import numpy as np
import pytest

from detector.data.augment import (MOSAIC_MIN_VISIBLE, NO_AUGMENT, AugmentConfig, augment,
                                   distort_hsv, mosaic, multiscale_sizes, random_size,
                                   targets_from_voc)
from detector.data.split import Sample
from detector.preprocess import letterbox, letterbox_geometry
from detector.data.boxes import cxcywh_to_xyxy

GEOM = AugmentConfig(jitter=0.3, hue=0.0, saturation=1.0, exposure=1.0, flip=True)


def scene(w=160, h=120):
    """Gray image with three pure-colour filled rectangles; their VOC boxes."""
    img = np.full((h, w, 3), 128, np.uint8)
    boxes = [(11, 21, 50, 60), (81, 6, 150, 40), (121, 81, 160, 120)]   # last at the corner
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0)]                     # BGR
    for (x1, y1, x2, y2), c in zip(boxes, colours):
        img[y1 - 1:y2, x1 - 1:x2] = c                                     # VOC -> slices
    return img, np.array(boxes, np.float32), np.arange(3), colours


@pytest.mark.parametrize("seed", range(25))
def test_boxes_enclose_the_drawn_pixels_tightly(seed):
    img, boxes, labels, colours = scene()
    out = augment(img, boxes, labels, (96, 64), np.random.default_rng(seed), GEOM)
    assert out.image.shape == (3, 64, 96) and out.image.dtype == np.float32
    assert 0.0 <= out.image.min() and out.image.max() <= 1.0
    assert out.boxes.dtype == np.float32 and out.labels.dtype == np.int64
    xyxy = cxcywh_to_xyxy(out.boxes) * [96, 64, 96, 64]
    for c, bgr in enumerate(colours):
        rgb = np.array(bgr[::-1], np.float32) / 255
        dist = np.abs(out.image.transpose(1, 2, 0) - rgb).max(2)
        ys, xs = np.nonzero(dist < 0.05)                 # pixels of mostly this colour
        if c not in out.labels:
            assert len(xs) <= 2, (c, len(xs))            # dropped: really out of view
            continue
        x1, y1, x2, y2 = xyxy[list(out.labels).index(c)]
        assert x1 >= -1e-4 and y1 >= -1e-4 and x2 <= 96 + 1e-4 and y2 <= 64 + 1e-4
        if len(xs) == 0:
            assert min(x2 - x1, y2 - y1) < 2.5           # only a sliver is left
            continue
        # every solid pixel (centre i + .5) lies in the box, and the box is tight: within the
        # interpolation band of the edge (the warp scales by up to 1.5 here)
        assert xs.min() + 0.5 >= x1 - 0.01 and xs.max() + 0.5 <= x2 + 0.01
        assert ys.min() + 0.5 >= y1 - 0.01 and ys.max() + 0.5 <= y2 + 0.01
        assert xs.min() + 0.5 - x1 < 2.1 and x2 - (xs.max() + 0.5) < 2.1
        assert ys.min() + 0.5 - y1 < 2.1 and y2 - (ys.max() + 0.5) < 2.1


def test_outside_the_image_is_gray():
    img, boxes, labels, _ = scene()
    for seed in range(10):
        out = augment(img, boxes, labels, 64, np.random.default_rng(seed), GEOM)
        # the scene background is 128/255; fill is exactly .5; corners are one of the two
        # and never a smeared object colour
        for y, x in ((0, 0), (0, 63), (63, 0), (63, 63)):
            px = out.image[:, y, x]
            assert np.allclose(px, 0.5) or np.allclose(px, 128 / 255, atol=0.02) or \
                px.max() - px.min() > 0.3   # (an object that really is there)


def test_flip_mirrors_image_and_boxes():
    img, boxes, labels, _ = scene()
    cfg = AugmentConfig(jitter=0.2, hue=0.05, saturation=1.5, exposure=1.5, flip=True)
    noflip = AugmentConfig(jitter=0.2, hue=0.05, saturation=1.5, exposure=1.5, flip=False)
    flipped = 0
    for seed in range(12):
        a = augment(img, boxes, labels, (96, 64), np.random.default_rng(seed), cfg)
        b = augment(img, boxes, labels, (96, 64), np.random.default_rng(seed), noflip)
        if np.allclose(a.image, b.image):
            continue
        flipped += 1
        np.testing.assert_allclose(a.image, b.image[:, :, ::-1], atol=2e-3)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_allclose(a.boxes[:, 0], 1 - b.boxes[:, 0], atol=1e-5)
        np.testing.assert_allclose(a.boxes[:, 1:], b.boxes[:, 1:], atol=1e-5)
    assert 2 <= flipped <= 10


def test_deterministic_for_a_generator():
    img, boxes, labels, _ = scene()
    cfg = AugmentConfig()
    a = augment(img, boxes, labels, 64, np.random.default_rng(7), cfg)
    b = augment(img, boxes, labels, 64, np.random.default_rng(7), cfg)
    c = augment(img, boxes, labels, 64, np.random.default_rng(8), cfg)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, c.image)


def test_difficult_follows_its_box_and_degenerate_boxes_are_dropped():
    img, boxes, labels, _ = scene()
    diff = np.array([False, True, False])
    kept = set()
    for seed in range(30):
        out = augment(img, boxes, labels, 64, np.random.default_rng(seed),
                      AugmentConfig(jitter=0.45), difficult=diff)
        assert out.difficult.tolist() == [bool(diff[c]) for c in out.labels]
        w, h = out.boxes[:, 2] * 64, out.boxes[:, 3] * 64
        assert (w >= 1).all() and (h >= 1).all()
        kept.add(len(out.labels))
    assert min(kept) < 3          # strong jitter does crop objects away
    with pytest.raises(ValueError):
        augment(img, boxes, labels[:2], 64, np.random.default_rng(0))


def test_no_augment_matches_inference_letterbox():
    img, boxes, labels, _ = scene(160, 120)
    out = augment(img, boxes, labels, 128, np.random.default_rng(0), NO_AUGMENT)
    ref, lb = letterbox(img, 128)
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (128, 96, 0, 16)
    np.testing.assert_allclose(out.image, ref[0], atol=1e-5)
    np.testing.assert_allclose(out.boxes, targets_from_voc(boxes, 160, 120, 128), atol=1e-6)


def test_targets_follow_the_letterbox_on_non_square_inputs():
    # darknet's integer rule: 375x500 into 416x320 -> 240x320 at left = 88
    lb = letterbox_geometry(375, 500, 416, 320)
    assert (lb.new_w, lb.new_h, lb.left, lb.top) == (240, 320, 88, 0)
    t = targets_from_voc(np.array([[1, 1, 375, 500]]), 375, 500, (416, 320))
    np.testing.assert_allclose(t[0], [208 / 416, 0.5, 240 / 416, 1.0], atol=1e-6)


def test_hsv_distortion():
    rgb = np.full((2, 2, 3), 0.25, np.float32)
    np.testing.assert_allclose(distort_hsv(rgb, 0.0, 1.0, 2.0), 0.5, atol=1e-6)
    np.testing.assert_allclose(distort_hsv(rgb, 0.0, 1.0, 8.0), 1.0)       # clipped
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 1.0
    # hue + 1/3 of the circle: red -> green
    np.testing.assert_allclose(distort_hsv(red, 1 / 3, 1.0, 1.0)[0, 0], [0, 1, 0], atol=1e-5)
    # desaturate fully -> gray at the same value
    np.testing.assert_allclose(distort_hsv(red, 0, 0.0, 1.0)[0, 0], [1, 1, 1], atol=1e-6)
    assert distort_hsv(rgb, 0.0, 1.0, 1.0) is rgb


def test_large_downscale_uses_area_filter_and_keeps_boxes():
    img = np.full((960, 1280, 3), 128, np.uint8)
    img[99:300, 199:500] = (0, 0, 255)
    boxes = np.array([[200, 100, 500, 300]], np.float32)
    out = augment(img, boxes, [0], 96, np.random.default_rng(0), NO_AUGMENT)
    x1, y1, x2, y2 = cxcywh_to_xyxy(out.boxes)[0] * 96
    s = 96 / 1280                                      # letterbox scale; dy = (96 - 72) / 2
    np.testing.assert_allclose([x1, y1, x2, y2], [199 * s, 99 * s + 12, 500 * s, 300 * s + 12],
                               atol=1e-4)
    red = out.image[0] > 0.9
    ys, xs = np.nonzero(red)
    assert xs.min() + 0.5 >= x1 and xs.max() + 0.5 <= x2 and ys.min() + 0.5 >= y1


def test_multiscale_sizes():
    assert multiscale_sizes(416) == list(range(320, 609, 32))
    assert multiscale_sizes(256) == list(range(192, 385, 32))
    assert multiscale_sizes(32) == [32]
    rng = np.random.default_rng(0)
    sizes = multiscale_sizes(416)
    draws = {random_size(rng, sizes) for _ in range(200)}
    assert draws == set(sizes)


def test_from_spec():
    from detector.models.spec_yaml import load_spec
    cfg = AugmentConfig.from_spec(load_spec("yolov2-tiny-voc-fastdsc"), flip=False)
    assert (cfg.jitter, cfg.hue, cfg.saturation, cfg.exposure, cfg.flip) == \
        (0.2, 0.1, 1.5, 1.5, False)


def mosaic_scenes():
    """Four gray images of different sizes, each with two pure-colour filled rectangles of
    their own colours; label k is drawn in colour k (eight labels, eight colours)."""
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255),
               (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    samples = []
    for k, (w, h) in enumerate(((160, 120), (120, 160), (200, 100), (96, 96))):
        img = np.full((h, w, 3), 128, np.uint8)
        boxes = [(6, 8, w // 2, h // 2), (w // 2 + 5, h // 2 + 4, w - 3, h - 2)]
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            img[y1 - 1:y2, x1 - 1:x2] = colours[2 * k + j]
        samples.append(Sample(img, np.array(boxes, np.float32), np.array([2 * k, 2 * k + 1]),
                              np.array([False, k == 1]), f"scene{k}"))
    return samples, colours


@pytest.mark.parametrize("seed", range(20))
def test_mosaic_boxes_lie_on_their_objects(seed):
    """Each box of a mosaic covers pixels of its own colour, tightly; a colour with no box
    shows at most a sliver (its box was cut to under MOSAIC_MIN_VISIBLE of its area)."""
    samples, colours = mosaic_scenes()
    out = mosaic(samples, (96, 80), np.random.default_rng(seed), GEOM)
    assert out.image.shape == (3, 80, 96) and out.image.dtype == np.float32
    assert out.boxes.shape == (len(out.labels), 4) and len(out.difficult) == len(out.labels)
    xyxy = cxcywh_to_xyxy(out.boxes) * [96, 80, 96, 80]
    assert len(set(out.labels.tolist())) == len(out.labels)
    for c, bgr in enumerate(colours):
        rgb = np.array(bgr[::-1], np.float32) / 255
        ys, xs = np.nonzero(np.abs(out.image.transpose(1, 2, 0) - rgb).max(2) < 0.05)
        if c not in out.labels:
            full = np.prod(np.diff(samples[c // 2].boxes[c % 2].reshape(2, 2), axis=0))
            assert len(xs) < MOSAIC_MIN_VISIBLE * full * 1.6 ** 2, (c, len(xs))
            continue
        i = list(out.labels).index(c)
        assert out.difficult[i] == (c == 3)                  # the flag travels with its box
        x1, y1, x2, y2 = xyxy[i]
        assert len(xs) > 0
        assert xs.min() + 0.5 >= x1 - 0.01 and xs.max() + 0.5 <= x2 + 0.01
        assert ys.min() + 0.5 >= y1 - 0.01 and ys.max() + 0.5 <= y2 + 0.01
        assert xs.min() + 0.5 - x1 < 2.1 and x2 - (xs.max() + 0.5) < 2.1
        assert ys.min() + 0.5 - y1 < 2.1 and y2 - (ys.max() + 0.5) < 2.1


def test_mosaic_shows_all_four_images_and_is_deterministic():
    samples, colours = mosaic_scenes()
    a = mosaic(samples, 96, np.random.default_rng(3), GEOM)
    b = mosaic(samples, 96, np.random.default_rng(3), GEOM)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    shown = 0
    for k in range(4):       # each image's corner next to the centre: one of its colours
        rgbs = [np.array(colours[2 * k + j][::-1], np.float32) / 255 for j in (0, 1)]
        shown += any((np.abs(a.image.transpose(1, 2, 0) - c).max(2) < 0.05).any()
                     for c in rgbs)
    assert shown >= 3
    with pytest.raises(ValueError, match="4 samples"):
        mosaic(samples[:3], 96, np.random.default_rng(0), GEOM)
