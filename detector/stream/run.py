"""``detector detect``: source -> pipeline -> sinks, for the command line.

Output: one line per frame on stdout (unless ``--quiet``, or ``--json -`` which puts the JSON
Lines there); for files and folders a progress bar on stderr when stdout is a terminal, else
the summary at the end; notes, warnings and the final statistics on stderr.

Exit code 0 at the end of the stream, at ``--max-frames`` or when the window is closed; 130
after SIGINT (Ctrl-C) and 143 after SIGTERM, both after a clean shutdown (sinks flushed and
closed). A second signal aborts.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import List

from ..errors import UserError
from .pipeline import Pipeline
from .sinks import (ImageDirSink, ImageFileSink, JsonLinesSink, MjpegServer, Sink, VideoFileSink,
                    WindowSink, ensure_parent_dir, is_image_file_path, is_video_path,
                    parse_serve)
from .sources import ImageSource, Source, SourceOptions, open_source, parse_source

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
MAX_LISTED = 6


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def source_options(args) -> SourceOptions:
    live = getattr(args, "live", "auto") or "auto"
    return SourceOptions(width=getattr(args, "input_width", None),
                         height=getattr(args, "input_height", None),
                         rate=getattr(args, "input_rate", None),
                         flip=getattr(args, "input_flip", None) or "none",
                         sensor_mode=getattr(args, "sensor_mode", None),
                         live=None if live == "auto" else live == "yes")


def check_source(args) -> Source:
    """Parse SOURCE without opening it (the CLI calls this before loading the model)."""
    return parse_source(args.source, source_options(args), warn)


class ConsoleSink(Sink):
    """Per-frame lines on stdout and, for files on a terminal, a tqdm progress bar."""

    def __init__(self, source: Source, lines: bool, bar: bool):
        self.lines = lines
        self.bar = None
        self.images = isinstance(source, ImageSource)
        if bar:
            from tqdm import tqdm
            self.bar = tqdm(total=source.length, unit="frame", file=sys.stderr,
                            dynamic_ncols=True, leave=True)

    def write(self, frame) -> None:
        if self.lines:
            dets = frame.detections
            head = frame.origin if self.images else f"frame {frame.index}"
            listed = ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:MAX_LISTED])
            if len(dets) > MAX_LISTED:
                listed += f", ... (+{len(dets) - MAX_LISTED})"
            latency = (time.perf_counter() - frame.t_capture) * 1000.0
            line = (f"{head}: {len(dets)} object{'s' if len(dets) != 1 else ''}"
                    f"{': ' + listed if dets else ''} "
                    f"[network {frame.times.get('network', 0) * 1000:.1f} ms, "
                    f"latency {latency:.1f} ms]")
            if self.bar is not None:
                self.bar.write(line, file=sys.stdout)
            else:
                print(line, flush=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _save_sink(path: str, source: Source) -> Sink:
    if source.kind == "video" and os.path.abspath(path) == os.path.abspath(source.text):
        raise UserError(f"--save {path}: that is the input video")
    if is_video_path(path):
        return VideoFileSink(path, source.fps)
    if path.endswith(("/", os.sep)) or os.path.isdir(path) or not os.path.splitext(path)[1]:
        return ImageDirSink(path, keep_names=isinstance(source, ImageSource))
    if is_image_file_path(path):
        if source.kind != "image":
            raise UserError(f"--save {path}: an image file is only for a single-image source; "
                            f"give a video file (.mp4, .avi) or a directory")
        return ImageFileSink(path)
    raise UserError(f"--save {path}: unknown output type (a video file .mp4/.avi/.mkv/.mov, "
                    f"an image file for one image, or a directory ending in /)")


def build_sinks(args, source: Source) -> List[Sink]:
    """Every sink the arguments ask for, opened (files created, server listening)."""
    sinks: List[Sink] = []
    try:
        json_path = getattr(args, "json", None)
        to_stdout = json_path == "-"
        quiet = getattr(args, "quiet", False)
        lines = not quiet and not to_stdout
        bar = not source.live and source.kind != "image" and sys.stdout.isatty()
        if lines or bar:
            sinks.append(ConsoleSink(source, lines=lines, bar=bar))
        if json_path:
            sinks.append(JsonLinesSink(json_path))
        if getattr(args, "stats_json", None):      # written at the end: check the place now
            ensure_parent_dir(args.stats_json, "--stats-json")
        if getattr(args, "save", None):
            sinks.append(_save_sink(args.save, source))
        if getattr(args, "serve", None):
            host, port = parse_serve(args.serve)
            server = MjpegServer(host, port, getattr(args, "max_clients", None) or 4)
            sinks.append(server)
            note(f"serving MJPEG at {server.url} (page: {server.url.rsplit('/', 1)[0]}/)")
        if getattr(args, "show", False):
            why = WindowSink.unavailable()
            if why:
                note(f"--show is off: {why}")
            else:
                sinks.append(WindowSink(f"detector: {source.text}"))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks


class _Signals:
    """SIGINT/SIGTERM -> pipeline.stop(); a second one aborts (KeyboardInterrupt)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.old = {}

    def _handle(self, signum, _frame):
        name = "SIGINT" if signum == signal.SIGINT else "SIGTERM"
        if self.pipeline.stopping and self.pipeline.stop_reason in EXIT_CODES:
            raise KeyboardInterrupt
        self.pipeline.stop(name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self.old.items():
            signal.signal(s, h)
        return False


def run_detect(det, args) -> int:
    """Run ``detector detect`` with a loaded Detector; returns the exit code."""
    source = open_source(args.source, source_options(args), warn)
    try:
        sinks = build_sinks(args, source)
    except BaseException:
        source.close()
        raise
    model = getattr(getattr(det, "spec", None), "name", None)
    note(f"{source.text}: {source.describe()}; model {model}, backend "
         f"{getattr(det, 'backend', '?')} {getattr(det, 'precision', '?')}, "
         f"{getattr(det, 'img_size', '?')} px")
    if source.live and getattr(args, "save", None) and is_video_path(args.save):
        note(f"--save {args.save}: a live source is written at its own rate "
             f"({source.fps or 30:g} fps); frames dropped while the model was busy are not in it")
    pipeline = Pipeline(det, source, sinks, reconnect=not getattr(args, "no_reconnect", False),
                        max_frames=getattr(args, "max_frames", None), warn=warn)
    with _Signals(pipeline):
        stats = pipeline.run()
    if pipeline.stop_reason in EXIT_CODES:
        note(f"stopped by {pipeline.stop_reason}; every output was flushed and closed")
    for line in stats.summary():
        print(line, file=sys.stderr, flush=True)
    if getattr(args, "stats_json", None):
        stats.write_json(args.stats_json, source=source.text, source_kind=source.kind,
                         live=source.live, backend=getattr(det, "backend", None),
                         precision=getattr(det, "precision", None), model=model,
                         img_size=getattr(det, "img_size", None),
                         stop_reason=pipeline.stop_reason)
    for s in sinks:
        if isinstance(s, VideoFileSink) and s.frames:
            note(f"wrote {s.path} ({s.frames} frames, {s.fourcc}, {s.fps:g} fps)")
    if stats.processed == 0 and stats.skipped and pipeline.stop_reason not in EXIT_CODES:
        raise UserError(f"{source.text}: none of the {stats.skipped} images could be read")
    return EXIT_CODES.get(pipeline.stop_reason or "", 0)
