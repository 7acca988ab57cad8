"""What a weights argument names, read into memory: a model spec with its weights, or a
lowered plan.

``read_model`` accepts a ``.safetensors`` checkpoint (spec and names embedded), a lowered plan
file, darknet ``.weights`` with its ``.cfg``, a published model by name (``yolov2-voc``,
``yolov2-voc-fastdsc``, ...: downloaded or built once into the user cache, see
``engine.published``), or ``random:SPEC`` (a zoo spec name or spec YAML with random weights,
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
from ..io.zoo import DARKNET_FILES, FASTDSC_MODELS, published_names
from ..models.spec_yaml import is_zoo_name, load_spec, spec_from_dict
from .plan import PLAN_KEY, Plan, load_plan
from .published import darknet_file, darknet_spec, fastdsc_model

RANDOM = "random:"          # random:SPEC: the network of a zoo spec or spec YAML, random weights


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


def read_model(weights: str, cfg: Optional[str] = None, names=None, seed: int = 0,
               backbone_ok: bool = False, progress: bool = True) -> LoadedModel:
    """Resolve ``weights`` (+ ``cfg``) to a LoadedModel. ``names`` is a list or a file path.
    ``backbone_ok``: a published backbone (``darknet19_448.conv.23``: its first layers only)
    may be read, for training; ``progress``: progress bars of a first-use download or build
    on stderr."""
    if isinstance(names, str):
        names = read_names(names)
    if not isinstance(weights, str) or not weights:
        raise ParamError("weights", "expected a file path, a published model name or "
                         "random:SPEC")
    if weights.startswith(RANDOM):
        return _random(weights[len(RANDOM):], cfg, names, seed)
    if weights in DARKNET_FILES or weights in FASTDSC_MODELS:
        if cfg:
            raise ParamError("cfg", f"is for darknet .weights files, not the published model "
                             f"{weights}", value=cfg)
        if weights in DARKNET_FILES:
            return _published_darknet(weights, names, backbone_ok, progress)
        weights = fastdsc_model(weights, progress)
    elif weights.endswith((".yaml", ".yml")) and not cfg:
        raise UserError(f"{weights}: a model spec holds no weights; for random weights pass "
                        f"{RANDOM}{weights}")
    elif weights.endswith(".weights") or cfg:
        return _darknet(weights, cfg, names)
    if not os.path.exists(weights):
        raise UserError(f"{weights}: no such file{_not_a_name(weights)}")
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


def random_if_spec(name: str) -> str:
    """``random:NAME`` for a zoo spec name or spec YAML (what benchmarks time: the network,
    whatever its weights), else ``name`` unchanged."""
    if is_zoo_name(name) or name.endswith((".yaml", ".yml")):
        return RANDOM + name
    return name


def _random(spec_name: str, cfg: Optional[str], names, seed: int) -> LoadedModel:
    """``random:SPEC``: a zoo spec name or spec YAML with seeded random weights."""
    if cfg:
        raise ParamError("cfg", f"is for darknet .weights files, not {RANDOM}{spec_name}",
                         value=cfg)
    spec = load_spec(spec_name)
    return LoadedModel(spec, init_params(spec, seed), _names(spec, names, spec_name),
                       RANDOM + spec_name)


def _darknet(weights: str, cfg: Optional[str], names) -> LoadedModel:
    """Darknet ``.weights`` with the network's ``.cfg``."""
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


def _published_darknet(name: str, names, backbone_ok: bool, progress: bool) -> LoadedModel:
    """A published darknet file by name: downloaded and verified on first use."""
    entry = DARKNET_FILES[name]
    spec = darknet_spec(entry)
    if entry.backbone and not backbone_ok:
        raise UserError(f"{name} is a backbone (the first {entry.layers} layers of "
                        f"{entry.cfg}) to train a detector from, not a detector")
    _, state = read_weights(darknet_file(name, progress), spec, partial=entry.backbone)
    if names is None and entry.names_path:
        names = read_names(entry.names_path)
    elif names is None and spec.classes == len(VOC_NAMES):
        names = VOC_NAMES
    return LoadedModel(spec, state, _names(spec, names, name), name)


def _not_a_name(weights: str) -> str:
    """A hint for a missing file whose argument looks like a model name."""
    if os.sep in weights or "." in weights:
        return ""
    return (" (not a published model either: " + ", ".join(published_names()) + "; random "
            f"weights of a zoo spec: {RANDOM}NAME)")


def _names(spec: ModelSpec, names, source: str) -> List[str]:
    if names is None:
        return spec.class_names()
    names = list(names)
    if len(names) != spec.classes:
        raise UserError(f"{len(names)} class names for {source}, which has {spec.classes} classes")
    return names
