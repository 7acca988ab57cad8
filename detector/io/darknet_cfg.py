"""Darknet ``.cfg`` files: reader (-> ModelSpec) and writer (ModelSpec -> cfg text).

The reader follows darknet's ``read_cfg``: all whitespace is removed from each line, lines
starting with ``#`` or ``;`` are comments, ``[name]`` opens a section, other lines are
``key=value``. It accepts the layer types of darknet's YOLOv2-era detectors and of its
Darknet-19 classifiers ([net], [convolutional], [maxpool], [route], [reorg], [dropout],
[avgpool], [softmax], [cost], [region], including YOLO9000's ``tree=`` and ``map=``) with
darknet's defaults, and rejects anything it cannot compute exactly (other sections, other
activations, binary/xnor convs) with an error naming the file, line and key. A cfg without
[region] is a classifier. Files named by ``tree=`` and ``map=`` are found as darknet finds
them (from the working directory), else beside the cfg (the path, then its file name).

The writer expands a FastDSC block into darknet's two convolutions (a grouped
``[convolutional]`` with ``groups`` and a 1x1 one) and renumbers routes, so darknet itself can
run our models; ``write_cfg`` writes a region's tree and map beside the cfg.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

from ..config import Section
from ..errors import ConfigError, UserError
from ..models.checks import MAX_SIZE, validate
from ..models.params import ConvParams, conv_params
from ..models.spec import (ACTIVATIONS, COST_KINDS, NETWORK_STRIDE, AvgPool, Conv, Cost, Dropout,
                           MaxPool, ModelSpec, Region, Reorg, Route, Softmax, TrainSettings,
                           infer_shapes)
from ..wordtree import TreeError, WordTree, parse_tree
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
                                  "[net], [convolutional], [maxpool], [route], [reorg], "
                                  "[dropout], [avgpool], [softmax], [cost], [region]")
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


def _dropout(s: Section) -> Dropout:
    _reject(s, ("dropblock", "dropblock_size_abs", "dropblock_size_rel"),
            "DropBlock is a YOLOv4 feature")
    return Dropout(probability=s.float("probability", 0.5, 0, 0.999))


def _avgpool(s: Section) -> AvgPool:
    return AvgPool()


def _softmax(s: Section) -> Softmax:
    _reject(s, ("spatial",), "FastDSC-YOLO reads darknet's plain softmax layer")
    if s.data.get("tree") is not None:
        raise s.error("tree", "a softmax layer over a tree (darknet's 9k classifiers) is not "
                      "supported; a [region] with tree= is")
    return Softmax(groups=s.int("groups", 1, lo=1),
                   temperature=s.float("temperature", 1.0, 1e-6))


def _cost(s: Section) -> Cost:
    _reject(s, ("ratio", "thresh"), "FastDSC-YOLO reads darknet's plain cost layer")
    return Cost(kind=s.str("type", "sse", choices=COST_KINDS), scale=s.float("scale", 1.0))


# Darknet section name -> reader of that layer.
LAYER_READERS = {"convolutional": _conv, "conv": _conv, "maxpool": _maxpool, "max": _maxpool,
                 "route": _route, "reorg": _reorg, "dropout": _dropout, "avgpool": _avgpool,
                 "avg": _avgpool, "softmax": _softmax, "soft": _softmax, "cost": _cost}


def _side_file(s: Section, key: str) -> Optional[str]:
    """The path a region's ``tree=``/``map=`` names: as darknet opens it (from the working
    directory), else beside the cfg (the same relative path, then the file name alone)."""
    name = s.data.get(key)
    if name is None:
        return None
    name = str(name)
    here = os.path.dirname(os.path.abspath(s.path or "."))
    for cand in (name, os.path.join(here, name), os.path.join(here, os.path.basename(name))):
        if os.path.isfile(cand):
            return cand
    raise s.error(key, f"file {name} not found (looked in the working directory and beside "
                  "the cfg)")


def _read_side_text(s: Section, key: str, path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CFG_BYTES + 1)
        if len(data) > MAX_CFG_BYTES:
            raise s.error(key, f"{path} is larger than 4 MiB")
        return data.decode("utf-8")
    except OSError as e:
        raise s.error(key, f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise s.error(key, f"{path} is not a text file (not UTF-8)") from None


def read_tree_file(s: Section) -> Optional[WordTree]:
    """The WordTree of a region's ``tree=`` (None without one)."""
    path = _side_file(s, "tree")
    if path is None:
        return None
    try:
        return WordTree(*parse_tree(_read_side_text(s, "tree", path)))
    except TreeError as e:
        raise s.error("tree", f"{path}: {e}") from None


