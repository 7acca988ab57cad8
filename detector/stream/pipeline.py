"""The threaded detection pipeline: capture -> inference -> output, with bounded queues.

    capture thread     source.read()  [+ detector.preprocess for files and folders]
        | live: a one-frame mailbox that keeps the newest frame (older ones dropped, counted)
        | files: a bounded FIFO (backpressure: the reader waits, no frame is ever dropped)
    inference thread   [detector.preprocess for live sources] + detector.infer
                       (the network, and the region decode where the runner decodes on
                       its device: right after the network, on the thread that runs it)
        | bounded FIFO
    output (caller's thread)  detector.postprocess (decode + NMS) -> overlay -> every sink

Live sources are preprocessed only once the network is free, so the frame it runs on is the
newest one: end-to-end latency stays near one model time plus one camera frame however slow
the model. Files are preprocessed by the reader so that the network never waits, except where
the runner preprocesses on its device into its own input (``runner.device_preprocess``):
there it runs on the inference thread (see ``host_preprocess``). The network's output is
copied once before it moves to the output thread where the runner reuses its output buffer
(``runner.reuses_output``), and not at all where each call returns new arrays.

Live streams that end or fail are reopened with exponential backoff (until stopped); files
end cleanly. ``stop()`` is safe from a signal handler: it only sets a flag. The pipeline only
calls the Detector's stages, so it works with every backend.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Dict, Iterable, List, Optional

import numpy as np

from ..errors import UserError
from .overlay import draw
from .sources import Source, Warn, warn_stderr
from .stats import Stats

perf = time.perf_counter
END = object()
STOP_GRACE_S = 5.0


def host_preprocess(det) -> bool:
    """Whether ``det.preprocess`` may run on another thread than the network (its result
    copied): only when it letterboxes on the host into a buffer of the Detector's, not where
    the runner preprocesses into its own input on its device (one runner, one thread)."""
    return not det.runner.device_preprocess


class Frame:
    """One frame on its way through the pipeline."""

    __slots__ = ("index", "image", "origin", "t_capture", "times", "blob", "lb", "raw",
                 "detections")

    def __init__(self, index: int, image: np.ndarray, origin: str, t_capture: float,
                 capture_s: float):
        self.index = index
        self.image = image
        self.origin = origin
        self.t_capture = t_capture
        self.times: Dict[str, float] = {"capture": capture_s}
        self.blob = None
        self.lb = None
        self.raw = None
        self.detections: List = []

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


class Channel:
    """A bounded FIFO between two threads, or with ``keep_latest`` a one-item mailbox where a
    new item replaces the waiting one (``put`` returns the replaced item)."""

    def __init__(self, maxsize: int, keep_latest: bool = False):
        self.maxsize = 1 if keep_latest else max(1, maxsize)
        self.keep_latest = keep_latest
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._aborted = False

    def put(self, item):
        """FIFO: wait for room; returns None, or ``item`` itself if the channel was aborted.
        Mailbox: never waits; returns the item it replaced (None if the box was empty)."""
        with self._cond:
            if self._aborted:
                return item
            if self.keep_latest:
                old = self._items.popleft() if self._items else None
                self._items.append(item)
                self._cond.notify_all()
                return old
            while len(self._items) >= self.maxsize and not self._aborted:
                self._cond.wait()
            if self._aborted:
                return item
            self._items.append(item)
            self._cond.notify_all()
            return None

    def get(self, timeout: Optional[float] = None):
        """The next item; END once closed and empty (or aborted); None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed or self._aborted:
                    return END
                if deadline is None:
                    self._cond.wait()
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._cond.wait(left)
            if self._aborted:
                return END
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def abort(self) -> List:
        """Unblock everyone; returns the items that were still queued."""
        with self._cond:
            self._aborted = True
            left = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return left


