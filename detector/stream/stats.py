"""Pipeline statistics: frame counts, per-stage latency percentiles, throughput.

Stages (milliseconds per frame): ``capture`` (time in the source's read: decoding, or waiting
for a live frame), ``preprocess`` (letterbox), ``network`` (the backend; with several
sources, the call that ran the frame's batch), ``decode_nms``
(region decode + NMS + letterbox inverse), ``output`` (overlay + every sink), and
``end_to_end`` (from the moment the frame was captured to the moment every sink had it:
includes the time spent waiting in queues); with tracking also ``track`` (the tracker's
update). Percentiles are over the last ``WINDOW`` frames so that memory stays bounded in runs
of days.

A run over several sources keeps one ``Stats`` per source whose ``parent`` is the run's: every
count and sample reaches both. The run's also counts the network's batches (``count_batch``:
how many frames each call took and how long it ran).
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Dict, List, Optional

import numpy as np

STAGES = ("capture", "preprocess", "network", "decode_nms", "output", "end_to_end")
OPTIONAL_STAGES = ("track",)       # reported only where a run has them
WINDOW = 20000


class Stats:
    def __init__(self, window: int = WINDOW, parent: Optional["Stats"] = None):
        self.parent = parent
        self.read = 0              # frames delivered by the source
        self.processed = 0         # frames through every sink
        self.dropped = 0           # live frames replaced by a newer one before inference
        self.skipped = 0           # unreadable images skipped (folders, globs)
        self.reconnects = 0        # successful reopenings of a live source
        self.samples: Dict[str, deque] = {s: deque(maxlen=window)
                                          for s in STAGES + OPTIONAL_STAGES}
        self.batches = 0           # network calls (counted by runs over several sources)
        self.batched_frames = 0    # frames those calls took
        self.batch_ms: deque = deque(maxlen=window)
        self.tracks: Optional[Dict[str, int]] = None   # tracks started / ended / active
        self.t_start: Optional[float] = None
        self.t_end: Optional[float] = None
        self._lock = threading.Lock()
        self._last_out: Optional[float] = None
        self.fps = 0.0             # output rate, exponential moving average

    def start(self) -> None:
        self.t_start = time.perf_counter()

    def stop(self) -> None:
        self.t_end = time.perf_counter()

    def count_read(self) -> None:
        with self._lock:
            self.read += 1
        if self.parent is not None:
            self.parent.count_read()

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n
        if self.parent is not None:
            self.parent.count_dropped(n)

    def count_reconnect(self) -> None:
        with self._lock:
            self.reconnects += 1
        if self.parent is not None:
            self.parent.count_reconnect()

    def count_batch(self, frames: int, seconds: float) -> None:
        """One network call that took ``frames`` frames and ran ``seconds``."""
        with self._lock:
            self.batches += 1
            self.batched_frames += frames
            self.batch_ms.append(seconds * 1000.0)

    def add(self, times_s: Dict[str, float], t_out: float) -> None:
        """Record one processed frame: stage durations in seconds, and its output time."""
        if self.parent is not None:
            self.parent.add(times_s, t_out)
        with self._lock:
            self.processed += 1
            for k, v in times_s.items():
                self.samples[k].append(v * 1000.0)
            if self._last_out is not None:
                dt = t_out - self._last_out
                if dt > 0:
                    inst = 1.0 / dt
                    self.fps = inst if self.fps == 0 else 0.9 * self.fps + 0.1 * inst
            self._last_out = t_out

    @property
    def elapsed(self) -> float:
        if self.t_start is None:
            return 0.0
        return (self.t_end or time.perf_counter()) - self.t_start

    @property
    def throughput(self) -> float:
        e = self.elapsed
        return self.processed / e if e > 0 else 0.0

    def latency(self, stage: str) -> Dict[str, Optional[float]]:
        with self._lock:
            xs = np.asarray(self.batch_ms if stage == "batch" else self.samples[stage],
                            np.float64)
        if xs.size == 0:
            return {"p50": None, "p95": None, "mean": None, "max": None}
        p50, p95 = np.percentile(xs, [50, 95])
        return {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
                "mean": round(float(xs.mean()), 3), "max": round(float(xs.max()), 3)}

    def to_dict(self, **extra) -> dict:
        d = dict(extra)
        d.update({
            "frames": {"read": self.read, "processed": self.processed, "dropped": self.dropped,
                       "skipped": self.skipped},
            "reconnects": self.reconnects,
            "elapsed_s": round(self.elapsed, 4),
            "throughput_fps": round(self.throughput, 3),
            "latency_ms": {s: self.latency(s) for s in self._stages()},
        })
        if self.batches:
            d["batches"] = {"count": self.batches,
                            "mean_frames": round(self.batched_frames / self.batches, 3),
                            "network_ms": self.latency("batch")}
        if self.tracks is not None:
            d["tracks"] = dict(self.tracks)
        return d

    def _stages(self):
        return STAGES + tuple(s for s in OPTIONAL_STAGES if self.samples[s])

    def summary(self) -> List[str]:
        """Human-readable lines for the end of a run."""
        lines = [f"frames: {self.read} read, {self.processed} processed, {self.dropped} dropped"
                 + (f", {self.skipped} skipped (unreadable)" if self.skipped else "")
                 + (f", {self.reconnects} reconnect{'s' if self.reconnects != 1 else ''}"
                    if self.reconnects else "")
                 + f" in {self.elapsed:.2f} s ({self.throughput:.1f} fps)"]
        if self.batches:
            lines.append(f"batches: {self.batches}, {self.batched_frames / self.batches:.2f} "
                         f"frames a call on average")
        if self.tracks is not None:
            t = self.tracks
            lines.append(f"tracks: {t['started']} started, {t['ended']} ended, "
                         f"{t['active']} active at the end")
        cells = []
        for s in self._stages():
            lat = self.latency(s)
            if lat["p50"] is not None:
                cells.append(f"{s} {lat['p50']:.1f}/{lat['p95']:.1f}")
        if cells:
            lines.append("latency ms p50/p95: " + ", ".join(cells))
        return lines

    def write_json(self, path: str, after: Optional[dict] = None, **extra) -> None:
        """``to_dict(**extra)`` as JSON at ``path``, followed by the keys of ``after``."""
        from ..io.atomic import atomic_write_bytes
        d = self.to_dict(**extra)
        d.update(after or {})
        data = json.dumps(d, indent=2) + "\n"
        atomic_write_bytes(path, data.encode("utf-8"))
