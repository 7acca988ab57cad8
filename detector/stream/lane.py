"""``Lane``: one source's way through a run: the source and its capture thread, the channel to
the inference thread, and what the output stage needs of it (sinks, tracker, statistics).

Capture (``start``): ``source.read()`` on a thread of its own. Live sources go into a
one-frame mailbox that keeps the newest frame (the older one is dropped and counted); files go
into a bounded FIFO (backpressure: the reader waits, no frame is ever dropped), letterboxed by
the reader where it is given a host ``preprocess`` (the network then never waits for it). A
live source that ends or fails is closed and reopened with exponential backoff until the run
stops; a file ends its lane. A lane waiting for its camera holds up no other: the inference
thread takes whatever frames the lanes have ready.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Optional, Tuple

import numpy as np

from ..errors import UserError
from .channel import Channel
from .frame import Frame
from .sources import Source, Warn, warn_stderr
from .stats import Stats

perf = time.perf_counter
Preprocess = Callable[[np.ndarray], tuple]


class Lane:
    """One source in a run. ``sinks`` get its frames; ``tracker`` (optional) gives its
    detections track ids; ``stats`` counts them. ``cond`` is shared by every lane's channel
    so that the inference thread can wait for any of them. ``max_frames``: frames of this
    source to process (files read no more than that)."""

    def __init__(self, source: Source, sinks: Iterable = (), name: str = "", tracker=None, *,
                 stats: Optional[Stats] = None, cond: Optional[threading.Condition] = None,
                 queue_size: int = 4, max_frames: Optional[int] = None, reconnect: bool = True,
                 backoff: Tuple[float, float] = (0.5, 8.0), warn: Warn = warn_stderr):
        self.source = source
        self.sinks = list(sinks)
        self.name = name
        self.tracker = tracker
        self.live = bool(source.live)
        self.stats = stats if stats is not None else Stats()
        self.max_frames = max_frames
        self.reconnect = reconnect
        self.backoff = backoff
        self.warn = warn
        self.channel = Channel(queue_size, keep_latest=self.live, cond=cond)
        self.overlay = any(getattr(s, "needs_overlay", False) for s in self.sinks)
        self.done = threading.Event()       # it needs no more frames (max_frames reached)
        self.ended = False                  # its channel gave END (inference thread only)
        self.thread: Optional[threading.Thread] = None

    @property
    def full(self) -> bool:
        """Whether it has processed ``max_frames`` frames."""
        return self.max_frames is not None and self.stats.processed >= self.max_frames

    def finish(self) -> None:
        """It needs no more frames: its capture ends (thread-safe)."""
        self.done.set()

    def start(self, stop: threading.Event, fail: Callable[[BaseException], None],
              preprocess: Optional[Preprocess] = None, name: str = "capture") -> None:
        """Start capturing until ``stop`` (or the end of a file, or ``finish``); ``fail``
        gets an error of the thread; ``preprocess`` letterboxes on this thread."""
        self.thread = threading.Thread(target=self._capture, args=(stop, fail, preprocess),
                                       name=name, daemon=True)
        self.thread.start()

    def _capture(self, stop: threading.Event, fail, preprocess: Optional[Preprocess]) -> None:
        src, stats = self.source, self.stats
        index = 0
        try:
            while not stop.is_set() and not self.done.is_set():
                if not self.live and self.max_frames is not None and index >= self.max_frames:
                    break
                t0 = perf()
                cap = src.read()
                t1 = perf()
                if cap is None:
                    if stop.is_set() or not self.live or not self.reconnect:
                        break
                    if not self._reconnect(stop):
                        break
                    continue
                frame = Frame(index, cap.image, cap.origin, t1, t1 - t0, self.name, self)
                index += 1
                stats.count_read()
                if preprocess is not None:
                    blob, frame.lb = preprocess(frame.image)
                    frame.blob = np.array(blob, copy=True)
                    frame.times["preprocess"] = perf() - t1
                replaced = self.channel.put(frame)
                if replaced is not None:
                    stats.count_dropped()
        except BaseException as e:        # noqa: B902 -- reported by the pipeline's run()
            fail(e)
        finally:
            self.channel.close()

    def _reconnect(self, stop: threading.Event) -> bool:
        """Close and reopen a live source with exponential backoff; False if stopped."""
        src = self.source
        src.close()
        delay, longest = self.backoff
        attempt = 0
        while not (stop.is_set() or self.done.is_set()):
            attempt += 1
            self.warn(f"{src.text}: stream ended; reconnecting in {delay:g} s (attempt {attempt})")
            if stop.wait(delay):
                return False
            try:
                src.open()
            except UserError as e:
                if stop.is_set():
                    return False
                self.warn(str(e))
                delay = min(delay * 2, longest)
                continue
            if stop.is_set():
                return False
            self.stats.count_reconnect()
            self.warn(f"{src.text}: reconnected")
            return True
        return False
