"""Outputs: one URI grammar for every sink, the twin of the source grammar (sources.py).

    out.mp4, .avi, .mkv, .mov, .m4v   a video of the annotated frames (the source's fps)
    DIR/, an existing directory,      one annotated image per frame (image sources keep
      or a path without extension       their names)
    out.jpg, .png, ...                the annotated image of a single-image source
    dets.jsonl                        JSON Lines, one object per frame
    jsonl:PATH                        JSON Lines at PATH whatever its extension
    -  (or jsonl:-)                   JSON Lines on stdout
    mot:PATH                          tracks in the MOT Challenge text format (needs tracking)
    display://N                       a window (q or ESC quits); N numbers the windows
    http://HOST:PORT                  an MJPEG server (http://:PORT: host 127.0.0.1); the
                                        stream is at /stream.mjpg
    file://PATH                       PATH as above

``parse_sink`` turns the text into a ``SinkSpec`` without touching the file system beyond
looking at it; with the source it also checks that the output can take that source's frames
(an image file only for a single image, never the input video itself). ``open_sink`` opens
it: files are created and servers listen at once, so a bad place fails before the first
frame. ``requested_sinks`` gives the specs of a run's ``OutputOptions`` (URIs and shorthands).

Several sources: ``{name}`` in a path becomes each source's name (``source_list``), one output
per source (``per_source``). Without it, JSON Lines are shared (each line names its source)
and a window opens per source; a video, an image folder, a MOT file or an MJPEG server needs
one per source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .mjpeg import STREAM_PATH, MjpegServer, parse_serve
from .options import OutputOptions
from .sinks import (VIDEO_FOURCCS, ImageDirSink, ImageFileSink, JsonLinesSink, Label, MotSink,
                    Sink, VideoFileSink, WindowSink)
from .sources import IMAGE_EXTS, ImageSource, Source, uri_scheme

FRAME_KINDS = ("video", "images", "image")          # outputs of annotated frames (files)
FILE_KINDS = FRAME_KINDS + ("jsonl", "mot")
STDOUT = "-"
JSONL_PREFIX = "jsonl:"
MOT_PREFIX = "mot:"
NAME = "{name}"
EXPECTED_FRAMES = ("a video file .mp4/.avi/.mkv/.mov, an image file for one image, or a "
                   "directory ending in /")
EXPECTED = ("a video file .mp4/.avi/.mkv/.mov/.m4v, a directory ending in /, an image file for "
            "one image, a .jsonl file, jsonl:PATH, - (stdout), mot:PATH, display://N or "
            "http://HOST:PORT")


@dataclass(frozen=True)
class SinkSpec:
    """A parsed output: ``kind`` (video, images, image, jsonl, mot, display, mjpeg), ``target``
    (the file or folder, ``-`` for stdout, or the display number), ``host``/``port`` of an
    MJPEG server, and the ``label`` that names it in messages."""
    kind: str
    target: str = ""
    host: str = ""
    port: int = 0
    label: Label = Label("")

    @property
    def to_stdout(self) -> bool:
        return self.kind == "jsonl" and self.target == STDOUT


# ---- the grammar ----------------------------------------------------------------------------

def frames_path_kind(path: str) -> Optional[str]:
    """video, images (a folder) or image for a path of annotated frames; None otherwise."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_FOURCCS:
        return "video"
    if path.endswith(("/", os.sep)) or os.path.isdir(path) or not ext:
        return "images"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def frames_sink(path: str, label: Optional[Label] = None) -> SinkSpec:
    """A path for annotated frames: a video file, a folder of images, or an image file."""
    label = label or Label(path)
    kind = frames_path_kind(path)
    if kind is None:
        raise label.error(f"unknown output type ({EXPECTED_FRAMES})")
    return SinkSpec(kind, path, label=label)


def _path(path: str, label: Label) -> SinkSpec:
    if os.path.splitext(path)[1].lower() == ".jsonl":
        return SinkSpec("jsonl", path, label=label)
    if frames_path_kind(path) is None:
        raise label.error(f"unknown output type ({EXPECTED})")
    return frames_sink(path, label)


def _display(rest: str, label: Label) -> SinkSpec:
    if not rest.isdigit():
        raise label.error("expected display://N with a window number, e.g. display://0")
    return SinkSpec("display", str(int(rest)), label=label)


