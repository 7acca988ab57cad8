"""FOOTAGE texts read into frames (``detector.data.footage.Footage``) through the source
grammar of ``detect``: calibration (``convert --calib``), distillation and ``compare``.

A dataset YAML is read by the data layer; every other text is parsed as a SOURCE
(``sources.parse_source``): images are read on use, a video file gives ``count`` frames
spread evenly over it, a camera or stream its first ``count`` distinct frames.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

from ..data.footage import (MAX_SIDE, Footage, check_count, concat, dataset_footage,
                            distinct_frames, image_footage, is_dataset_yaml, spread_frames)
from ..errors import UserError
from .sources import ImageSource, Source, Warn, parse_source, warn_stderr

LIVE_TIMEOUT_S = 60.0


def read_footage(texts: Union[str, Sequence[str]], count: int, split: Optional[str] = None,
                 seed: int = 0, warn: Warn = warn_stderr, max_side: Optional[int] = MAX_SIDE,
                 timeout_s: float = LIVE_TIMEOUT_S) -> Footage:
    """Up to ``count`` frames of each FOOTAGE text (``split``: of a dataset YAML; ``seed``:
    which images of a larger folder or split). Raises UserError naming the text when it
    gives no frame."""
    check_count(count)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise UserError("no footage given")
    parts = []
    for text in texts:
        part = _read_one(text, count, split, seed, warn, max_side, timeout_s)
        if len(part) == 0:
            raise UserError(f"{text}: no frames")
        parts.append(part)
    return concat(parts)


def _read_one(text: str, count: int, split: Optional[str], seed: int, warn: Warn,
              max_side: Optional[int], timeout_s: float) -> Footage:
    if is_dataset_yaml(text):
        return dataset_footage(text, count, split, seed)
    src = parse_source(text, warn=warn)
    if isinstance(src, ImageSource):
        return image_footage(src.paths, count, seed, about=text)
    src.open()
    try:
        if src.kind == "video":
            frames = spread_frames(_reader(src), _length(src), count, text, max_side)
        else:
            frames = distinct_frames(_reader(src), count, text, timeout_s=timeout_s,
                                     max_side=max_side)
            if len(frames) < count:
                warn(f"{text}: {len(frames)} distinct frames, not {count} (the source ended, "
                     "repeats itself or is too slow)")
    finally:
        src.close()
    return Footage(frames, about=f"{text}: {src.describe()}")


def _reader(src: Source):
    def read():
        got = src.read()
        return None if got is None else got.image
    return read


def _length(src: Source) -> int:
    """Frames in a video: the container's count, else counted by reading it through (the
    source is reopened at its start)."""
    if src.length:
        return int(src.length)
    n = 0
    while src.read() is not None:
        n += 1
    src.close()
    src.open()
    return n


def footage_texts(value: Union[str, Sequence[str], None]) -> List[str]:
    """The FOOTAGE texts of an option that takes one or several."""
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)
