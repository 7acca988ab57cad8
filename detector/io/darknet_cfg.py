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

from ..errors import ConfigError, UserError
from ..models.params import conv_params
from ..models.spec import (ACTIVATIONS, Conv, FastDSC, MaxPool, ModelSpec, Region, Reorg, Route,
                           TrainSettings, validate)

MAX_SIZE = 4096                 # the largest input size anywhere (models.spec.check_input_size)
SECTIONS = ("net", "network", "convolutional", "conv", "maxpool", "max", "route", "reorg",
            "region")


class CfgSection:
    def __init__(self, name: str, line: int, path: str):
        self.name, self.line, self.path = name, line, path
        self.options: "OrderedDict[str, Tuple[str, int]]" = OrderedDict()
        self.used = set()

    def error(self, key: Optional[str], message: str) -> ConfigError:
        line = self.options[key][1] if key in self.options else self.line
        where = f"line {line} [{self.name}]" + (f" {key}" if key else "")
        return ConfigError(self.path, where, message)

    def raw(self, key: str) -> Optional[str]:
        self.used.add(key)
        return self.options[key][0] if key in self.options else None

    def int(self, key: str, default: Optional[int] = None, lo: Optional[int] = None) -> int:
        v = self.raw(key)
        if v is None:
            if default is None:
                raise self.error(None, f"missing required key '{key}'")
            if lo is not None and default < lo:
                raise self.error(None, f"missing key '{key}': darknet's default {default} is "
                                       f"not supported; allowed: >= {lo}")
            return default
        try:
            out = int(v)
        except ValueError:
            raise self.error(key, f"expected an integer, got {v!r}") from None
        if lo is not None and out < lo:
            raise self.error(key, f"{out} is too small; allowed: >= {lo}")
        return out

    def float(self, key: str, default: float, lo: Optional[float] = None,
              hi: Optional[float] = None) -> float:
        v = self.raw(key)
        if v is None:
            return default
        try:
            out = float(v)
        except ValueError:
            raise self.error(key, f"expected a number, got {v!r}") from None
        if out != out or (lo is not None and out < lo) or (hi is not None and out > hi):
            raise self.error(key, f"{v} is out of range [{lo}, {hi}]")
        return out

    def floats(self, key: str) -> List[float]:
        v = self.raw(key)
        if v is None:
            return []
        try:
            return [float(x) for x in v.split(",") if x != ""]
        except ValueError:
            raise self.error(key, f"expected comma-separated numbers, got {v!r}") from None

    def ints(self, key: str) -> List[int]:
        v = self.raw(key)
        if v is None:
            return []
        try:
            return [int(x) for x in v.split(",") if x != ""]
        except ValueError:
            raise self.error(key, f"expected comma-separated integers, got {v!r}") from None

    def reject(self, keys, why: str) -> None:
        """Error if any of ``keys`` is set to something other than 0."""
        for k in keys:
            v = self.raw(k)
            if v is not None and v not in ("0", "0.0"):
                raise self.error(k, f"is not supported ({why})")


def read_cfg(path: str) -> List[CfgSection]:
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such cfg file")
    try:
        with open(path, "rb") as f:
            data = f.read(4 * 1024 * 1024 + 1)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if len(data) > 4 * 1024 * 1024:
        raise ConfigError(path, None, "larger than 4 MiB: not a darknet cfg")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(path, None, "not a text file (not UTF-8)") from None
    sections: List[CfgSection] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = "".join(line.split())          # darknet's strip(): every whitespace char
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(path, f"line {n}", f"malformed section header {line!r}")
            name = line[1:-1].lower()
            if name not in SECTIONS:
                raise ConfigError(path, f"line {n}", f"unknown section [{name}]; supported: "
                                  "[net], [convolutional], [maxpool], [route], [reorg], [region]")
            sections.append(CfgSection(name, n, path))
            continue
        if "=" not in line:
            raise ConfigError(path, f"line {n}", f"expected key=value, got {line!r}")
        if not sections:
            raise ConfigError(path, f"line {n}", "option before the first [section]")
        k, v = line.split("=", 1)
        sections[-1].options[k] = (v, n)
    if not sections:
        raise ConfigError(path, None, "no sections: not a darknet cfg")
    return sections


