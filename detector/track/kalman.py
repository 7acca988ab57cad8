"""A constant-velocity Kalman filter over many boxes at once (numpy, no Python loop per box).

State of a box: centre, size and their velocities ``(cx, cy, w, h, vx, vy, vw, vh)`` in pixels
and pixels per frame; the measurement is ``(cx, cy, w, h)``. As in SORT/ByteTrack the noise
scales with the box size (a large near object moves more pixels per frame than a small far
one), so one set of weights suits every object and frame size.
"""
from __future__ import annotations

import numpy as np

POSITION_NOISE = 1.0 / 20      # std of position per box side
VELOCITY_NOISE = 1.0 / 160     # std of velocity per box side, per frame


def _scale(mean: np.ndarray) -> np.ndarray:
    """(N, 4) box sides per state component ``(w, h, w, h)``, kept above one pixel."""
    wh = np.maximum(mean[:, 2:4], 1.0)
    return np.concatenate([wh, wh], axis=1)


def initiate(measurement: np.ndarray):
    """Mean (N, 8) and covariance (N, 8, 8) of new tracks from boxes (N, 4) cx, cy, w, h."""
    n = len(measurement)
    mean = np.zeros((n, 8))
    mean[:, :4] = measurement
    side = _scale(mean)
    std = np.concatenate([2 * POSITION_NOISE * side, 10 * VELOCITY_NOISE * side], axis=1)
    cov = np.zeros((n, 8, 8))
    idx = np.arange(8)
    cov[:, idx, idx] = std * std
    return mean, cov


def _transition(steps: float) -> np.ndarray:
    f = np.eye(8)
    f[:4, 4:] = steps * np.eye(4)
    return f


def predict(mean: np.ndarray, cov: np.ndarray, steps: float = 1.0) -> None:
    """Move every state ``steps`` frames ahead, in place."""
    if len(mean) == 0:
        return
    side = _scale(mean)
    mean[:, :4] += steps * mean[:, 4:]
    f = _transition(steps)
    cov[:] = f @ cov @ f.T
    q = np.concatenate([POSITION_NOISE * side, VELOCITY_NOISE * side], axis=1)
    diagonal = np.einsum("nii->ni", cov)        # a writable view
    diagonal += steps * q * q


def correct(mean: np.ndarray, cov: np.ndarray, measurement: np.ndarray) -> None:
    """Correct states (K, 8) / (K, 8, 8) with their measurements (K, 4), in place."""
    if len(mean) == 0:
        return
    r = POSITION_NOISE * _scale(mean)[:, :4]
    s = cov[:, :4, :4].copy()
    diagonal = np.einsum("nii->ni", s)
    diagonal += r * r
    # gain K = P H^T S^-1 with H = [I 0]: P H^T is P's first four columns
    gain = cov[:, :, :4] @ np.linalg.inv(s)
    mean += (gain @ (measurement - mean[:, :4])[:, :, None])[:, :, 0]
    cov -= gain @ cov[:, :4, :]
