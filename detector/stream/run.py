"""A detection run: SOURCE -> pipeline -> every output, as ``detector detect`` does it.

``DetectRun(options)`` parses SOURCE and every output (a bad URI or a missing file fails
there, before any model is loaded); ``run(detector)`` opens them, runs the pipeline and returns
the exit code. Messages name parameters (``save=out.mp4``) unless the caller says how to name
them (``name``: the command line passes its flag names).

Output: one line per frame on stdout (unless ``quiet``, or JSON Lines on stdout); for files
and folders a progress bar on stderr when stdout is a terminal; notes, warnings and the final
statistics on stderr.

Exit code 0 at the end of the stream, at ``max_frames`` or when the window is closed; 130
after SIGINT (Ctrl-C) and 143 after SIGTERM, both after a clean shutdown (sinks flushed and
closed). A second signal aborts.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Callable, List, Optional

from ..errors import UserError
from .mjpeg import MjpegServer
from .options import DetectOptions, check_detect
from .outputs import SinkSpec, open_sink, requested_sinks
from .pipeline import Pipeline
from .sinks import Label, Sink, VideoFileSink, WindowSink, ensure_parent_dir
from .sources import ImageSource, Source, parse_source
from .stats import Stats

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
MAX_LISTED = 6


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


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

    def line(self, frame) -> str:
        dets = frame.detections
        head = frame.origin if self.images else f"frame {frame.index}"
        listed = ", ".join(f"{d.class_name} {d.score:.2f}" for d in dets[:MAX_LISTED])
        if len(dets) > MAX_LISTED:
            listed += f", ... (+{len(dets) - MAX_LISTED})"
        latency = (time.perf_counter() - frame.t_capture) * 1000.0
        return (f"{head}: {len(dets)} object{'s' if len(dets) != 1 else ''}"
                f"{': ' + listed if dets else ''} "
                f"[network {frame.times.get('network', 0) * 1000:.1f} ms, "
                f"latency {latency:.1f} ms]")

    def write(self, frame) -> None:
        if self.lines:
            if self.bar is not None:
                self.bar.write(self.line(frame), file=sys.stdout)
            else:
                print(self.line(frame), flush=True)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


class DetectRun:
    """One run of ``options``: SOURCE and the outputs parsed once, here; ``run(det)``.

    ``name``: how messages name a parameter (param -> text; default ``param=value``)."""

    def __init__(self, options: DetectOptions, name: Optional[Callable[[str], str]] = None):
        check_detect(options)
        self.options = options
        self.name = name
        self.source: Source = parse_source(options.source, options.capture, warn)
        self.outputs: List[SinkSpec] = requested_sinks(options.output, self.source)

    def _named(self, label: Label) -> str:
        return label.text(self.name)

    # ---- outputs --------------------------------------------------------------------------

    def open_sinks(self) -> List[Sink]:
        """The console and every output, opened (files created, servers listening); what
        was opened is closed again when one fails."""
        out, source = self.options.output, self.source
        sinks: List[Sink] = []
        try:
            if out.stats_json:                 # written at the end: check the place now
                ensure_parent_dir(out.stats_json, Label(out.stats_json, "stats_json"))
            lines = not out.quiet and not any(s.to_stdout for s in self.outputs)
            bar = not source.live and source.kind != "image" and sys.stdout.isatty()
            if lines or bar:
                sinks.append(ConsoleSink(source, lines=lines, bar=bar))
            for spec in self.outputs:
                sink = self._open(spec)
                if sink is not None:
                    sinks.append(sink)
        except BaseException:
            for s in sinks:
                s.close()
            raise
        return sinks

    def _open(self, spec: SinkSpec) -> Optional[Sink]:
        if spec.kind == "display":
            why = WindowSink.unavailable()
            if why:
                note(f"{self._named(spec.label)} is off: {why}")
                return None
        sink = open_sink(spec, self.source, max_clients=self.options.output.max_clients)
        if isinstance(sink, MjpegServer):
            note(f"serving MJPEG at {sink.url} (page: {sink.url.rsplit('/', 1)[0]}/)")
        return sink

    # ---- the run --------------------------------------------------------------------------

    def run(self, det) -> int:
        """Open SOURCE and the outputs, run to the end (or a stop), close everything;
        returns the exit code."""
        source = self.source
        source.open()
        try:
            sinks = self.open_sinks()
        except BaseException:
            source.close()
            raise
        self._notes_before(det)
        pipeline = Pipeline(det, source, sinks, reconnect=self.options.reconnect,
                            max_frames=self.options.max_frames, warn=warn)
        with _Signals(pipeline):
            stats = pipeline.run()
        if pipeline.stop_reason in EXIT_CODES:
            note(f"stopped by {pipeline.stop_reason}; every output was flushed and closed")
        for line in stats.summary():
            print(line, file=sys.stderr, flush=True)
        self._write_stats(det, pipeline, stats)
        for s in sinks:
            if isinstance(s, VideoFileSink) and s.frames:
                note(f"wrote {s.path} ({s.frames} frames, {s.fourcc}, {s.fps:g} fps)")
        if stats.processed == 0 and stats.skipped and pipeline.stop_reason not in EXIT_CODES:
            raise UserError(f"{source.text}: none of the {stats.skipped} images could be read")
        return EXIT_CODES.get(pipeline.stop_reason or "", 0)

    def _notes_before(self, det) -> None:
        source = self.source
        model = getattr(getattr(det, "spec", None), "name", None)
        note(f"{source.text}: {source.describe()}; model {model}, backend "
             f"{getattr(det, 'backend', '?')} {getattr(det, 'precision', '?')}, "
             f"{getattr(det, 'img_size', '?')} px")
        if source.live:
            for spec in self.outputs:
                if spec.kind == "video":
                    note(f"{self._named(spec.label)}: a live source is written at its own "
                         f"rate ({source.fps or 30:g} fps); frames dropped while the model "
                         f"was busy are not in it")

    def _write_stats(self, det, pipeline: Pipeline, stats: Stats) -> None:
        path = self.options.output.stats_json
        if not path:
            return
        source = self.source
        stats.write_json(path, source=source.text, source_kind=source.kind,
                         live=source.live, backend=getattr(det, "backend", None),
                         precision=getattr(det, "precision", None),
                         model=getattr(getattr(det, "spec", None), "name", None),
                         img_size=getattr(det, "img_size", None),
                         stop_reason=pipeline.stop_reason)


def run_detect(det, options: DetectOptions, name: Optional[Callable[[str], str]] = None) -> int:
    """Run ``options`` with a loaded Detector; returns the exit code."""
    return DetectRun(options, name).run(det)