def spec_from_cfg(path: str, names: Optional[List[str]] = None) -> ModelSpec:
    """Read a darknet cfg as a ModelSpec (name = the file's stem)."""
    sections = read_cfg(path)
    net = sections[0]
    if net.name not in ("net", "network"):
        raise net.error(None, "the first section must be [net]")
    width, height = net.int("width", 416, lo=32), net.int("height", 416, lo=32)
    for key, v in (("width", width), ("height", height)):
        if v > MAX_SIZE:          # refused before any buffer of that size exists
            raise net.error(key, f"{v} is too large; allowed: a multiple of 32 between 32 "
                            f"and {MAX_SIZE}")
    if width != height or width % 32:
        raise net.error("width", f"width={width} height={height}: need a square input that "
                        "is a multiple of 32")
    d = TrainSettings()
    steps = net.ints("steps") or d.steps
    scales = net.floats("scales") or d.scales
    if len(steps) != len(scales):
        raise net.error("scales", f"{len(scales)} scales for {len(steps)} steps")
    train = TrainSettings(batch=net.int("batch", d.batch, lo=1), momentum=net.float("momentum", d.momentum, 0, 1),
                          decay=net.float("decay", d.decay, 0), learning_rate=net.float("learning_rate", d.learning_rate, 0),
                          burn_in=net.int("burn_in", 0, lo=0), max_batches=net.int("max_batches", d.max_batches, lo=1),
                          steps=steps, scales=scales, saturation=net.float("saturation", d.saturation, 1),
                          exposure=net.float("exposure", d.exposure, 1), hue=net.float("hue", d.hue, 0, 0.5))
    layers = []
    region = None
    classes = 0
    for i, s in enumerate(sections[1:]):
        if region is not None:
            raise s.error(None, "[region] must be the last section")
        if s.name in ("convolutional", "conv"):
            s.reject(("binary", "xnor", "dot", "flipped", "dilation", "stride_x", "stride_y",
                      "antialiasing", "share_index"), "FastDSC-YOLO reads plain convolutions")
            filters, size = s.int("filters", 1, lo=1), s.int("size", 1, lo=1)
            stride, groups = s.int("stride", 1, lo=1), s.int("groups", 1, lo=1)
            padding = size // 2 if s.int("pad", 0) else s.int("padding", 0, lo=0)
            bn = bool(s.int("batch_normalize", 0))
            act = (s.raw("activation") or "logistic").lower()
            if act not in ACTIVATIONS:
                raise s.error("activation", f"{act!r} is not supported; allowed values: "
                              + ", ".join(ACTIVATIONS))
            layers.append(Conv(filters=filters, size=size, stride=stride,
                               pad=None if padding == size // 2 else padding,
                               groups=groups, bn=bn, act=act))
        elif s.name in ("maxpool", "max"):
            s.reject(("stride_x", "stride_y", "maxpool_depth", "antialiasing"),
                     "FastDSC-YOLO reads plain maxpool layers")
            stride = s.int("stride", 1, lo=1)
            size = s.int("size", stride, lo=1)
            padding = s.int("padding", size - 1, lo=0)
            layers.append(MaxPool(size=size, stride=stride,
                                  padding=None if padding == size - 1 else padding))
        elif s.name == "route":
            s.reject(("groups", "group_id"), "grouped routes are a YOLOv4 feature")
            idx = s.ints("layers")
            if not idx:
                raise s.error("layers", "missing or empty")
            layers.append(Route(layers=idx))
        elif s.name == "reorg":
            s.reject(("reverse", "flatten", "extra"), "only darknet's plain reorg is supported")
            layers.append(Reorg(stride=s.int("stride", 1, lo=2)))
        elif s.name == "region":
            s.reject(("tree", "map", "log", "sqrt"), "yolo9000 trees are not supported")
            if s.raw("softmax") not in (None, "1"):
                raise s.error("softmax", "must be 1 (softmax over classes)")
            if s.int("coords", 4) != 4:
                raise s.error("coords", "must be 4")
            anchors = s.floats("anchors")
            num = s.int("num", 1, lo=1)
            if len(anchors) != 2 * num:
                raise s.error("anchors", f"{len(anchors)} values for num={num} anchors "
                              f"(expected {2 * num})")
            if any(a <= 0 for a in anchors):
                raise s.error("anchors", "anchors must be > 0")
            classes = s.int("classes", 20, lo=1)
            region = Region(anchors=[(anchors[2 * k], anchors[2 * k + 1]) for k in range(num)],
                            bias_match=bool(s.int("bias_match", 0)),
                            jitter=s.float("jitter", 0.2, 0, 1),
                            rescore=bool(s.int("rescore", 0)),
                            object_scale=s.float("object_scale", 1.0, 0),
                            noobject_scale=s.float("noobject_scale", 1.0, 0),
                            class_scale=s.float("class_scale", 1.0, 0),
                            coord_scale=s.float("coord_scale", 1.0, 0),
                            thresh=s.float("thresh", 0.5, 0, 1), random=bool(s.int("random", 0)))
        else:
            raise s.error(None, "[net] may only be the first section")
    if region is None:
        raise ConfigError(path, None, "no [region] section: FastDSC-YOLO reads YOLOv2 cfgs")
    if names is not None and len(names) != classes:
        raise UserError(f"{len(names)} class names given but {path} has classes={classes}")
    spec = ModelSpec(name=os.path.splitext(os.path.basename(path))[0], layers=layers,
                     region=region, classes=classes, size=width,
                     channels=net.int("channels", 3, lo=1), names=names, train=train)
    validate(spec, path)
    return spec


