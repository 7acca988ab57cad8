"""Calibration footage for the data-driven refinement (and the distillation after it).

``calib`` is one FOOTAGE text or several (``detector.stream.footage``): a dataset YAML (any
split, annotations not needed), a folder or glob of images, a video file (frames spread over
it) or a camera/stream URI (its first distinct frames). ``calib_images`` frames are drawn
from each; a part of them (``holdout``) is held out: refinement and distillation never see
it, and the report's agreement of the converted model with the original is measured on it.
Frames are letterboxed exactly as at inference (``detector.preprocess``).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.footage import Footage, is_dataset_yaml
from ..stream.footage import footage_texts, read_footage

MAP_SPLIT = "val"


def calibration_footage(calib: Union[str, Sequence[str]], count: int,
                        split: Optional[str] = None, seed: int = 0,
                        holdout: float = 0.2) -> Tuple[Footage, Footage]:
    """(fit, held out) frames of the calibration footage."""
    return read_footage(footage_texts(calib), count, split, seed).split(holdout, seed)


def letterboxed(footage: Footage, size: int, resize: str = "opencv") -> np.ndarray:
    """Every frame letterboxed: ``[N, 3, size, size]`` float32, resized as ``resize`` says
    (the model's: ``spec.resize``)."""
    from ..preprocess import Preprocessor
    pre = Preprocessor(size, resize=resize)
    out = np.empty((len(footage), 3, size, size), np.float32)
    for n in range(len(footage)):
        blob, _ = pre(footage.image(n))
        out[n] = blob[0]
    return out


def map_dataset(calib: Union[str, Sequence[str], None]) -> Optional[str]:
    """The dataset YAML among the calibration footage whose ``val`` split measures mAP
    before and after, or None."""
    from ..data.dataset_yaml import load_dataset_yaml
    for text in footage_texts(calib):
        if is_dataset_yaml(text) and MAP_SPLIT in load_dataset_yaml(text).splits:
            return text
    return None


def describe(calib: Union[str, Sequence[str], None]) -> str:
    texts: List[str] = footage_texts(calib)
    return texts[0] if len(texts) == 1 else ", ".join(texts)
