"""A detection run: SOURCE (or several) -> pipeline -> every output, as ``detector detect``
does it.

``DetectRun(options)`` parses every SOURCE and every output (a bad URI or a missing file fails
there, before any model is loaded); ``run(detector)`` opens them, runs the pipeline and returns
the exit code. Several sources share the detector: one network call takes a frame of each
ready source (as many as the Detector's ``max_batch``); each source gets its own outputs
(``{name}`` in a path), tracker, and statistics. Messages name parameters (``save=out.mp4``)
unless the caller says how to name them (``name``: the command line passes its flag names).

Output: one line per frame on stdout (unless ``quiet``, or JSON Lines on stdout); for files
and folders a progress bar on stderr when stdout is a terminal; notes, warnings and the final
statistics on stderr (the whole run's, then each source's when there are several).

Exit code 0 at the end of the stream, at ``max_frames`` or when the window is closed; 130
after SIGINT (Ctrl-C) and 143 after SIGTERM, both after a clean shutdown (sinks flushed and
closed). A second signal aborts.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Callable, List, Optional, Sequence

from ..errors import UserError
from ..track.options import TrackerOptions
from ..track.tracker import Tracker
from .mjpeg import MjpegServer
from .options import DetectOptions, check_detect
from .outputs import SinkSpec, open_sink, per_source, requested_sinks
from .pipeline import Feed, Pipeline
from .sinks import Label, Sink, VideoFileSink, WindowSink, ensure_parent_dir
from .source_list import source_names
from .sources import ImageSource, Source, parse_source
from .stats import Stats

EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}
MAX_LISTED = 6


def note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


class ConsoleSink(Sink):
    """Per-frame lines on stdout and, for files on a terminal, a tqdm progress bar. With
    several sources each line starts with the source's name."""

    def __init__(self, sources: Sequence[Source], lines: bool, bar: bool,
                 names: Sequence[str] = ()):
        self.lines = lines
        self.bar = None
        self.named = len(sources) > 1
        self.image_sources = {names[i] if i < len(names) else "" for i, s in enumerate(sources)
                              if isinstance(s, ImageSource)}
        if bar:
            from tqdm import tqdm
            lengths = [s.length for s in sources]
            total = None if None in lengths else sum(lengths)
            self.bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True,
                            leave=True)

    def line(self, frame) -> str:
        dets = frame.detections
        head = frame.origin if frame.name in self.image_sources else f"frame {frame.index}"
        if self.named:
            head = f"{frame.name}: {head}"
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
    """One run of ``options``: its sources and outputs parsed once, here; ``run(det)``.

    ``name``: how messages name a parameter (param -> text; default ``param=value``).
    ``max_batch`` is how many frames one network call may take (one per source): build the
    Detector with it (``detector.load(..., max_batch=run.max_batch)``) to batch them."""

    def __init__(self, options: DetectOptions, name: Optional[Callable[[str], str]] = None):
        check_detect(options)
        self.options = options
        self.name = name
        texts = options.sources
        self.sources: List[Source] = [parse_source(t, options.capture, warn) for t in texts]
        self.names = source_names(texts)
        self.outputs: List[SinkSpec] = requested_sinks(options.output)
        self._shared, self._each = per_source(self.outputs, self.sources, self.names)
        self.tracking = options.track or any(s.kind == "mot" for s in self.outputs)

    @property
    def source(self) -> Source:
        """The (first) source."""
        return self.sources[0]

    @property
    def max_batch(self) -> int:
        return len(self.sources)

    def _named(self, label: Label) -> str:
        return label.text(self.name)

    # ---- outputs --------------------------------------------------------------------------

    def open_sinks(self) -> List[List[Sink]]:
        """Each source's sinks (the console and the shared outputs in every list), opened:
        files created, servers listening; what was opened is closed again when one fails."""
        out, sources = self.options.output, self.sources
        opened: List[Sink] = []
        try:
            if out.stats_json:                 # written at the end: check the place now
                ensure_parent_dir(out.stats_json, Label(out.stats_json, "stats_json"))
            lines = not out.quiet and not any(s.to_stdout for s in self.outputs)
            bar = all(not s.live and s.kind != "image" for s in sources) and \
                sys.stdout.isatty()
            if lines or bar:
                opened.append(ConsoleSink(sources, lines=lines, bar=bar, names=self.names))
            for spec in self._shared:
                self._open(spec, None, opened)
            shared = list(opened)
            each = []
            for source, specs in zip(sources, self._each):
                mine = [self._open(spec, source, opened) for spec in specs]
                each.append(shared + [s for s in mine if s is not None])
        except BaseException:
            for s in opened:
                s.close()
            raise
        return each

    def _open(self, spec: SinkSpec, source: Optional[Source], opened: List[Sink]
              ) -> Optional[Sink]:
        if spec.kind == "display":
            why = WindowSink.unavailable()
            if why:
                if source is None or source is self.sources[0]:
                    note(f"{self._named(spec.label)} is off: {why}")
                return None
        sink = open_sink(spec, source, max_clients=self.options.output.max_clients)
        opened.append(sink)
        if isinstance(sink, MjpegServer):
            note(f"serving MJPEG at {sink.url} (page: {sink.url.rsplit('/', 1)[0]}/)")
        return sink

    # ---- the run --------------------------------------------------------------------------

    def open_sources(self) -> None:
        """Open every source; a UserError when one cannot deliver a frame, except a live
        source of a run over several: that one is retried while the others run."""
        opened: List[Source] = []
        try:
            for source in self.sources:
                try:
                    source.open()
                except UserError as e:
                    if len(self.sources) == 1 or not source.live or not self.options.reconnect:
                        raise
                    warn(f"{e}; retrying while the other sources run")
                opened.append(source)
        except BaseException:
            for source in opened:
                source.close()
            raise

    def run(self, det) -> int:
        """Open the sources and the outputs, run to the end (or a stop), close everything;
        returns the exit code."""
        self.open_sources()
        try:
            sinks = self.open_sinks()
        except BaseException:
            for source in self.sources:
                source.close()
            raise
        self._notes_before(det)
        tracker_options = self.options.tracker or TrackerOptions()
        feeds = [Feed(src, mine, name, Tracker(tracker_options) if self.tracking else None)
                 for src, mine, name in zip(self.sources, sinks, self.names)]
        pipeline = Pipeline(det, feeds=feeds, reconnect=self.options.reconnect,
                            max_frames=self.options.max_frames, warn=warn)
        with _Signals(pipeline):
            stats = pipeline.run()
        if pipeline.stop_reason in EXIT_CODES:
            note(f"stopped by {pipeline.stop_reason}; every output was flushed and closed")
        self._summary(pipeline)
        self._write_stats(det, pipeline, stats)
        for s in pipeline.sinks:
            if isinstance(s, VideoFileSink) and s.frames:
                note(f"wrote {s.path} ({s.frames} frames, {s.fourcc}, {s.fps:g} fps)")
        empty = [lane for lane in pipeline.lanes if lane.stats.processed == 0 and
                 lane.stats.skipped]
        if empty and stats.processed == 0 and pipeline.stop_reason not in EXIT_CODES:
            raise UserError(f"{empty[0].source.text}: none of the {empty[0].stats.skipped} "
                            f"images could be read")
        return EXIT_CODES.get(pipeline.stop_reason or "", 0)

    def _summary(self, pipeline: Pipeline) -> None:
        lines = pipeline.stats.summary()
        if len(pipeline.lanes) > 1:
            for lane in pipeline.lanes:
                lines += [f"{lane.name}: {line}" for line in lane.stats.summary()]
        for line in lines:
            print(line, file=sys.stderr, flush=True)

    def _notes_before(self, det) -> None:
        model = getattr(getattr(det, "spec", None), "name", None)
        about = (f"model {model}, backend {getattr(det, 'backend', '?')} "
                 f"{getattr(det, 'precision', '?')}, {getattr(det, 'img_size', '?')} px"
                 + ("; tracking" if self.tracking else ""))
        if len(self.sources) == 1:
            note(f"{self.source.text}: {self.source.describe()}; {about}")
        else:
            for source, name in zip(self.sources, self.names):
                what = source.describe() if source.size or not source.live else \
                    f"{source.kind}, not open yet"
                note(f"{name} = {source.text}: {what}")
            batch = min(getattr(det, "max_batch", 1), len(self.sources))
            note(f"{about}; {len(self.sources)} sources, up to {batch} "
                 f"frame{'s' if batch > 1 else ''} a network call")
        for source, specs in zip(self.sources, self._each):
            if source.live:
                for spec in specs:
                    if spec.kind == "video":
                        note(f"{self._named(spec.label)}: a live source is written at its own "
                             f"rate ({source.fps or 30:g} fps); frames dropped while the model "
                             f"was busy are not in it")

    def _write_stats(self, det, pipeline: Pipeline, stats: Stats) -> None:
        path = self.options.output.stats_json
        if not path:
            return
        common = dict(backend=getattr(det, "backend", None),
                      precision=getattr(det, "precision", None),
                      model=getattr(getattr(det, "spec", None), "name", None),
                      img_size=getattr(det, "img_size", None), stop_reason=pipeline.stop_reason)
        if len(pipeline.lanes) == 1:
            source = self.source
            stats.write_json(path, source=source.text, source_kind=source.kind,
                             live=source.live, **common)
            return
        per_source = [lane.stats.to_dict(name=lane.name, source=lane.source.text,
                                         source_kind=lane.source.kind, live=lane.source.live)
                      for lane in pipeline.lanes]
        stats.write_json(path, source=[lane.source.text for lane in pipeline.lanes],
                         max_batch=getattr(det, "max_batch", 1), **common,
                         after={"sources": per_source})


def run_detect(det, options: DetectOptions, name: Optional[Callable[[str], str]] = None) -> int:
    """Run ``options`` with a loaded Detector; returns the exit code."""
    return DetectRun(options, name).run(det)