# ---- writer ----------------------------------------------------------------------------

def darknet_sections(spec: ModelSpec) -> List[Tuple[str, Dict[str, str]]]:
    """The darknet sections (after [net]) of a spec; FastDSC blocks become two convs."""
    for i, layer in enumerate(spec.layers):
        if getattr(layer, "terms", None) is not None:
            raise UserError(f"layer {i} of {spec.name} has per-channel terms (a channel gather "
                            "before its depthwise conv), which a darknet cfg cannot express")
    convs: Dict[int, list] = {}
    for c in conv_params(spec):
        convs.setdefault(c.layer, []).append(c)
    out: List[Tuple[str, Dict[str, str]]] = []
    last_index: List[int] = []            # darknet index of each spec layer's output
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, (Conv, FastDSC)):
            for c in convs[i]:
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
                out.append(("convolutional", opts))
        elif isinstance(layer, MaxPool):
            opts = OrderedDict([("size", str(layer.size)), ("stride", str(layer.stride))])
            if layer.padding is not None:
                opts["padding"] = str(layer.padding)
            out.append(("maxpool", opts))
        elif isinstance(layer, Reorg):
            out.append(("reorg", OrderedDict([("stride", str(layer.stride))])))
        elif isinstance(layer, Route):
            here = len(out)
            refs = []
            for j in layer.layers:
                src = last_index[j if j >= 0 else i + j]
                refs.append(str(src - here) if j < 0 else str(src))
            out.append(("route", OrderedDict([("layers", ",".join(refs))])))
        last_index.append(len(out) - 1)
    r = spec.region
    anchors = ", ".join(f"{_num(w)},{_num(h)}" for w, h in r.anchors)
    out.append(("region", OrderedDict([
        ("anchors", anchors), ("bias_match", str(int(r.bias_match))),
        ("classes", str(spec.classes)), ("coords", "4"), ("num", str(r.num)), ("softmax", "1"),
        ("jitter", _num(r.jitter)), ("rescore", str(int(r.rescore))),
        ("object_scale", _num(r.object_scale)), ("noobject_scale", _num(r.noobject_scale)),
        ("class_scale", _num(r.class_scale)), ("coord_scale", _num(r.coord_scale)),
        ("absolute", "1"), ("thresh", _num(r.thresh)), ("random", str(int(r.random)))])))
    return out


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
    from .atomic import atomic_write_bytes
    atomic_write_bytes(path, cfg_text(spec).encode())
