"""The model a run starts from: a spec (a zoo name or YAML, or the spec of the weights) with
a head for the dataset's classes, its weights (random, a checkpoint, a converted model, or
darknet's), and optionally anchors fitted to the dataset's boxes; or the model of a
training state that a run resumes."""
from __future__ import annotations

import copy
from typing import List, Tuple

import numpy as np
import torch

from ..engine.model_file import read_model
from ..errors import ParamError, UserError
from ..io.darknet_weights import read_weights
from ..models.checks import check_input_size
from ..models.spec import ModelSpec, with_classes
from ..models.spec_yaml import load_spec, spec_from_dict
from ..models.yolov2 import YOLOv2
from .anchors import dataset_box_sizes, kmeans_anchors
from .options import TrainOptions


def initial_model(opts: TrainOptions, names: List[str]) -> Tuple[ModelSpec, YOLOv2, str, str]:
    """(spec, model, note, start) for ``opts.model`` / ``opts.weights``, with a head for the
    dataset's classes (``names``); the note says where the weights came from, ``start`` what
    they cover: "random" (no weights), "detector" (the detection head too, so the spec's
    anchors are the ones it was trained with) or "backbone" (some layers, not the head)."""
    spec, state, source = _start_weights(opts)
    if opts.img_size:
        spec = spec.replace(size=check_input_size(opts.img_size))
    spec = tree_head(spec, names) if spec.tree is not None else \
        with_classes(spec, len(names), names)
    torch.manual_seed(opts.seed)
    model = YOLOv2(spec)
    note, start = "random initialisation", "random"
    if state is not None:
        own = model.state_dict()
        fit = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()
               if k in own and tuple(own[k].shape) == tuple(v.shape)}
        model.load_state_dict(fit, strict=False)
        skipped = [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]
        note = f"{len(fit)} tensors from {source}" + (
            f"; {len(skipped)} left random (e.g. {skipped[0]})" if skipped else "")
        head = f"layers.{len(spec.layers) - 1}."
        start = "detector" if not any(k.startswith(head) for k in skipped) else \
            "backbone" if fit else "random"
    return spec, model, note, start


def _start_weights(opts: TrainOptions):
    """(spec, state or None, where the state came from) of the options."""
    if opts.weights:
        if opts.weights.endswith(".weights") and opts.model and not opts.cfg:
            spec = load_spec(opts.model)
            _, state = read_weights(opts.weights, spec, partial=True)
            return spec, state, f"darknet {opts.weights}"
        loaded = read_model(opts.weights, opts.cfg, backbone_ok=True)
        if loaded.state is None:
            raise UserError(f"{opts.weights}: a lowered plan cannot be trained; use the "
                            "checkpoint it came from")
        if loaded.spec.region is None and not opts.model:
            raise ParamError("model", f"needed: {opts.weights} is a classifier, whose weights "
                             "seed the backbone of the detector named here")
        spec = load_spec(opts.model) if opts.model else loaded.spec
        return spec, loaded.state, opts.weights
    if opts.model:
        return load_spec(opts.model), None, None
    raise ParamError("model", "needed (a zoo name or spec YAML) unless weights are given")


def tree_head(spec: ModelSpec, names: List[str]) -> ModelSpec:
    """A WordTree model keeps its tree; the dataset's classes (``names``) map into it: by the
    region's ``map`` (one tree class per dataset class), else by name (each dataset class to
    the first tree class of that name). The mapped classes take the dataset's names."""
    mapping = spec.region.map
    tree_names = spec.class_names()
    if mapping is None:
        index = {}
        for i, n in enumerate(tree_names):
            index.setdefault(n, i)
        missing = [n for n in names if n not in index]
        if missing:
            raise UserError(f"{spec.name}: classes {', '.join(missing[:5])} of the dataset are "
                            "not in its tree and it has no map (a region map=) for them")
        mapping = [index[n] for n in names]
    if len(mapping) != len(names):
        raise UserError(f"{spec.name}: its map lists {len(mapping)} tree classes but the "
                        f"dataset has {len(names)} classes")
    region = copy.deepcopy(spec.region)
    region.map = list(mapping)
    for j, m in enumerate(mapping):
        tree_names[m] = names[j]
    return spec.replace(region=region, names=tree_names)


def resumed_model(state: dict, path: str, seed: int) -> Tuple[ModelSpec, YOLOv2]:
    """The spec and model of the training state ``state`` read from ``path``."""
    spec = spec_from_dict(state["spec"], path)
    torch.manual_seed(seed)
    model = YOLOv2(spec)
    model.load_state_dict(state["model"])
    return spec, model


def fit_anchors(spec: ModelSpec, dataset, seed: int) -> ModelSpec:
    """The spec with k-means (1 - IoU) anchors of the boxes training learns from (difficult
    ones are left out, as :class:`detector.data.batches.TrainSet` leaves them out) at the
    spec's size."""
    try:
        sizes = dataset_box_sizes(dataset, spec.size, include_difficult=False)
        anchors, _ = kmeans_anchors(sizes, spec.region.num, seed)
    except ParamError as e:
        raise ParamError("anchors", e.message, value="auto") from None
    region = copy.deepcopy(spec.region)
    region.anchors = [(round(float(w), 4), round(float(h), 4)) for w, h in anchors]
    return spec.replace(region=region)