class Pipeline:
    """``Pipeline(detector, opened_source, sinks).run() -> Stats``.

    ``sinks``: objects with ``write(frame)`` and ``close()``; optional attributes
    ``needs_overlay`` (draw boxes before it) and ``stop_requested`` (e.g. a window's q key).
    The pipeline owns the source and the sinks from ``run()`` on and closes them all.
    """

    def __init__(self, detector, source: Source, sinks: Iterable = (), *, reconnect: bool = True,
                 max_frames: Optional[int] = None, warn: Warn = warn_stderr,
                 backoff=(0.5, 8.0), queue_size: int = 4):
        self.det = detector
        self.source = source
        self.sinks = list(sinks)
        self.live = bool(source.live)
        self.reconnect = reconnect
        self.max_frames = max_frames
        self.warn = warn
        self.backoff = backoff
        self.stats = Stats()
        self.overlay = any(getattr(s, "needs_overlay", False) for s in self.sinks)
        self.stop_reason: Optional[str] = None
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._error_lock = threading.Lock()
        self._ch_in = Channel(queue_size, keep_latest=self.live)
        self._ch_out = Channel(1 if self.live else queue_size)
        self._pre_in_capture = not self.live and host_preprocess(detector)
        self._capture_thread: Optional[threading.Thread] = None
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
        self._ch_in.abort()
        self._ch_out.abort()

    # ---- stages -------------------------------------------------------------------------

    def _capture(self) -> None:
        src, stats = self.source, self.stats
        index = 0
        try:
            while not self._stop.is_set():
                if not self.live and self.max_frames is not None and index >= self.max_frames:
                    break
                t0 = perf()
                cap = src.read()
                t1 = perf()
                if cap is None:
                    if self._stop.is_set() or not self.live or not self.reconnect:
                        break
                    if not self._reconnect():
                        break
                    continue
                frame = Frame(index, cap.image, cap.origin, t1, t1 - t0)
                index += 1
                stats.count_read()
                if self._pre_in_capture:
                    blob, frame.lb = self.det.preprocess(frame.image)
                    frame.blob = np.array(blob, copy=True)
                    frame.times["preprocess"] = perf() - t1
                replaced = self._ch_in.put(frame)
                if replaced is not None:
                    stats.count_dropped()
        except BaseException as e:        # noqa: B902 -- reported by run()
            self._fail(e)
        finally:
            self._ch_in.close()

    def _reconnect(self) -> bool:
        """Close and reopen a live source with exponential backoff; False if stopped."""
        src = self.source
        src.close()
        delay, longest = self.backoff
        attempt = 0
        while not self._stop.is_set():
            attempt += 1
            self.warn(f"{src.text}: stream ended; reconnecting in {delay:g} s (attempt {attempt})")
            if self._stop.wait(delay):
                return False
            try:
                src.open()
            except UserError as e:
                if self._stop.is_set():
                    return False
                self.warn(str(e))
                delay = min(delay * 2, longest)
                continue
            if self._stop.is_set():
                return False
            self.stats.reconnects += 1
            self.warn(f"{src.text}: reconnected")
            return True
        return False

    def _infer(self) -> None:
        det = self.det
        reuses_output = det.runner.reuses_output
        try:
            while True:
                frame = self._ch_in.get()
                if frame is END:
                    break
                if self._stop.is_set():
                    self.stats.count_dropped()        # stopping: only the frame in flight ends
                    continue
                if frame.blob is None:
                    t0 = perf()
                    frame.blob, frame.lb = det.preprocess(frame.image)
                    frame.times["preprocess"] = perf() - t0
                t0 = perf()
                out = det.infer(frame.blob)
                frame.times["network"] = perf() - t0
                # the output thread reads it while this one runs the next frame
                frame.raw = out.copy() if reuses_output else out
                frame.blob = None
                if self._ch_out.put(frame) is not None:
                    self.stats.count_dropped()
        except BaseException as e:        # noqa: B902
            self._fail(e)
        finally:
            self._ch_out.close()

    def _output(self, frame: Frame) -> None:
        t0 = perf()
        frame.detections = self.det.postprocess(frame.raw, frame.lb)
        frame.raw = None
        t1 = perf()
        frame.times["decode_nms"] = t1 - t0
        if self.overlay:
            draw(frame.image, frame.detections, self.stats.fps or None,
                 (t1 - frame.t_capture) * 1000.0)
        for sink in self.sinks:
            sink.write(frame)
        t2 = perf()
        frame.times["output"] = t2 - t1
        frame.times["end_to_end"] = t2 - frame.t_capture
        self.stats.add(frame.times, t2)
        if self.max_frames is not None and self.stats.processed >= self.max_frames:
            self.stop("max-frames")
        if any(getattr(s, "stop_requested", False) for s in self.sinks):
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
                    self.source.interrupt()
                elif time.monotonic() - interrupted_at > STOP_GRACE_S:
                    return                          # a source stuck in read(): give up on it
            if frame is None:
                continue
            if self.max_frames is not None and self.stats.processed >= self.max_frames:
                self.stats.count_dropped()
                continue
            self._output(frame)

    # ---- run ----------------------------------------------------------------------------

    def run(self) -> Stats:
        """Run to the end of the stream, ``max_frames``, or ``stop()``; close everything.
        Re-raises the first error of any stage (after closing)."""
        self.stats.start()
        self._capture_thread = threading.Thread(target=self._capture, name="capture",
                                                daemon=True)
        self._infer_thread = threading.Thread(target=self._infer, name="inference", daemon=True)
        self._capture_thread.start()
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

    def _shutdown(self) -> None:
        self._stop.set()
        self.source.interrupt()
        self._capture_thread.join(STOP_GRACE_S)
        captured_done = not self._capture_thread.is_alive()
        left = self._ch_in.abort()
        self._infer_thread.join(60.0)
        left += self._ch_out.abort()
        if left:
            self.stats.count_dropped(len(left))
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as e:    # noqa: B902 -- still close the others
                with self._error_lock:
                    if self._error is None:
                        self._error = e
        if captured_done:
            self.source.close()
        else:
            self.warn(f"{self.source.text}: the source did not stop reading; left open")
        self.stats.skipped = self.source.skipped
        self.stats.stop()