def _http(rest: str, label: Label) -> SinkSpec:
    address, slash, path = rest.partition("/")
    if slash and "/" + path not in ("/", STREAM_PATH):
        raise label.error(f"the MJPEG server has a fixed path ({STREAM_PATH}): give "
                          f"http://HOST:PORT")
    host, port = parse_serve(address, label)
    return SinkSpec("mjpeg", f"{host}:{port}", host=host, port=port, label=label)


def _file(rest: str, label: Label) -> SinkSpec:
    if not rest:
        raise label.error("expected file://PATH")
    return _path(rest, label)


# scheme -> parser(the text after "scheme://", label)
SCHEMES: Dict[str, Callable[[str, Label], SinkSpec]] = {
    "display": _display, "http": _http, "file": _file}


def parse_sink(uri: str, source: Optional[Source] = None,
               label: Optional[Label] = None) -> SinkSpec:
    """Output URI -> an unopened SinkSpec; a UserError naming ``label`` (default: the URI)
    for a bad one, or for one that cannot take ``source``'s frames."""
    label = label or Label(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise label.error(f"empty output: give {EXPECTED}")
    if uri == STDOUT:
        spec = SinkSpec("jsonl", STDOUT, label=label)
    elif uri.startswith(JSONL_PREFIX):
        spec = jsonl_sink(uri[len(JSONL_PREFIX):], label)
    elif uri.startswith(MOT_PREFIX):
        spec = mot_sink(uri[len(MOT_PREFIX):], label)
    else:
        scheme = uri_scheme(uri)
        if scheme is None:
            spec = _path(uri, label)
        elif scheme in SCHEMES:
            spec = SCHEMES[scheme](uri[len(scheme) + 3:], label)
        else:
            raise label.error(f"unsupported output scheme {scheme}:// (expected display://, "
                              f"http://, file:// or jsonl:)")
    if source is not None:
        check_sink(spec, source)
    return spec


def jsonl_sink(path: str, label: Optional[Label] = None) -> SinkSpec:
    """JSON Lines at ``path`` whatever its extension (``-``: stdout)."""
    label = label or Label(path)
    if not path:
        raise label.error("expected a path for the JSON Lines (or - for stdout)")
    return SinkSpec("jsonl", path, label=label)


def mot_sink(path: str, label: Optional[Label] = None) -> SinkSpec:
    """Tracks in the MOT Challenge text format at ``path``."""
    label = label or Label(path)
    if not path or path == STDOUT:
        raise label.error("expected a file path for the MOT results")
    return SinkSpec("mot", path, label=label)


def _input_video(source: Source) -> Optional[str]:
    """The file a video-file source reads (None for other sources)."""
    target = getattr(source, "target", None)
    return target if source.kind == "video" and isinstance(target, str) else None


def check_sink(spec: SinkSpec, source: Source) -> None:
    """A UserError when the output cannot take ``source``'s frames."""
    if spec.kind == "image" and source.kind != "image":
        raise spec.label.error("an image file is only for a single-image source; give a "
                               "video file (.mp4, .avi) or a directory")
    read = _input_video(source)
    if spec.kind in FILE_KINDS and read is not None and \
            os.path.realpath(spec.target) == os.path.realpath(read):
        raise spec.label.error("that is the input video")


def check_distinct(specs: List[SinkSpec]) -> None:
    """A UserError for two outputs that would write the same file, stdout or window."""
    seen: Dict[str, SinkSpec] = {}
    for spec in specs:
        if spec.to_stdout or spec.kind == "display":
            key = f"{spec.kind}:{spec.target}"
        elif spec.kind in FILE_KINDS:
            key = "file:" + os.path.realpath(spec.target)
        else:
            continue
        if key in seen:
            what = "stdout" if spec.to_stdout else \
                "window" if spec.kind == "display" else "file"
            raise spec.label.error(f"another output writes the same {what}")
        seen[key] = spec


def requested_sinks(options: OutputOptions, source: Optional[Source] = None) -> List[SinkSpec]:
    """Every output ``options`` ask for, parsed and checked against ``source``, in the order
    json, save, serve, show, mot, then ``outputs``."""
    specs = []
    if options.json:
        specs.append(jsonl_sink(options.json, Label(options.json, "json")))
    if options.save:
        specs.append(frames_sink(options.save, Label(options.save, "save")))
    if options.serve:
        host, port = parse_serve(options.serve)
        specs.append(SinkSpec("mjpeg", f"{host}:{port}", host=host, port=port,
                              label=Label(f"{host}:{port}", "serve")))
    if options.show:
        specs.append(SinkSpec("display", "0", label=Label("", "show")))
    if options.mot:
        specs.append(mot_sink(options.mot, Label(options.mot, "mot")))
    specs += [parse_sink(uri, None, Label(uri, "outputs")) for uri in options.outputs]
    if source is not None:
        for spec in specs:
            check_sink(spec, source)
    check_distinct(specs)
    return specs


# ---- several sources ---------------------------------------------------------------------------

def for_source(spec: SinkSpec, name: str) -> SinkSpec:
    """``spec`` with ``{name}`` in its target (and label) replaced by a source's name."""
    if NAME not in spec.target:
        return spec
    target = spec.target.replace(NAME, name)
    return replace(spec, target=target, label=spec.label._replace(value=target))


def per_source(specs: Sequence[SinkSpec], sources: Sequence[Source], names: Sequence[str]
               ) -> Tuple[List[SinkSpec], List[List[SinkSpec]]]:
    """The outputs of a run over ``sources`` (named ``names``): (shared by every source, one
    list per source). A target with ``{name}`` gives one output per source; without it, JSON
    Lines are shared and a window opens per source, while the other outputs are a UserError
    when there is more than one source. Checked against each source and for clashes."""
    many = len(sources) > 1
    shared: List[SinkSpec] = []
    each: List[List[SinkSpec]] = [[] for _ in sources]
    for spec in specs:
        if NAME in spec.target or not many or spec.kind == "display":
            for mine, name in zip(each, names):
                mine.append(for_source(spec, name))
        elif spec.kind == "jsonl":
            shared.append(spec)
        elif spec.kind == "mjpeg":
            raise spec.label.error("an MJPEG server shows one source; with several sources "
                                   "serve one of them, or write a video per source")
        else:
            raise spec.label.error(f"with several sources, put {NAME} in the path (one output "
                                   f"per source, e.g. out-{NAME}.mp4)")
    for source, mine in zip(sources, each):
        for spec in shared + mine:
            check_sink(spec, source)
    check_distinct(shared + [s for mine in each for s in mine if s.kind != "display"])
    for mine in each:
        check_distinct([s for s in mine if s.kind == "display"])
    return shared, each


# ---- opening --------------------------------------------------------------------------------

def window_title(spec: SinkSpec, source: Optional[Source]) -> str:
    title = f"detector: {source.text}" if source is not None else "detector"
    return title if spec.target in ("", "0") else f"{title} ({spec.target})"


def _open_display(spec: SinkSpec, source: Optional[Source], max_clients: int) -> Sink:
    why = WindowSink.unavailable()
    if why:
        raise spec.label.error(f"cannot open a window: {why}")
    return WindowSink(window_title(spec, source))


OPENERS: Dict[str, Callable[[SinkSpec, Optional[Source], int], Sink]] = {
    "video": lambda s, src, _: VideoFileSink(s.target, src.fps if src else None, s.label),
    "images": lambda s, src, _: ImageDirSink(s.target, isinstance(src, ImageSource), s.label),
    "image": lambda s, src, _: ImageFileSink(s.target, s.label),
    "jsonl": lambda s, src, _: JsonLinesSink(s.target, s.label),
    "mot": lambda s, src, _: MotSink(s.target, s.label),
    "mjpeg": lambda s, src, n: MjpegServer(s.host, s.port, n, label=s.label),
    "display": _open_display,
}


def open_sink(uri: Union[str, SinkSpec], source: Optional[Source] = None, *,
              max_clients: int = 4) -> Sink:
    """Open one output (a URI, or a spec from ``parse_sink``): files are created, servers
    listen. ``source`` (best opened) gives a video its frame rate, an image folder the image
    names, a window its title, and is checked against the output. A UserError at once when
    the output cannot be opened."""
    spec = uri if isinstance(uri, SinkSpec) else parse_sink(uri, source)
    if isinstance(uri, SinkSpec) and source is not None:
        check_sink(spec, source)
    return OPENERS[spec.kind](spec, source, max_clients)
