"""The threaded detection pipeline: capture -> inference -> output, with bounded queues, for
one source or for several through one network.

    capture threads    one per source (lane.py): source.read() [+ letterbox for files]
        | live: a one-frame mailbox that keeps the newest frame (older ones dropped, counted)
        | files: a bounded FIFO (backpressure: the reader waits, no frame is ever dropped)
    inference thread   [detector.preprocess for live sources] + the network: one frame a
                       call, or, with several sources, the frame each ready source has (a
                       live source's newest; a file's next) as one batch (``infer_batch``, up
                       to the runner's ``max_batch`` frames; sources taken in turn), plus the
                       region decode where the runner decodes on its device
        | bounded FIFO
    output (caller's thread)  detector.postprocess (decode + NMS) [-> the source's tracker]
                       -> overlay -> the source's sinks

Live sources are preprocessed only once the network is free, so the frame it runs on is the
newest one: end-to-end latency stays near one model (batch) time plus one camera frame however
slow the model. Files are preprocessed by their reader so that the network never waits, except
where the runner preprocesses on its device into its own input (``runner.device_preprocess``):
there it runs on the inference thread (see ``host_preprocess``). The network's output is
copied once before it moves to the output thread where the runner reuses its output buffer
(``runner.reuses_output``), and not at all where each call returns new arrays.

The inference thread never waits for one source while another has a frame ready, so a camera
that stalls or reconnects (exponential backoff, until stopped) holds up no other source; files
end their own lane, and the run ends when every lane has ended. ``stop()`` is safe from a
signal handler: it only sets a flag. The pipeline only calls the Detector's stages, so it
works with every backend.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Iterable, List, NamedTuple, Optional, Sequence

from .channel import END, Channel
from .frame import Frame
from .lane import Lane
from .overlay import draw
from .sources import Source, Warn, warn_stderr
from .stats import Stats

__all__ = ["END", "Channel", "Feed", "Frame", "Pipeline", "host_preprocess"]

perf = time.perf_counter
STOP_GRACE_S = 5.0


def host_preprocess(det) -> bool:
    """Whether ``det.preprocess`` may run on another thread than the network (its result
    copied): only when it letterboxes on the host into a buffer of the Detector's, not where
    the runner preprocesses into its own input on its device (one runner, one thread)."""
    return not det.runner.device_preprocess


class Feed(NamedTuple):
    """One source of a run over several: its sinks, its name (``Frame.name``) and its
    tracker (an object with ``update(detections, frame_index)`` and ``trails()``; or None)."""
    source: Source
    sinks: Sequence = ()
    name: str = ""
    tracker: Any = None


class Pipeline:
    """``Pipeline(detector, opened_source, sinks).run() -> Stats``, or for several sources
    ``Pipeline(detector, feeds=[Feed(source, sinks, name, tracker), ...]).run()``.

    ``sinks``: objects with ``write(frame)`` and ``close()``; optional attributes
    ``needs_overlay`` (draw boxes before it) and ``stop_requested`` (e.g. a window's q key);
    a sink may serve several sources (it is closed once). ``tracker`` (one source): as in
    ``Feed``. ``max_frames`` counts per source. The pipeline owns the sources and the sinks
    from ``run()`` on and closes them all. ``stats`` covers the whole run; with several
    sources each lane has its own (``lanes[i].stats``).
    """

    def __init__(self, detector, source: Optional[Source] = None, sinks: Iterable = (), *,
                 feeds: Optional[Sequence[Feed]] = None, tracker=None, reconnect: bool = True,
                 max_frames: Optional[int] = None, warn: Warn = warn_stderr,
                 backoff=(0.5, 8.0), queue_size: int = 4):
        if (source is None) == (feeds is None) or (feeds is not None and (sinks or tracker)):
            raise ValueError("give one source (with its sinks and tracker) or feeds")
        if feeds is None:
            feeds = [Feed(source, tuple(sinks), "", tracker)]
        elif not feeds:
            raise ValueError("feeds: give at least one source")
        self.det = detector
        self.max_frames = max_frames
        self.warn = warn
        self.stats = Stats()
        self.stop_reason: Optional[str] = None
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._error_lock = threading.Lock()
        self._ready = threading.Condition()       # shared by the lanes' channels
        many = len(feeds) > 1
        self.lanes: List[Lane] = [
            Lane(f.source, f.sinks, f.name, f.tracker,
                 stats=Stats(parent=self.stats) if many else self.stats, cond=self._ready,
                 queue_size=queue_size, max_frames=max_frames, reconnect=reconnect,
                 backoff=backoff, warn=warn) for f in feeds]
        self.source = self.lanes[0].source
        self.sinks = _distinct(s for lane in self.lanes for s in lane.sinks)
        live = all(lane.live for lane in self.lanes)
        self._ch_out = Channel(len(feeds) if live else queue_size * len(feeds))
        self._turn = 0                            # the lane a batch starts looking at
        self._infer_thread: Optional[threading.Thread] = None

    # ---- control ------------------------------------------------------------------------

    def stop(self, reason: str = "stopped") -> None:
        """Ask the pipeline to stop (thread- and signal-handler-safe)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self.stop("error")
        for lane in self.lanes:
            lane.channel.abort()
        self._ch_out.abort()

    def _interrupt(self) -> None:
        for lane in self.lanes:
            lane.source.interrupt()

    # ---- inference ----------------------------------------------------------------------

    def _gather(self) -> Optional[List[Frame]]:
        """The frames of the next network call: the next frame of a single source, or one
        frame of each source that has one ready (at most ``max_batch``; the sources taken
        in turn); waits for one; None once every source has ended."""
        lanes = self.lanes
        if len(lanes) == 1:
            frame = lanes[0].channel.get()
            return None if frame is END else [frame]
        limit = max(1, getattr(self.det, "max_batch", 1))
        n = len(lanes)
        with self._ready:
            while True:
                frames, waiting = [], False
                for k in range(n):
                    lane = lanes[(self._turn + k) % n]
                    if lane.ended:
                        continue
                    item = lane.channel.get(timeout=0)
                    if item is END:
                        lane.ended = True
                    elif item is None:
                        waiting = True
                    else:
                        frames.append(item)
                        if len(frames) == limit:
                            self._turn = (self._turn + k + 1) % n
                            return frames
                if frames:
                    return frames
                if not waiting:
                    return None
                self._ready.wait()

    def _infer(self) -> None:
        try:
            while True:
                frames = self._gather()
                if frames is None:
                    break
                if self._stop.is_set():            # stopping: only the frames in flight end
                    for f in frames:
                        f.lane.stats.count_dropped()
                    continue
                if len(frames) == 1:
                    self._run_one(frames[0])
                else:
                    self._run_batch(frames)
                for f in frames:
                    if self._ch_out.put(f) is not None:
                        f.lane.stats.count_dropped()
        except BaseException as e:        # noqa: B902
            self._fail(e)
        finally:
            self._ch_out.close()

    def _run_one(self, frame: Frame) -> None:
        det = self.det
        if frame.blob is None:
            t0 = perf()
            frame.blob, frame.lb = det.preprocess(frame.image)
            frame.times["preprocess"] = perf() - t0
        t0 = perf()
        out = det.infer(frame.blob)
        frame.times["network"] = dt = perf() - t0
        if len(self.lanes) > 1:
            self.stats.count_batch(1, dt)
        # the output thread reads it while this one runs the next frame
        frame.raw = out.copy() if det.runner.reuses_output else out
        frame.blob = None

    def _run_batch(self, frames: List[Frame]) -> None:
        det = self.det
        for slot, f in enumerate(frames):
            if f.blob is None:
                t0 = perf()
                f.blob, f.lb = det.preprocess(f.image, slot=slot)
                f.times["preprocess"] = perf() - t0
        t0 = perf()
        outs = det.infer_batch([f.blob for f in frames])
        dt = perf() - t0
        self.stats.count_batch(len(frames), dt)
        copy = det.runner.reuses_output
        for f, out in zip(frames, outs):
            f.times["network"] = dt                # the frame waited for the whole call
            f.raw = out.copy() if copy else out
            f.blob = None

    # ---- output -------------------------------------------------------------------------

    def _output(self, frame: Frame) -> None:
        lane = frame.lane
        t0 = perf()
        frame.detections = self.det.postprocess(frame.raw, frame.lb)
        frame.raw = None
        t1 = perf()
        frame.times["decode_nms"] = t1 - t0
        if lane.tracker is not None:
            frame.detections = lane.tracker.update(frame.detections, frame.index)
            if lane.overlay:
                frame.trails = lane.tracker.trails()
            t0, t1 = t1, perf()
            frame.times["track"] = t1 - t0
        if lane.overlay:
            draw(frame.image, frame.detections, lane.stats.fps or None,
                 (t1 - frame.t_capture) * 1000.0, frame.trails)
        for sink in lane.sinks:
            sink.write(frame)
        t2 = perf()
        frame.times["output"] = t2 - t1
        frame.times["end_to_end"] = t2 - frame.t_capture
        lane.stats.add(frame.times, t2)
        if lane.full:
            lane.finish()
            if all(x.full for x in self.lanes):
                self.stop("max-frames")
        if any(getattr(s, "stop_requested", False) for s in lane.sinks):
            self.stop("window closed")

    def _output_loop(self) -> None:
        interrupted_at = None
        while True:
            frame = self._ch_out.get(timeout=0.1)
            if frame is END:
                return
            if self._stop.is_set():
                if interrupted_at is None:
                    interrupted_at = time.monotonic()
                    self._interrupt()
                elif time.monotonic() - interrupted_at > STOP_GRACE_S:
                    return                          # a source stuck in read(): give up on it
            if frame is None:
                continue
            if frame.lane.full:
                frame.lane.stats.count_dropped()
                continue
            self._output(frame)

    # ---- run ----------------------------------------------------------------------------

    def run(self) -> Stats:
        """Run to the end of every stream, ``max_frames``, or ``stop()``; close everything.
        Re-raises the first error of any stage (after closing)."""
        for stats in self._all_stats():
            stats.start()
        single = len(self.lanes) == 1
        for i, lane in enumerate(self.lanes):
            lane.start(self._stop, self._fail, self._capture_preprocess(lane),
                       "capture" if single else f"capture-{lane.name or i}")
        self._infer_thread = threading.Thread(target=self._infer, name="inference", daemon=True)
        self._infer_thread.start()
        try:
            self._output_loop()
        except BaseException as e:        # noqa: B902 -- KeyboardInterrupt included
            self._fail(e)
        finally:
            self._shutdown()
        if self._error is not None:
            raise self._error
        if self.stop_reason is None:
            self.stop_reason = "end of stream"
        return self.stats

    def _capture_preprocess(self, lane: Lane):
        """What letterboxes a lane's frames on its capture thread: files only, on the host
        only; the Detector's own letterbox for one source, a private one for each of several
        (they run at once)."""
        if lane.live or not host_preprocess(self.det):
            return None
        return self.det.preprocess if len(self.lanes) == 1 else self.det.new_preprocessor()

    def _all_stats(self) -> List[Stats]:
        return _distinct([self.stats] + [lane.stats for lane in self.lanes])

    def _shutdown(self) -> None:
        self._stop.set()
        self._interrupt()
        deadline = time.monotonic() + STOP_GRACE_S
        for lane in self.lanes:
            if lane.thread is not None:
                lane.thread.join(max(0.0, deadline - time.monotonic()))
        for lane in self.lanes:
            left = lane.channel.abort()
            if left:
                lane.stats.count_dropped(len(left))
        if self._infer_thread is not None:
            self._infer_thread.join(60.0)
        for f in self._ch_out.abort():
            f.lane.stats.count_dropped()
        self._close_sinks()
        for lane in self.lanes:
            self._close_source(lane)
        if len(self.lanes) > 1:
            self.stats.skipped = sum(lane.stats.skipped for lane in self.lanes)
            tracks = [lane.stats.tracks for lane in self.lanes if lane.stats.tracks]
            if tracks:
                self.stats.tracks = {k: sum(t[k] for t in tracks) for k in tracks[0]}
        for stats in self._all_stats():
            stats.stop()

    def _close_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as e:    # noqa: B902 -- still close the others
                with self._error_lock:
                    if self._error is None:
                        self._error = e

    def _close_source(self, lane: Lane) -> None:
        source = lane.source
        if lane.thread is None or not lane.thread.is_alive():
            source.close()
        else:
            self.warn(f"{source.text}: the source did not stop reading; left open")
        lane.stats.skipped = source.skipped
        tracker = lane.tracker
        if tracker is not None:
            lane.stats.tracks = {"started": int(tracker.started), "ended": int(tracker.ended),
                                 "active": int(tracker.active)}


def _distinct(items: Iterable) -> List:
    """``items`` without repeats of the same object, in order."""
    seen, out = set(), []
    for x in items:
        if id(x) not in seen:
            seen.add(id(x))
            out.append(x)
    return out
