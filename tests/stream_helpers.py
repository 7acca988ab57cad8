"""Helpers shared by the stream tests: real videos and images written with OpenCV, and the
GStreamer requirement (gst-launch-1.0 with videotestsrc; installed by CI's set-up)."""
from __future__ import annotations

import os
import shutil

import cv2
import numpy as np
import pytest

HAVE_GST = shutil.which("gst-launch-1.0") is not None

# Without GStreamer the gst tests skip locally, but fail in CI, where it must be installed.
requires_gst = pytest.mark.skipif(
    not HAVE_GST and not os.environ.get("CI"),
    reason="needs gst-launch-1.0 (apt-get install gstreamer1.0-tools gstreamer1.0-plugins-base "
           "gstreamer1.0-plugins-good)")

SPEC = "yolov2-tiny-voc-fastdsc"
MODEL = "random:" + SPEC       # the zoo network with random weights
SIZE = 160


def frame_image(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    """A synthetic frame that differs from frame to frame (a moving disc on a gradient)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[:, :, 1] = (i * 9) % 256
    cv2.circle(img, ((10 + 7 * i) % w, h // 2), max(4, h // 5), (0, 200, 255), -1)
    cv2.rectangle(img, (w // 2, (3 * i) % h), (w // 2 + w // 6, (3 * i) % h + h // 5),
                  (255, 255, 255), -1)
    return img


def write_video(path: str, frames: int, w: int = 160, h: int = 120, fps: float = 12.0) -> str:
    fourcc = "MJPG" if path.endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), path
    for i in range(frames):
        writer.write(frame_image(i, w, h))
    writer.release()
    return path


def count_video_frames(path: str):
    """(frames, fps, (w, h)) read back with OpenCV, decoding every frame."""
    cap = cv2.VideoCapture(path)
    assert cap.isOpened(), f"{path} is not a readable video"
    n, size = 0, None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        size = (img.shape[1], img.shape[0])
        n += 1
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, fps, size


def gst_live(w: int = 160, h: int = 120, fps: int = 30, extra: str = "") -> str:
    """A live test source: GStreamer's videotestsrc at ``fps`` frames per second."""
    return (f"gst:videotestsrc is-live=true {extra}! "
            f"video/x-raw,width={w},height={h},framerate={fps}/1")