def read_map_file(s: Section) -> Optional[List[int]]:
    """Tree class indices of a region's ``map=``: one integer per line, as darknet's
    ``read_map`` reads them."""
    path = _side_file(s, "map")
    if path is None:
        return None
    out = []
    for n, line in enumerate(_read_side_text(s, "map", path).splitlines(), 1):
        try:
            out.append(int(line.strip()))
        except ValueError:
            raise s.error("map", f"{path} line {n}: expected an integer, got {line!r}") from None
    return out


def _region(s: Section) -> Tuple[Region, int]:
    """The region and the number of classes. ``log`` and ``sqrt`` are read and unused by
    darknet's region layer, as here."""
    _reject(s, ("background",), "a background class is not YOLOv2's region layer")
    tree = read_tree_file(s)
    if tree is None and s.data.get("softmax") not in (None, 1):
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
                    thresh=s.float("thresh", 0.5, 0, 1), random=bool(s.int("random", 0)),
                    tree=tree, map=read_map_file(s))
    if tree is not None and classes != tree.size:
        raise s.error("classes", f"classes={classes} but the tree has {tree.size} classes")
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
        steps=steps, scales=scales, saturation=net.float("saturation", d.saturation, 0),
        exposure=net.float("exposure", d.exposure, 0), hue=net.float("hue", d.hue, 0, 0.5))


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
    if not layers:
        raise ConfigError(path, None, "no layers after [net]")
    spec = ModelSpec(name=os.path.splitext(os.path.basename(path))[0], layers=layers,
                     region=region, classes=classes, size=size,
                     channels=net.int("channels", 3, lo=1), names=names, train=train,
                     resize="darknet")
    if region is None:                 # a classifier: its classes are its output's values
        c, h, w = infer_shapes(spec, size, size, path)[-1]
        spec.classes = c * h * w
    if names is not None and len(names) != spec.classes:
        raise UserError(f"{len(names)} class names given but {path} has classes={spec.classes}")
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


def _write_dropout(layer: Dropout, convs, route) -> Sections:
    return [("dropout", OrderedDict([("probability", _num(layer.probability))]))]


def _write_avgpool(layer: AvgPool, convs, route) -> Sections:
    return [("avgpool", OrderedDict())]


def _write_softmax(layer: Softmax, convs, route) -> Sections:
    opts = OrderedDict([("groups", str(layer.groups))])
    if layer.temperature != 1:
        opts["temperature"] = _num(layer.temperature)
    return [("softmax", opts)]


def _write_cost(layer: Cost, convs, route) -> Sections:
    opts = OrderedDict([("type", layer.kind)])
    if layer.scale != 1:
        opts["scale"] = _num(layer.scale)
    return [("cost", opts)]


# Spec layer type -> its darknet sections, from the layer, its convolutions (conv_params) and,
# for a route, its references in darknet's numbering.
LAYER_WRITERS = {"conv": _write_convs, "fastdsc": _write_convs, "maxpool": _write_maxpool,
                 "reorg": _write_reorg, "route": _write_route, "dropout": _write_dropout,
                 "avgpool": _write_avgpool, "softmax": _write_softmax, "cost": _write_cost}


