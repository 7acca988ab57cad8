"""Darknet ``.cfg`` files: reader (-> ModelSpec) and writer (ModelSpec -> cfg text).

The reader follows darknet's ``read_cfg``: all whitespace is removed from each line, lines
starting with ``#`` or ``;`` are comments, ``[name]`` opens a section, other lines are
``key=value``. It accepts the layer types a YOLOv2 uses ([net], [convolutional], [maxpool],
[route], [reorg], [region]) with darknet's defaults, and rejects anything it cannot compute
exactly (other sections, other activations, binary/xnor convs, yolo9000 trees) with an error
naming the file, line and key.

The writer expands a FastDSC block into darknet's two convolutions (a grouped
``[convolutional]`` with ``groups`` and a 1x1 one) and renumbers routes, so darknet itself can
run our models.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from ..config import Section
from ..errors import ConfigError, UserError
from ..models.checks import MAX_SIZE, validate
from ..models.params import ConvParams, conv_params
from ..models.spec import (ACTIVATIONS, NETWORK_STRIDE, Conv, MaxPool, ModelSpec, Region, Reorg,
                           Route, TrainSettings)
from .atomic import atomic_write_bytes

NET_NAMES = ("net", "network")
MAX_CFG_BYTES = 4 * 1024 * 1024


# ---- reader ----------------------------------------------------------------------------

def read_cfg(path: str) -> List[Section]:
    """The sections of a darknet cfg in file order; each is a :class:`~detector.config.Section`
    whose ``prefix`` is the section name and whose values are typed as YAML would type them
    (integers, numbers, comma lists of those, or text)."""
    text = _read_text(path)
    sections: List[Section] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = "".join(line.split())          # darknet's strip(): every whitespace char
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(path, f"line {n}", f"malformed section header {line!r}")
            name = line[1:-1].lower()
            if name not in NET_NAMES and name not in LAYER_READERS and name != "region":
                raise ConfigError(path, f"line {n}", f"unknown section [{name}]; supported: "
                                  "[net], [convolutional], [maxpool], [route], [reorg], [region]")
            sections.append(Section({}, path, name, lines={}, line=n))
            continue
        if "=" not in line:
            raise ConfigError(path, f"line {n}", f"expected key=value, got {line!r}")
        if not sections:
            raise ConfigError(path, f"line {n}", "option before the first [section]")
        k, v = line.split("=", 1)
        sections[-1].data[k] = _value(v)
        sections[-1].lines[k] = n
    if not sections:
        raise ConfigError(path, None, "no sections: not a darknet cfg")
    return sections


def _read_text(path: str) -> str:
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such cfg file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CFG_BYTES + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_CFG_BYTES:
        raise ConfigError(path, None, "larger than 4 MiB: not a darknet cfg")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not a text file (not UTF-8)") from None


def _value(text: str):
    """A cfg value typed as YAML would type it: comma-separated values become a list."""
    if "," in text:
        return [_scalar(x) for x in text.split(",") if x != ""]
    return _scalar(text)


def _scalar(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _numbers(s: Section, key: str, kind=float) -> list:
    """A comma-separated list of numbers (``kind`` int: integers); [] when absent."""
    v = s.data.get(key)
    if v is None or v == "":
        return []
    values = v if isinstance(v, list) else [v]
    types = (int,) if kind is int else (int, float)
    if not all(isinstance(x, types) for x in values):
        what = "integers" if kind is int else "numbers"
        raise s.error(key, f"expected comma-separated {what}, got {v!r}")
    return [kind(x) for x in values]


def _reject(s: Section, keys, why: str) -> None:
    """Error if any of ``keys`` is set to something other than 0."""
    for k in keys:
        v = s.data.get(k)
        if v is not None and v != 0:
            raise s.error(k, f"is not supported ({why})")


def _conv(s: Section) -> Conv:
    _reject(s, ("binary", "xnor", "dot", "flipped", "dilation", "stride_x", "stride_y",
                "antialiasing", "share_index"), "FastDSC-YOLO reads plain convolutions")
    filters, size = s.int("filters", 1, lo=1), s.int("size", 1, lo=1)
    stride, groups = s.int("stride", 1, lo=1), s.int("groups", 1, lo=1)
    padding = size // 2 if s.int("pad", 0) else s.int("padding", 0, lo=0)
    act = str(s.data.get("activation", "logistic")).lower()
    if act not in ACTIVATIONS:
        raise s.error("activation", f"{act!r} is not supported; allowed values: "
                      + ", ".join(ACTIVATIONS))
    return Conv(filters=filters, size=size, stride=stride,
                pad=None if padding == size // 2 else padding, groups=groups,
                bn=bool(s.int("batch_normalize", 0)), act=act)


def _maxpool(s: Section) -> MaxPool:
    _reject(s, ("stride_x", "stride_y", "maxpool_depth", "antialiasing"),
            "FastDSC-YOLO reads plain maxpool layers")
    stride = s.int("stride", 1, lo=1)
    size = s.int("size", stride, lo=1)
    padding = s.int("padding", size - 1, lo=0)
    return MaxPool(size=size, stride=stride, padding=None if padding == size - 1 else padding)


def _route(s: Section) -> Route:
    _reject(s, ("groups", "group_id"), "grouped routes are a YOLOv4 feature")
    idx = _numbers(s, "layers", int)
    if not idx:
        raise s.error("layers", "missing or empty")
    return Route(layers=idx)


def _reorg(s: Section) -> Reorg:
    _reject(s, ("reverse", "flatten", "extra"), "only darknet's plain reorg is supported")
    return Reorg(stride=s.int("stride", 1, lo=2))


# Darknet section name -> reader of that layer.
LAYER_READERS = {"convolutional": _conv, "conv": _conv, "maxpool": _maxpool, "max": _maxpool,
                 "route": _route, "reorg": _reorg}


def _region(s: Section) -> Tuple[Region, int]:
    """The region and the number of classes."""
    _reject(s, ("tree", "map", "log", "sqrt"), "yolo9000 trees are not supported")
    if s.data.get("softmax") not in (None, 1):
        raise s.error("softmax", "must be 1 (softmax over classes)")
    if s.int("coords", 4) != 4:
        raise s.error("coords", "must be 4")
    anchors = _numbers(s, "anchors")
    num = s.int("num", 1, lo=1)
    if len(anchors) != 2 * num:
        raise s.error("anchors", f"{len(anchors)} values for num={num} anchors "
                      f"(expected {2 * num})")
    if any(a <= 0 for a in anchors):
        raise s.error("anchors", "anchors must be > 0")
    classes = s.int("classes", 20, lo=1)
    region = Region(anchors=[(anchors[2 * k], anchors[2 * k + 1]) for k in range(num)],
                    bias_match=bool(s.int("bias_match", 0)), jitter=s.float("jitter", 0.2, 0, 1),
                    rescore=bool(s.int("rescore", 0)),
                    object_scale=s.float("object_scale", 1.0, 0),
                    noobject_scale=s.float("noobject_scale", 1.0, 0),
                    class_scale=s.float("class_scale", 1.0, 0),
                    coord_scale=s.float("coord_scale", 1.0, 0),
                    thresh=s.float("thresh", 0.5, 0, 1), random=bool(s.int("random", 0)))
    return region, classes


def _input_size(net: Section) -> int:
    width, height = net.int("width", 416, lo=32), net.int("height", 416, lo=32)
    for key, v in (("width", width), ("height", height)):
        if v > MAX_SIZE:          # refused before any buffer of that size exists
            raise net.error(key, f"{v} is too large; allowed: a multiple of {NETWORK_STRIDE} "
                            f"between 32 and {MAX_SIZE}")
    if width != height or width % NETWORK_STRIDE:
        raise net.error("width", f"width={width} height={height}: need a square input that "
                        f"is a multiple of {NETWORK_STRIDE}")
    return width


def _train_settings(net: Section) -> TrainSettings:
    d = TrainSettings()
    steps = _numbers(net, "steps", int) or d.steps
    scales = _numbers(net, "scales") or d.scales
    if len(steps) != len(scales):
        raise net.error("scales", f"{len(scales)} scales for {len(steps)} steps")
    return TrainSettings(
        batch=net.int("batch", d.batch, lo=1), momentum=net.float("momentum", d.momentum, 0, 1),
        decay=net.float("decay", d.decay, 0),
        learning_rate=net.float("learning_rate", d.learning_rate, 0),
        burn_in=net.int("burn_in", 0, lo=0), max_batches=net.int("max_batches", d.max_batches, lo=1),
        steps=steps, scales=scales, saturation=net.float("saturation", d.saturation, 1),
        exposure=net.float("exposure", d.exposure, 1), hue=net.float("hue", d.hue, 0, 0.5))


def spec_from_cfg(path: str, names: Optional[List[str]] = None) -> ModelSpec:
    """Read a darknet cfg as a ModelSpec (name = the file's stem)."""
    net, *rest = read_cfg(path)
    if net.prefix not in NET_NAMES:
        raise net.error(None, "the first section must be [net]")
    size, train = _input_size(net), _train_settings(net)
    layers = []
    region, classes = None, 0
    for s in rest:
        if region is not None:
            raise s.error(None, "[region] must be the last section")
        if s.prefix == "region":
            region, classes = _region(s)
        elif s.prefix in LAYER_READERS:
            layers.append(LAYER_READERS[s.prefix](s))
        else:
            raise s.error(None, "[net] may only be the first section")
    if region is None:
        raise ConfigError(path, None, "no [region] section: FastDSC-YOLO reads YOLOv2 cfgs")
    if names is not None and len(names) != classes:
        raise UserError(f"{len(names)} class names given but {path} has classes={classes}")
    spec = ModelSpec(name=os.path.splitext(os.path.basename(path))[0], layers=layers,
                     region=region, classes=classes, size=size,
                     channels=net.int("channels", 3, lo=1), names=names, train=train)
    validate(spec, path)
    return spec


# ---- writer ----------------------------------------------------------------------------

Sections = List[Tuple[str, Dict[str, str]]]


def _conv_options(c: ConvParams) -> Dict[str, str]:
    opts = OrderedDict()
    if c.bn:
        opts["batch_normalize"] = "1"
    opts["filters"] = str(c.cout)
    if c.groups != 1:
        opts["groups"] = str(c.groups)
    opts["size"] = str(c.size)
    opts["stride"] = str(c.stride)
    if c.padding == c.size // 2:
        opts["pad"] = "1"
    else:
        opts["padding"] = str(c.padding)
    opts["activation"] = c.act
    return opts


def _write_convs(layer, convs: List[ConvParams], route: List[int]) -> Sections:
    return [("convolutional", _conv_options(c)) for c in convs]


def _write_maxpool(layer: MaxPool, convs, route) -> Sections:
    opts = OrderedDict([("size", str(layer.size)), ("stride", str(layer.stride))])
    if layer.padding is not None:
        opts["padding"] = str(layer.padding)
    return [("maxpool", opts)]


def _write_reorg(layer: Reorg, convs, route) -> Sections:
    return [("reorg", OrderedDict([("stride", str(layer.stride))]))]


def _write_route(layer: Route, convs, route: List[int]) -> Sections:
    return [("route", OrderedDict([("layers", ",".join(str(r) for r in route))]))]


# Spec layer type -> its darknet sections, from the layer, its convolutions (conv_params) and,
# for a route, its references in darknet's numbering.
LAYER_WRITERS = {"conv": _write_convs, "fastdsc": _write_convs, "maxpool": _write_maxpool,
                 "reorg": _write_reorg, "route": _write_route}


def darknet_sections(spec: ModelSpec) -> Sections:
    """The darknet sections (after [net]) of a spec; FastDSC blocks become two convs."""
    for i, layer in enumerate(spec.layers):
        if getattr(layer, "terms", None) is not None:
            raise UserError(f"layer {i} of {spec.name} has per-channel terms (a channel gather "
                            "before its depthwise conv), which a darknet cfg cannot express")
    convs: Dict[int, List[ConvParams]] = {}
    for c in conv_params(spec):
        convs.setdefault(c.layer, []).append(c)
    out: Sections = []
    last_index: List[int] = []            # darknet index of each spec layer's output
    for i, layer in enumerate(spec.layers):
        # darknet numbers a route's relative references from the route itself
        route = [last_index[i + j] - len(out) if j < 0 else last_index[j]
                 for j in layer.layers] if isinstance(layer, Route) else []
        out += LAYER_WRITERS[layer.type](layer, convs.get(i, []), route)
        last_index.append(len(out) - 1)
    out.append(("region", _region_options(spec)))
    return out


def _region_options(spec: ModelSpec) -> Dict[str, str]:
    r = spec.region
    anchors = ", ".join(f"{_num(w)},{_num(h)}" for w, h in r.anchors)
    return OrderedDict([
        ("anchors", anchors), ("bias_match", str(int(r.bias_match))),
        ("classes", str(spec.classes)), ("coords", "4"), ("num", str(r.num)), ("softmax", "1"),
        ("jitter", _num(r.jitter)), ("rescore", str(int(r.rescore))),
        ("object_scale", _num(r.object_scale)), ("noobject_scale", _num(r.noobject_scale)),
        ("class_scale", _num(r.class_scale)), ("coord_scale", _num(r.coord_scale)),
        ("absolute", "1"), ("thresh", _num(r.thresh)), ("random", str(int(r.random)))])


def _num(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def cfg_text(spec: ModelSpec) -> str:
    t = spec.train
    lines = ["# Written by FastDSC-YOLO from model spec " + spec.name,
             "[net]", "batch=1", "subdivisions=1", f"width={spec.size}", f"height={spec.size}",
             f"channels={spec.channels}", f"momentum={_num(t.momentum)}", f"decay={_num(t.decay)}",
             "angle=0", f"saturation={_num(t.saturation)}", f"exposure={_num(t.exposure)}",
             f"hue={_num(t.hue)}", "", f"learning_rate={_num(t.learning_rate)}",
             f"burn_in={t.burn_in}", f"max_batches={t.max_batches}", "policy=steps",
             "steps=" + ",".join(str(s) for s in t.steps),
             "scales=" + ",".join(_num(s) for s in t.scales)]
    for name, opts in darknet_sections(spec):
        lines += ["", f"[{name}]"] + [f"{k}={v}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def write_cfg(spec: ModelSpec, path: str) -> None:
    atomic_write_bytes(path, cfg_text(spec).encode())
