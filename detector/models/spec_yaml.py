"""Reading model specs: zoo names (``detector/models/specs/<name>.yaml``), spec YAML files,
and spec mappings (from YAML or checkpoint metadata), validated with errors that name the
file and the key. The format is described in :mod:`detector.models.spec`."""
from __future__ import annotations

import os
from typing import List, Optional

from ..config import Section, load_yaml
from ..errors import UserError
from ..wordtree import TreeError, WordTree
from .checks import MAX_SIZE, MIN_SIZE, validate
from .spec import (ACTIVATIONS, COST_KINDS, NETWORK_STRIDE, RESIZES, AvgPool, Conv, Cost, Dropout,
                   FastDSC, Layer, MaxPool, ModelSpec, Region, Reorg, Route, Softmax,
                   TrainSettings)

SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs")


def zoo_names() -> List[str]:
    return sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith(".yaml"))


def is_zoo_name(name: str) -> bool:
    return isinstance(name, str) and os.sep not in name and name in zoo_names()


def load_spec(name_or_path: str) -> ModelSpec:
    """A zoo name (``yolov2-voc-fastdsc``) or the path of a spec YAML."""
    if is_zoo_name(name_or_path):
        path = os.path.join(SPEC_DIR, name_or_path + ".yaml")
    elif name_or_path.endswith((".yaml", ".yml")):
        path = name_or_path
    else:
        raise UserError(f"unknown model {name_or_path!r}: give a zoo name "
                        f"({', '.join(zoo_names())}) or a spec .yaml path")
    return spec_from_dict(load_yaml(path), path)


def spec_from_dict(data: dict, path: Optional[str] = None) -> ModelSpec:
    """Validate a spec mapping (from YAML or checkpoint metadata) into a ModelSpec."""
    top = Section(data, path)
    top.reject_unknown(["name", "input", "classes", "names", "layers", "region", "train"])
    inp = top.section("input", {})
    inp.reject_unknown(["size", "channels", "resize"])
    size = inp.int("size", 416, lo=MIN_SIZE, hi=MAX_SIZE)
    if size % NETWORK_STRIDE:
        raise inp.error("size", f"{size} is not a multiple of {NETWORK_STRIDE}")
    classes = top.int("classes", lo=1, hi=100000)
    names = _read_names(top, classes)
    layers_raw = top.list("layers")
    if not layers_raw:
        raise top.error("layers", "expected at least one layer")
    layers = [_read_layer(Section(raw, path, f"layers[{i}]")) for i, raw in enumerate(layers_raw)]
    region = _read_region(top.section("region")) if top.data.get("region") is not None else None
    train = _read_train(top.section("train", {}))
    spec = ModelSpec(name=top.str("name", os.path.splitext(os.path.basename(path or "model"))[0]),
                     layers=layers, region=region, classes=classes, size=size,
                     channels=inp.int("channels", 3, lo=1, hi=4), names=names, train=train,
                     resize=inp.str("resize", "opencv", choices=RESIZES))
    validate(spec, path)
    return spec


def _read_names(top: Section, classes: int) -> Optional[List[str]]:
    names = top.list("names", None)
    if names is not None:
        if len(names) != classes or not all(isinstance(n, str) and n for n in names):
            raise top.error("names", f"expected {classes} class names (one per class), "
                            f"got {len(names)}")
    return names


# ---- layers ----------------------------------------------------------------------------

def _read_conv(s: Section) -> Conv:
    s.reject_unknown(["type", "filters", "size", "stride", "pad", "groups", "bn", "act"])
    size = s.int("size", 3, lo=1, hi=15)
    return Conv(filters=s.int("filters", lo=1, hi=65536), size=size,
                stride=s.int("stride", 1, lo=1, hi=8), pad=s.int("pad", None, lo=0, hi=size),
                groups=s.int("groups", 1, lo=1), bn=s.bool("bn", True),
                act=s.str("act", "leaky", choices=ACTIVATIONS))


def _read_fastdsc(s: Section) -> FastDSC:
    s.reject_unknown(["type", "filters", "size", "stride", "multiplier", "order", "mid_bn",
                      "mid_act", "bn", "act", "terms"])
    size = s.int("size", 3, lo=1, hi=15)
    order = s.str("order", "dw_pw", choices=["dw_pw", "pw_dw"])
    terms = s.list("terms", None)
    if terms is not None:
        if order != "dw_pw":
            raise s.error("terms", "per-channel terms need order dw_pw")
        if not terms or not all(isinstance(t, int) and not isinstance(t, bool)
                                and 0 <= t <= size * size for t in terms) or sum(terms) < 1:
            raise s.error("terms", f"expected a list of integers from 0 to {size * size} "
                          "(one per input channel), at least one of them positive")
    return FastDSC(filters=s.int("filters", lo=1, hi=65536), size=size,
                   stride=s.int("stride", 1, lo=1, hi=8),
                   multiplier=s.int("multiplier", 1, lo=1, hi=225), order=order,
                   mid_bn=s.bool("mid_bn", True),
                   mid_act=s.str("mid_act", "leaky", choices=ACTIVATIONS),
                   bn=s.bool("bn", True), act=s.str("act", "leaky", choices=ACTIVATIONS),
                   terms=None if terms is None else [int(t) for t in terms])