def darknet_sections(spec: ModelSpec, tree_file: Optional[str] = None,
                     map_file: Optional[str] = None) -> Sections:
    """The darknet sections (after [net]) of a spec; FastDSC blocks become two convs. A tree
    and a map are named by ``tree_file``/``map_file`` (default ``<spec name>.tree``/``.map``)."""
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
    if spec.region is not None:
        out.append(("region", _region_options(spec, tree_file or f"{spec.name}.tree",
                                              map_file or f"{spec.name}.map")))
    return out


def _region_options(spec: ModelSpec, tree_file: str, map_file: str) -> Dict[str, str]:
    r = spec.region
    anchors = ", ".join(f"{_num(w)},{_num(h)}" for w, h in r.anchors)
    opts = OrderedDict([
        ("anchors", anchors), ("bias_match", str(int(r.bias_match))),
        ("classes", str(spec.classes)), ("coords", "4"), ("num", str(r.num)), ("softmax", "1"),
        ("jitter", _num(r.jitter)), ("rescore", str(int(r.rescore))),
        ("object_scale", _num(r.object_scale)), ("noobject_scale", _num(r.noobject_scale)),
        ("class_scale", _num(r.class_scale)), ("coord_scale", _num(r.coord_scale)),
        ("absolute", "1"), ("thresh", _num(r.thresh)), ("random", str(int(r.random)))])
    if r.tree is not None:
        opts["tree"] = tree_file
    if r.map is not None:
        opts["map"] = map_file
    return opts


def tree_text(tree: WordTree) -> str:
    """A tree file as darknet's ``9k.tree``: ``<name> <parent>`` per line."""
    return "".join(f"{n} {p}\n" for n, p in zip(tree.names, tree.parents()))


def map_text(mapping: List[int]) -> str:
    return "".join(f"{int(m)}\n" for m in mapping)


def _num(v: float) -> str:
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def cfg_text(spec: ModelSpec, tree_file: Optional[str] = None,
             map_file: Optional[str] = None) -> str:
    """The cfg of ``spec``; a region's tree and map are named ``tree_file``/``map_file``."""
    t = spec.train
    lines = ["# Written by FastDSC-YOLO from model spec " + spec.name,
             "[net]", "batch=1", "subdivisions=1", f"width={spec.size}", f"height={spec.size}",
             f"channels={spec.channels}", f"momentum={_num(t.momentum)}", f"decay={_num(t.decay)}",
             "angle=0", f"saturation={_num(t.saturation)}", f"exposure={_num(t.exposure)}",
             f"hue={_num(t.hue)}", "", f"learning_rate={_num(t.learning_rate)}",
             f"burn_in={t.burn_in}", f"max_batches={t.max_batches}", "policy=steps",
             "steps=" + ",".join(str(s) for s in t.steps),
             "scales=" + ",".join(_num(s) for s in t.scales)]
    for name, opts in darknet_sections(spec, tree_file, map_file):
        lines += ["", f"[{name}]"] + [f"{k}={v}" for k, v in opts.items()]
    return "\n".join(lines) + "\n"


def write_cfg(spec: ModelSpec, path: str) -> List[str]:
    """Write the cfg, and a region's tree (``<stem>.tree``) and map (``<stem>.map``) beside
    it, named in the cfg by file name (darknet finds them when run from that folder; this
    reader finds them beside the cfg). Returns the paths written."""
    stem = os.path.splitext(path)[0]
    tree, mapping = spec.tree, (spec.region.map if spec.region else None)
    written = []
    if tree is not None:
        atomic_write_bytes(stem + ".tree", tree_text(tree).encode())
        written.append(stem + ".tree")
    if mapping is not None:
        atomic_write_bytes(stem + ".map", map_text(mapping).encode())
        written.append(stem + ".map")
    atomic_write_bytes(path, cfg_text(spec, os.path.basename(stem + ".tree"),
                                      os.path.basename(stem + ".map")).encode())
    return [path] + written
