"""Small models, weights and calibration datasets for the conversion tests."""
from __future__ import annotations

import os

import numpy as np

from detector.models.params import init_params, param_shapes
from detector.models.spec import spec_from_dict

# Every path the converter has to handle: a strided 3x3 conv, a 1x1 conv, route + reorg,
# a 3x3 conv with a bias instead of BN, and the 1x1 linear head.
MINI = {
    "name": "mini",
    "input": {"size": 64, "channels": 3},
    "classes": 2,
    "names": ["a", "b"],
    "layers": [
        {"type": "conv", "filters": 8, "size": 3},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "conv", "filters": 16, "size": 3},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "conv", "filters": 8, "size": 1},
        {"type": "conv", "filters": 24, "size": 3, "stride": 2},
        {"type": "route", "layers": [-3]},
        {"type": "reorg", "stride": 2},
        {"type": "route", "layers": [-1, -3]},
        {"type": "conv", "filters": 20, "size": 3, "bn": False, "act": "leaky"},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "conv", "filters": 32, "size": 3},
        {"type": "maxpool", "size": 2, "stride": 2},
        {"type": "conv", "filters": 14, "size": 1, "bn": False, "act": "linear"},
    ],
    "region": {"anchors": [[1.0, 1.5], [3.0, 2.0]]},
}


def mini_spec():
    return spec_from_dict(MINI)


def random_state(spec, seed=0):
    """Random weights with non-trivial BN (scales, means, variances, betas) and biases."""
    rng = np.random.default_rng(seed)
    state = init_params(spec, seed)
    for name, shape in param_shapes(spec).items():
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.2, 3.0, shape).astype(np.float32)
        elif name.endswith("running_mean") or name.endswith(".bias"):
            state[name] = rng.normal(0, 0.1, shape).astype(np.float32)
        elif name.endswith(".weight") and len(shape) == 1:
            state[name] = rng.uniform(0.3, 2.0, shape).astype(np.float32) * \
                rng.choice([-1, 1], shape).astype(np.float32)
    return state


def structured_weight(cout, cin, k=3, seed=0):
    """Smooth, correlated filters (a few shared basis kernels with decaying weights plus a
    little noise), like learned ones: a fast-decaying singular-value spectrum."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1:2, -1:2].astype(np.float64)
    basis = [np.exp(-(xx ** 2 + yy ** 2)), xx, yy, xx * yy, xx ** 2 - yy ** 2,
             np.ones((3, 3)), xx * yy ** 2, yy * xx ** 2, (xx * yy) ** 2]
    basis = np.stack([b / np.linalg.norm(b) for b in basis]).reshape(9, k * k)
    coef = rng.normal(size=(cout, cin, 9)) * (0.5 ** np.arange(9))
    w = coef @ basis + 0.01 * rng.normal(size=(cout, cin, k * k))
    return w.reshape(cout, cin, k, k).astype(np.float32)


def write_voc(root, n_train=16, n_val=4, size=96, seed=0):
    """A VOC-layout dataset of random shapes (images only; conversion needs no boxes) with a
    data.yaml; returns the YAML path."""
    import cv2
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "VOCdevkit", "SYN")
    os.makedirs(os.path.join(d, "ImageSets", "Main"), exist_ok=True)
    os.makedirs(os.path.join(d, "JPEGImages"), exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        ids = []
        for i in range(n):
            img = np.empty((size, int(size * 1.3), 3), np.uint8)
            img[:] = rng.integers(0, 255, 3)
            for _ in range(6):
                color = tuple(int(v) for v in rng.integers(0, 255, 3))
                x, y = int(rng.integers(0, img.shape[1])), int(rng.integers(0, size))
                if rng.random() < 0.5:
                    cv2.circle(img, (x, y), int(rng.integers(3, size // 3)), color, -1)
                else:
                    cv2.rectangle(img, (x, y), (x + int(rng.integers(4, size // 2)),
                                                y + int(rng.integers(4, size // 2))), color, -1)
            iid = f"{split}{i:04d}"
            cv2.imwrite(os.path.join(d, "JPEGImages", iid + ".jpg"), img)
            ids.append(iid)
        with open(os.path.join(d, "ImageSets", "Main", split + ".txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
    path = os.path.join(root, "data.yaml")
    with open(path, "w") as f:
        f.write("root: VOCdevkit\ntrain: [SYN/train]\nval: [SYN/val]\nnames: [a, b]\n")
    return path
