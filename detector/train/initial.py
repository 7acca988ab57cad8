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


def initial_model(opts: TrainOptions, names: List[str]) -> Tuple[ModelSpec, YOLOv2, str]:
    """(spec, model, note) for ``opts.model`` / ``opts.weights``, with a head for the
    dataset's classes (``names``); the note says where the weights came from."""
    spec, state, source = _start_weights(opts)
    if opts.img_size:
        spec = spec.replace(size=check_input_size(opts.img_size))
    spec = with_classes(spec, len(names), names)
    torch.manual_seed(opts.seed)
    model = YOLOv2(spec)
    note = "random initialisation"
    if state is not None:
        own = model.state_dict()
        fit = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()
               if k in own and tuple(own[k].shape) == tuple(v.shape)}
        model.load_state_dict(fit, strict=False)
        skipped = [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]
        note = f"{len(fit)} tensors from {source}" + (
            f"; {len(skipped)} left random (e.g. {skipped[0]})" if skipped else "")
    return spec, model, note


def _start_weights(opts: TrainOptions):
    """(spec, state or None, where the state came from) of the options."""
    if opts.weights:
        if opts.weights.endswith(".weights") and opts.model and not opts.cfg:
            spec = load_spec(opts.model)
            _, state = read_weights(opts.weights, spec, partial=True)
            return spec, state, f"darknet {opts.weights}"
        loaded = read_model(opts.weights, opts.cfg)
        if loaded.state is None:
            raise UserError(f"{opts.weights}: a lowered plan cannot be trained; use the "
                            "checkpoint it came from")
        spec = load_spec(opts.model) if opts.model else loaded.spec
        return spec, loaded.state, opts.weights
    if opts.model:
        return load_spec(opts.model), None, None
    raise ParamError("model", "needed (a zoo name or spec YAML) unless weights are given")


def resumed_model(state: dict, path: str, seed: int) -> Tuple[ModelSpec, YOLOv2]:
    """The spec and model of the training state ``state`` read from ``path``."""
    spec = spec_from_dict(state["spec"], path)
    torch.manual_seed(seed)
    model = YOLOv2(spec)
    model.load_state_dict(state["model"])
    return spec, model


def fit_anchors(spec: ModelSpec, dataset, seed: int) -> ModelSpec:
    """The spec with k-means (1 - IoU) anchors of the dataset's boxes at the spec's size."""
    try:
        anchors, _ = kmeans_anchors(dataset_box_sizes(dataset, spec.size), spec.region.num, seed)
    except ParamError as e:
        raise ParamError("anchors", e.message, value="auto") from None
    region = copy.deepcopy(spec.region)
    region.anchors = [(round(float(w), 4), round(float(h), 4)) for w, h in anchors]
    return spec.replace(region=region)
