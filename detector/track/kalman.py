"""A constant-velocity Kalman filter over many boxes at once (numpy, no Python loop per box).

State of a box: centre, size and their velocities ``(cx, cy, w, h, vx, vy, vw, vh)`` in pixels
and pixels per frame; the measurement is ``(cx, cy, w, h)``. As in SORT/ByteTrack the noise
scales with the box size (a large near object moves more pixels per frame than a small far
one), so one set of weights suits every object and frame size.

The transition, the process and measurement noise and the initial covariance couple each
quantity only with its own velocity, so the 8x8 covariance is four independent 2x2 blocks
and stays so. It is kept as those blocks, ``cov`` (N, 4, 3) = (var of the quantity, its
covariance with the velocity, var of the velocity) per quantity (cx, cy, w, h): the filter is
then a few elementwise operations, the same numbers as the full matrices (:func:`full_cov`).
"""
from __future__ import annotations

import numpy as np

POSITION_NOISE = 1.0 / 20      # std of position per box side
VELOCITY_NOISE = 1.0 / 160     # std of velocity per box side, per frame
PP, PV, VV = 0, 1, 2           # the three entries of a 2x2 block


def _scale(mean: np.ndarray) -> np.ndarray:
    """(N, 4) box side per quantity ``(w, h, w, h)``, kept above one pixel."""
    wh = np.maximum(mean[:, 2:4], 1.0)
    return np.concatenate([wh, wh], axis=1)


def initiate(measurement: np.ndarray):
    """Mean (N, 8) and covariance blocks (N, 4, 3) of new tracks from boxes (N, 4) cx, cy, w,
    h."""
    n = len(measurement)
    mean = np.zeros((n, 8))
    mean[:, :4] = measurement
    side = _scale(mean)
    cov = np.zeros((n, 4, 3))
    cov[:, :, PP] = (2 * POSITION_NOISE * side) ** 2
    cov[:, :, VV] = (10 * VELOCITY_NOISE * side) ** 2
    return mean, cov


def predict(mean: np.ndarray, cov: np.ndarray, steps: float = 1.0) -> None:
    """Move every state ``steps`` frames ahead, in place."""
    if len(mean) == 0:
        return
    side = _scale(mean)
    mean[:, :4] += steps * mean[:, 4:]
    pp, pv, vv = cov[:, :, PP], cov[:, :, PV], cov[:, :, VV]
    pp += steps * (2 * pv + steps * vv) + steps * (POSITION_NOISE * side) ** 2
    pv += steps * vv
    vv += steps * (VELOCITY_NOISE * side) ** 2


def correct(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> None:
    """Correct states (K, 8) / (K, 4, 3) with their measurements (K, 4), in place."""
    if len(mean) == 0:
        return
    r = (POSITION_NOISE * _scale(mean)) ** 2
    pp, pv, vv = cov[:, :, PP], cov[:, :, PV], cov[:, :, VV]
    s = pp + r
    gain_p, gain_v = pp / s, pv / s
    innovation = measurement - mean[:, :4]
    mean[:, :4] += gain_p * innovation
    mean[:, 4:] += gain_v * innovation
    vv -= gain_v * pv
    pv *= 1.0 - gain_p
    pp *= 1.0 - gain_p


def full_cov(cov: np.ndarray) -> np.ndarray:
    """The (N, 8, 8) covariance the blocks stand for (state order cx, cy, w, h, vx, ...)."""
    out = np.zeros((len(cov), 8, 8))
    q = np.arange(4)
    out[:, q, q] = cov[:, :, PP]
    out[:, q, q + 4] = out[:, q + 4, q] = cov[:, :, PV]
    out[:, q + 4, q + 4] = cov[:, :, VV]
    return out