def _read_maxpool(s: Section) -> MaxPool:
    s.reject_unknown(["type", "size", "stride", "padding"])
    size = s.int("size", 2, lo=1, hi=16)
    return MaxPool(size=size, stride=s.int("stride", 2, lo=1, hi=16),
                   padding=s.int("padding", None, lo=0, hi=2 * size))


def _read_route(s: Section) -> Route:
    s.reject_unknown(["type", "layers"])
    idx = s.list("layers")
    if not idx or not all(isinstance(j, int) and not isinstance(j, bool) for j in idx):
        raise s.error("layers", "expected a non-empty list of layer indices")
    return Route(layers=list(idx))


def _read_reorg(s: Section) -> Reorg:
    s.reject_unknown(["type", "stride"])
    return Reorg(stride=s.int("stride", 2, lo=2, hi=8))


def _read_dropout(s: Section) -> Dropout:
    s.reject_unknown(["type", "probability"])
    return Dropout(probability=s.float("probability", 0.5, 0, 0.999))


def _read_avgpool(s: Section) -> AvgPool:
    s.reject_unknown(["type"])
    return AvgPool()


def _read_softmax(s: Section) -> Softmax:
    s.reject_unknown(["type", "groups", "temperature"])
    return Softmax(groups=s.int("groups", 1, lo=1), temperature=s.float("temperature", 1.0, 1e-6))


def _read_cost(s: Section) -> Cost:
    s.reject_unknown(["type", "kind", "scale"])
    return Cost(kind=s.str("kind", "sse", choices=COST_KINDS), scale=s.float("scale", 1.0))


# Layer ``type`` -> reader of its keys.
LAYER_READERS = {"conv": _read_conv, "fastdsc": _read_fastdsc, "maxpool": _read_maxpool,
                 "route": _read_route, "reorg": _read_reorg, "dropout": _read_dropout,
                 "avgpool": _read_avgpool, "softmax": _read_softmax, "cost": _read_cost}


def _read_layer(s: Section) -> Layer:
    return LAYER_READERS[s.str("type", choices=list(LAYER_READERS))](s)


# ---- region and training settings ------------------------------------------------------

def _read_region(reg: Section) -> Region:
    reg.reject_unknown([f for f in Region.__dataclass_fields__])
    anchors = reg.list("anchors")
    if not anchors or not all(isinstance(a, (list, tuple)) and len(a) == 2
                              and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                      and v > 0 for v in a) for a in anchors):
        raise reg.error("anchors", "expected a list of [width, height] pairs > 0 (grid units)")
    return Region(anchors=[(float(a[0]), float(a[1])) for a in anchors],
                  bias_match=reg.bool("bias_match", True), jitter=reg.float("jitter", 0.2, 0, 1),
                  rescore=reg.bool("rescore", True),
                  object_scale=reg.float("object_scale", 5.0, 0),
                  noobject_scale=reg.float("noobject_scale", 1.0, 0),
                  class_scale=reg.float("class_scale", 1.0, 0),
                  coord_scale=reg.float("coord_scale", 1.0, 0),
                  thresh=reg.float("thresh", 0.6, 0, 1), random=reg.bool("random", True),
                  tree=_read_tree(reg), map=_read_map(reg))


def _read_tree(reg: Section):
    """``tree: {names: [...], parents: [...]}`` (a WordTree), or None."""
    if reg.data.get("tree") is None:
        return None
    t = reg.section("tree")
    t.reject_unknown(["names", "parents"])
    names, parents = t.list("names"), t.list("parents")
    if not all(isinstance(n, str) and n and not n.isspace() for n in names):
        raise t.error("names", "expected a list of non-empty class names")
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parents):
        raise t.error("parents", "expected a list of integers (-1 for a root)")
    try:
        return WordTree(names, parents)
    except TreeError as e:
        raise t.error("parents", f"class {e.line}: {e.what}" if e.line else e.what) from None


def _read_map(reg: Section):
    m = reg.list("map", None)
    if m is not None and not all(isinstance(v, int) and not isinstance(v, bool) for v in m):
        raise reg.error("map", "expected a list of tree class indices")
    return m


def _read_train(tr: Section) -> TrainSettings:
    tr.reject_unknown([f for f in TrainSettings.__dataclass_fields__])
    d = TrainSettings()
    steps = tr.list("steps", d.steps)
    scales = tr.list("scales", d.scales)
    if len(steps) != len(scales):
        raise tr.error("scales", f"expected one scale per step ({len(steps)}), got {len(scales)}")
    return TrainSettings(
        batch=tr.int("batch", d.batch, lo=1), momentum=tr.float("momentum", d.momentum, 0, 1),
        decay=tr.float("decay", d.decay, 0),
        learning_rate=tr.float("learning_rate", d.learning_rate, 0),
        burn_in=tr.int("burn_in", d.burn_in, lo=0),
        max_batches=tr.int("max_batches", d.max_batches, lo=1),
        steps=[int(x) for x in steps], scales=[float(x) for x in scales],
        saturation=tr.float("saturation", d.saturation, 0),
        exposure=tr.float("exposure", d.exposure, 0), hue=tr.float("hue", d.hue, 0, 0.5))

