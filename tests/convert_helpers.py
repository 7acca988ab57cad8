"""Small models, weights and calibration datasets for the conversion tests."""
from __future__ import annotations

import os

import numpy as np

from detector.models.params import init_params, param_shapes
from detector.models.spec_yaml import spec_from_dict

# Every path the converter has to handle: a strided 3x3 conv, a 1x1 conv, route + reorg,
# a 3x3 conv with a bias instead of BN, and the 1x1 linear head.
MINI = {
    "name": "mini",
    "input": {"size": 64, "channels": 3},
    "classes": 6,
    "names": ["circle", "square", "triangle", "star", "cross", "ring"],
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
        {"type": "conv", "filters": 22, "size": 1, "bn": False, "act": "linear"},
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
    """A synthetic VOC-layout dataset (``detector synth``); returns its data.yaml path."""
    from detector.data.synth import generate
    generate(str(root), train=n_train, val=n_val, size=size, seed=seed)
    return os.path.join(str(root), "data.yaml")
