"""Deployable checkpoints: safetensors with the model spec, anchors, class names and input size
in the metadata. Loading needs numpy and safetensors only (never unpickles anything)."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..errors import UserError
from ..models.params import check_state
from ..models.spec import ModelSpec
from ..models.spec_yaml import spec_from_dict
from .atomic import atomic_path

FORMAT = "fastdsc-yolo"
FORMAT_VERSION = "1"


def read_metadata(path: str) -> Dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors."""
    return read_safetensors(path, tensors=False)[1]


def read_safetensors(path: str, tensors: bool = True) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """Tensors and metadata of a safetensors file; a clear UserError for anything else."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(8)
    size = os.path.getsize(path)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if n <= 1 or n > min(size - 8, 100 * 1024 * 1024):
        raise UserError(f"{path}: not a safetensors file (bad header); checkpoints must be "
                        f".safetensors (pickled .pt files are not loaded for safety)")
    try:
        with safe_open(path, framework="np") as f:
            metadata = dict(f.metadata() or {})
            out = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise UserError(f"{path}: corrupt safetensors file ({str(e).splitlines()[0][:200]})") from None
    return out, metadata


def save_checkpoint(path: str, spec: ModelSpec, state: Dict[str, np.ndarray],
                    names: Optional[List[str]] = None, extra: Optional[dict] = None) -> None:
    """Write a deployable checkpoint atomically (float32 tensors unless given as float16)."""
    names = list(names or spec.class_names())
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "spec": json.dumps(spec.to_dict()), "names": json.dumps(names),
            "anchors": json.dumps([list(a) for a in spec.region.anchors]),
            "img_size": str(spec.size)}
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    tensors = {k: np.ascontiguousarray(v) for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=meta)


def load_checkpoint(path: str) -> Tuple[ModelSpec, Dict[str, np.ndarray], List[str], Dict[str, str]]:
    """(spec, float32 state, class names, raw metadata) of a checkpoint written by
    ``save_checkpoint``."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a FastDSC-YOLO checkpoint (metadata 'format' is "
                        f"{meta.get('format')!r}, expected {FORMAT!r})")
    try:
        spec_dict = json.loads(meta["spec"])
        names = json.loads(meta.get("names", "null"))
    except (KeyError, ValueError) as e:
        raise UserError(f"{path}: corrupt checkpoint metadata ({e})") from None
    spec = spec_from_dict(spec_dict, f"{path} (embedded spec)")
    if not isinstance(names, list) or len(names) != spec.classes:
        names = spec.class_names()
    state = {k: v.astype(np.float32) for k, v in tensors.items()}
    try:
        check_state(spec, state, path)
    except ValueError as e:
        raise UserError(str(e)) from None
    return spec, state, names, meta
