"""What a weights argument names, read into memory: a model spec with its weights, or a
lowered plan.

``read_model`` accepts a ``.safetensors`` checkpoint (spec and names embedded), a lowered plan
file, darknet ``.weights`` with its ``.cfg``, or a zoo name / spec YAML (random weights,
seeded). It is what ``detector.load`` and every command that takes weights read them with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from ..errors import ParamError, UserError
from ..io.checkpoint import load_checkpoint, read_metadata
from ..io.darknet_cfg import spec_from_cfg
from ..io.darknet_weights import read_weights
from ..models.params import init_params
from ..models.spec import VOC_NAMES, ModelSpec
from ..models.spec_yaml import is_zoo_name, load_spec, spec_from_dict, zoo_names
from .plan import PLAN_KEY, Plan, load_plan


@dataclass
class LoadedModel:
    """What a weights argument resolves to: a spec with unfolded weights, or a lowered plan."""
    spec: ModelSpec
    state: Optional[Dict[str, np.ndarray]]
    names: List[str]
    source: str
    plan: Optional[Plan] = None            # for lowered plan files


def read_names(path: str) -> List[str]:
    """Class names file: one name per line (darknet's .names)."""
    if not os.path.isfile(path):
        raise ParamError("names", "no such file", value=path)
    with open(path, encoding="utf-8", errors="replace") as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise ParamError("names", "no class names in the file", value=path)
    return names


def read_model(weights: str, cfg: Optional[str] = None, names=None,
               seed: int = 0) -> LoadedModel:
    """Resolve ``weights`` (+ ``cfg``) to a LoadedModel. ``names`` is a list or a file path."""
    if isinstance(names, str):
        names = read_names(names)
    if not isinstance(weights, str) or not weights:
        raise ParamError("weights", "expected a file path or a zoo model name")
    if is_zoo_name(weights) or weights.endswith((".yaml", ".yml")):
        spec = load_spec(weights)
        if cfg:
            raise ParamError("cfg", f"is for darknet .weights files, not the model {weights}",
                             value=cfg)
        state = init_params(spec, seed)
        return LoadedModel(spec, state, _names(spec, names, weights), weights)
    if weights.endswith(".weights") or cfg:
        if not cfg:
            raise ParamError("cfg", f"{weights} holds darknet weights, which need the "
                             "network's .cfg file")
        if not os.path.isfile(weights):
            raise UserError(f"{weights}: no such file")
        spec = spec_from_cfg(cfg)
        _, state = read_weights(weights, spec)
        if names is None and spec.classes == len(VOC_NAMES):
            names = VOC_NAMES
        return LoadedModel(spec, state, _names(spec, names, weights), weights)
    if not os.path.exists(weights):
        hint = "" if os.sep in weights or "." in weights else \
            " (not a zoo model either; zoo: " + ", ".join(zoo_names()) + ")"
        raise UserError(f"{weights}: no such file{hint}")
    if weights.endswith((".pt", ".pth")):
        raise UserError(f"{weights}: training state, not a deployable checkpoint; pass the "
                        f".safetensors written beside it (e.g. best.safetensors)")
    meta = read_metadata(weights)
    if PLAN_KEY in meta:
        plan = load_plan(weights)
        spec = spec_from_dict(plan.spec, f"{weights} (embedded spec)")
        return LoadedModel(spec, None, _names(spec, names or plan.names, weights), weights, plan)
    spec, state, ck_names, _ = load_checkpoint(weights)
    return LoadedModel(spec, state, _names(spec, names or ck_names, weights), weights)


def _names(spec: ModelSpec, names, source: str) -> List[str]:
    if names is None:
        return spec.class_names()
    names = list(names)
    if len(names) != spec.classes:
        raise UserError(f"{len(names)} class names for {source}, which has {spec.classes} classes")
    return names
