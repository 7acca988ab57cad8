"""Image files of a dataset: decoding, and the size of an image without decoding it.

:func:`read_image` decodes as the network sees frames (BGR uint8, EXIF orientation ignored,
because annotations are in stored pixel order). :func:`image_size` gives ``[width, height]``
or a reason string; with ``decode=False`` it reads only the header of a JPEG or PNG (the
stored size, the same one decoding gives) and decodes anything else.
"""
from __future__ import annotations

import os
from typing import List, Optional, Union

import numpy as np

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
# what a folder of images may hold (compared in lower case); everything OpenCV decodes
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CANNOT_DECODE = "cannot decode image (corrupt, truncated or not an image)"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4, C8 and CC are other segments)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def is_image_file(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def read_image(path: str) -> Optional[np.ndarray]:
    """Decode an image file as BGR uint8 HxWx3 (EXIF orientation ignored, as the annotations
    are in stored pixel order); None when the file cannot be read or decoded."""
    import cv2
    try:
        buf = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if buf.size == 0:
        return None
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except (cv2.error, MemoryError):   # more pixels than memory allows (a PNG bomb)
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.size == 0:
        return None
    return img


def image_size(path: str, decode: bool = True) -> Union[List[int], str]:
    """``[width, height]`` of an image file, or why there is none. ``decode``: decode the
    whole image (finds corrupt files); without it a JPEG or PNG header is enough."""
    if not decode:
        size = header_size(path)
        if size is not None:
            return size
    img = read_image(path)
    if img is None:
        return CANNOT_DECODE
    return [int(img.shape[1]), int(img.shape[0])]


def header_size(path: str) -> Optional[List[int]]:
    """``[width, height]`` from a JPEG or PNG header; None for anything else or a header
    that cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head.startswith(_PNG_SIGNATURE) and head[12:16] == b"IHDR":
                w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
                return [w, h] if w > 0 and h > 0 else None
            if head.startswith(b"\xff\xd8"):
                f.seek(2)
                return _jpeg_size(f)
    except OSError:
        return None
    return None


def _jpeg_size(f) -> Optional[List[int]]:
    """Walk the JPEG segments after SOI up to the first start-of-frame."""
    for _ in range(10000):
        b = f.read(1)
        while b and b != b"\xff":          # padding or junk between segments
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        m = b[0]
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            continue
        if m in (0xD9, 0xDA):               # end of image, or scan data before any frame
            return None
        n = f.read(2)
        if len(n) < 2 or int.from_bytes(n, "big") < 2:
            return None
        if m in _SOF:
            d = f.read(5)
            if len(d) < 5:
                return None
            h, w = int.from_bytes(d[1:3], "big"), int.from_bytes(d[3:5], "big")
            return [w, h] if w > 0 and h > 0 else None
        f.seek(int.from_bytes(n, "big") - 2, 1)
    return None
