"""The threaded pipeline in-process, with a real detector, real files and real gst-launch."""
from __future__ import annotations

import os
import signal
import threading

import cv2
import numpy as np
import pytest

import detector
from detector.errors import UserError
from detector.stream.pipeline import Channel, END, Pipeline
from detector.stream.sinks import JsonLinesSink, Sink, VideoFileSink
from detector.stream.sources import Captured, Source, SourceOptions, open_source
from stream_helpers import (MODEL, SIZE, SPEC, count_video_frames, frame_image, gst_live, requires_gst,
                            write_video)


@pytest.fixture(scope="module")
def det():
    return detector.load(MODEL, img_size=SIZE, conf=0.02)


class Collect(Sink):
    """Keeps what the pipeline outputs (index, origin, detections, stage times)."""

    def __init__(self, on_write=None):
        self.frames = []
        self.on_write = on_write
        self.closed = False

    def write(self, frame):
        self.frames.append((frame.index, frame.origin, list(frame.detections), dict(frame.times)))
        if self.on_write:
            self.on_write(frame, len(self.frames))

    def close(self):
        self.closed = True


def test_channel_fifo_and_mailbox():
    fifo = Channel(2)
    assert fifo.put(1) is None and fifo.put(2) is None
    got = []
    t = threading.Thread(target=lambda: got.append(fifo.put(3)))
    t.start()                                   # blocks: the FIFO is full (backpressure)
    assert fifo.get() == 1
    t.join(10)
    assert got == [None]
    fifo.close()
    assert [fifo.get(), fifo.get(), fifo.get()] == [2, 3, END]
    box = Channel(4, keep_latest=True)
    assert box.put("a") is None
    assert box.put("b") == "a"                  # the older one is replaced
    assert box.get(timeout=0) == "b" and box.get(timeout=0) is None
    box.abort()
    assert box.get() is END and box.put("c") == "c"


def test_video_file_every_frame_in_order(det, tmp_path):
    path = write_video(str(tmp_path / "in.mp4"), 25, fps=12)
    out = str(tmp_path / "out.mp4")
    collect = Collect()
    video = VideoFileSink(out, fps=12)
    src = open_source(path)
    stats = Pipeline(det, src, [collect, video]).run()
    assert [f[0] for f in collect.frames] == list(range(25))
    assert (stats.read, stats.processed, stats.dropped) == (25, 25, 0)
    assert collect.closed
    assert count_video_frames(out) == (25, 12.0, (160, 120))
    for stage in ("capture", "preprocess", "network", "decode_nms", "output", "end_to_end"):
        assert stats.latency(stage)["p95"] is not None, stage


BACKENDS = ("torch", "ort", "emu", "cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_backend_gives_the_detectors_own_detections(backend, tmp_path):
    try:
        d = detector.load(MODEL, img_size=SIZE, conf=0.02, backend=backend)
    except UserError as e:
        pytest.skip(f"backend {backend} not available here: {e}")
    path = write_video(str(tmp_path / "in.avi"), 6)
    collect = Collect()
    Pipeline(d, open_source(path), [collect]).run()
    cap = cv2.VideoCapture(path)
    expected = []
    for _ in range(6):
        ok, img = cap.read()
        expected.append(d(img))
    assert [f[2] for f in collect.frames] == expected
    assert sum(len(e) for e in expected) > 0


def test_max_frames_and_json_lines(det, tmp_path):
    path = write_video(str(tmp_path / "in.avi"), 20)
    jl = str(tmp_path / "d.jsonl")
    stats = Pipeline(det, open_source(path), [JsonLinesSink(jl)], max_frames=7).run()
    assert (stats.read, stats.processed) == (7, 7)
    with open(jl) as f:
        assert len(f.readlines()) == 7


def test_stage_error_is_raised_after_closing_everything(det, tmp_path):
    path = write_video(str(tmp_path / "in.avi"), 20)

    class Broken(Sink):
        def write(self, frame):
            if frame.index == 3:
                raise UserError("disk full")

    collect = Collect()
    with pytest.raises(UserError, match="disk full"):
        Pipeline(det, open_source(path), [collect, Broken()]).run()
    assert collect.closed


class CountingLiveSource(Source):
    """A test-only camera that is always ready with a new frame (far faster than any model);
    each frame carries its number in its first pixel."""

    kind = "test-camera"
    live = True

    def __init__(self):
        super().__init__("test-camera", SourceOptions())
        self.reads = 0

    def open(self):
        pass

    def read(self):
        img = np.full((48, 64, 3), 90, np.uint8)
        i = self.reads
        img[0, 0] = (i & 255, (i >> 8) & 255, (i >> 16) & 255)
        self.reads += 1
        return Captured(img, self.text)


class Observed:
    """The real detector, observed at the moment the inference stage takes a frame."""

    def __init__(self, det, source):
        self._det, self._source = det, source
        self.newer = []               # frames read after the one inference took, at that time

    def __getattr__(self, name):
        return getattr(self._det, name)

    def preprocess(self, frame):
        index = int(frame[0, 0, 0]) | int(frame[0, 0, 1]) << 8 | int(frame[0, 0, 2]) << 16
        self.newer.append(self._source.reads - 1 - index)
        return self._det.preprocess(frame)


def test_live_source_keeps_only_the_newest_frame(det):
    src = CountingLiveSource()
    observed = Observed(det, src)
    collect = Collect()
    pipe = Pipeline(observed, src, [collect], max_frames=25)
    stats = pipe.run()
    assert stats.processed == 25 and pipe.stop_reason == "max-frames"
    assert stats.dropped > 0 and stats.read == stats.processed + stats.dropped
    # Latency is bounded by construction: inference always takes the newest frame; at most the
    # one the reader is holding at that instant is newer. (A FIFO would let a backlog grow.)
    assert len(observed.newer) >= 25 and max(observed.newer) <= 1, observed.newer
    indices = [f[0] for f in collect.frames]
    assert indices == sorted(indices) and indices[-1] >= 25       # newest frames, with gaps


@requires_gst
def test_gst_source_faster_than_the_model_drops_and_counts(det):
    # A non-live videotestsrc read as live produces frames far faster than the model runs.
    src = open_source("gst:videotestsrc ! video/x-raw,width=64,height=48",
                      SourceOptions(live=True))
    collect = Collect()
    pipe = Pipeline(det, src, [collect], max_frames=30)
    stats = pipe.run()
    assert stats.processed == 30 and pipe.stop_reason == "max-frames"
    assert stats.dropped > 0
    assert stats.read == stats.processed + stats.dropped
    indices = [f[0] for f in collect.frames]
    assert indices == sorted(indices) and indices[-1] >= 30
    assert src.pid is None


@requires_gst
def test_live_stream_reconnects_after_the_source_dies(det, tmp_path):
    pids, warnings = [], []
    src = open_source(gst_live(fps=60), warn=warnings.append)

    def kill_source(frame, n):
        if n in (4, 12):                      # kill gst-launch twice, mid-stream
            pids.append(src.pid)
            os.kill(src.pid, signal.SIGKILL)

    out = str(tmp_path / "live.mp4")
    pipe = Pipeline(det, src, [Collect(kill_source), VideoFileSink(out, src.fps)],
                    max_frames=20, warn=warnings.append, backoff=(0.05, 0.2))
    stats = pipe.run()
    assert stats.processed == 20 and stats.reconnects >= 2, warnings
    assert len(set(pids)) == 2
    assert any("reconnecting" in w for w in warnings)
    assert any("killed by signal 9" in w for w in warnings)
    assert count_video_frames(out)[0] == 20
    assert src.pid is None                    # closed: no gst-launch left behind


@requires_gst
def test_file_run_ends_cleanly_when_the_source_dies(det, tmp_path):
    warnings = []
    src = open_source(gst_live(fps=60), SourceOptions(live=False), warnings.append)  # no reconnect

    def kill_source(frame, n):
        if n == 5:
            os.kill(src.pid, signal.SIGKILL)

    out = str(tmp_path / "file.mp4")
    jl = str(tmp_path / "file.jsonl")
    pipe = Pipeline(det, src, [Collect(kill_source), VideoFileSink(out, 30), JsonLinesSink(jl)],
                    warn=warnings.append)
    stats = pipe.run()
    assert pipe.stop_reason == "end of stream"
    assert stats.reconnects == 0 and stats.dropped == 0
    assert stats.processed == stats.read >= 5
    assert any("killed by signal 9" in w for w in warnings)
    with open(jl) as f:
        assert len(f.readlines()) == stats.processed
    assert count_video_frames(out)[0] == stats.processed


@requires_gst
def test_live_without_reconnect_ends(det):
    src = open_source(gst_live(extra="num-buffers=5 "))
    stats = Pipeline(det, src, [Collect()], reconnect=False).run()
    assert stats.read == 5 and stats.reconnects == 0


def test_stop_from_another_thread(det, tmp_path):
    path = write_video(str(tmp_path / "in.avi"), 200)
    pipe = None

    def stop_at(frame, n):
        if n == 3:
            threading.Thread(target=pipe.stop, args=("test",)).start()

    out = str(tmp_path / "out.avi")
    pipe = Pipeline(det, open_source(path), [Collect(stop_at), VideoFileSink(out, 12)])
    stats = pipe.run()
    assert pipe.stop_reason == "test"
    assert 3 <= stats.processed < 200
    assert stats.read == stats.processed + stats.dropped
    assert count_video_frames(out)[0] == stats.processed


def test_images_in_order_with_skips(det, tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), frame_image(i))
    (tmp_path / "2.png").write_bytes(b"not a png")
    collect = Collect()
    stats = Pipeline(det, open_source(str(tmp_path), warn=lambda m: None), [collect]).run()
    assert [os.path.basename(f[1]) for f in collect.frames] == ["0.png", "1.png", "3.png"]
    assert (stats.processed, stats.skipped, stats.dropped) == (3, 1, 0)


def test_preprocess_runs_beside_the_network_only_on_the_host(det):
    from detector.stream.pipeline import host_preprocess
    assert host_preprocess(det)
    assert not host_preprocess(fake_detector(device=True))   # letterboxes into its own input


# ---- the pipeline follows what the runner declares -------------------------------------------

def fake_detector(reuse: bool = True, device: bool = False):
    """A Detector on a numpy stand-in for a network whose raw output depends on the frame.
    ``reuse``: it returns one output buffer (and one pair of decode buffers) every call and
    says so; ``device``: it preprocesses and decodes itself, as the cuda runner does. It
    logs which thread made each call."""
    from detector.engine.detector import Detector
    from detector.engine.model_file import LoadedModel
    from detector.engine.runner import Runner
    from detector.models.spec_yaml import load_spec
    from detector.postprocess import decode_region
    from detector.preprocess import Preprocessor

    spec = load_spec(SPEC)
    anchors, classes, grid = list(spec.region.anchors), spec.classes, SIZE // 32

    class FakeRunner(Runner):
        name = backend = "fake"
        reuses_output = reuse
        device_preprocess = device_decode = device

        def __init__(self):
            shape = (1, len(anchors) * (5 + classes), grid, grid)
            self.base = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)
            self.out = np.empty(shape, np.float32)
            self.boxes = np.empty((len(anchors) * grid * grid, 4), np.float32)
            self.scores = np.empty((len(anchors) * grid * grid, classes), np.float32)
            self.pre = Preprocessor(SIZE)
            self.log, self.returned = [], []

        def note(self, what):
            self.log.append((what, threading.current_thread().name))

        def preprocess(self, frame, slot=0, resize="opencv"):
            self.note("preprocess")
            self.pre(frame)
            return "the input on the device", self.pre._last

        def __call__(self, blob):
            self.note("network")
            x = self.pre.blob if isinstance(blob, str) else blob
            raw = self.base + 3.0 * float(x.mean()) - 1.5
            if reuse:
                self.out[...] = raw
                raw = self.out
            self.returned.append(raw)
            return raw

        def decode(self):
            self.note("decode")
            boxes, scores = decode_region(self.returned[-1][0], anchors, classes)
            if not reuse:
                return boxes, scores
            self.boxes[...], self.scores[...] = boxes, scores
            return self.boxes, self.scores

    class Watched(Detector):
        """Keeps what reaches ``postprocess``."""

        def postprocess(self, out, lb):
            self.seen.append(out)
            return super().postprocess(out, lb)

    d = Watched(LoadedModel(spec, None, spec.class_names(), "fake"), FakeRunner(), SIZE,
                conf=0.02)
    d.seen = []
    return d


def _arrays(out):
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("device", [False, True])
def test_a_reused_output_is_copied_once_per_frame_and_frames_do_not_alias(device, tmp_path):
    d = fake_detector(reuse=True, device=device)
    r = d.runner
    path = write_video(str(tmp_path / "in.avi"), 8)
    collect = Collect()
    Pipeline(d, open_source(path), [collect]).run()
    seen = d.seen
    assert len(seen) == 8
    owned = [r.out, r.boxes, r.scores]
    for i, out in enumerate(seen):          # copies, of this frame's output only
        for a in _arrays(out):
            assert not any(np.shares_memory(a, o) for o in owned)
            for other in seen[i + 1:]:
                assert not any(np.shares_memory(a, b) for b in _arrays(other))
    cap = cv2.VideoCapture(path)
    expected = []
    for _ in range(8):
        ok, img = cap.read()
        expected.append(d(img))
    assert [f[2] for f in collect.frames] == expected
    assert len({len(e) for e in expected}) > 1           # the frames really differ
    # called directly, the Detector decodes the runner's own buffers: no copy
    assert all(a is o for a, o in zip(_arrays(d.seen[-1]), owned[1:] if device else owned))


def test_fresh_outputs_are_not_copied(tmp_path):
    d = fake_detector(reuse=False)
    path = write_video(str(tmp_path / "in.avi"), 5)
    Pipeline(d, open_source(path), [Collect()]).run()
    assert len(d.seen) == 5 and all(s is r for s, r in zip(d.seen, d.runner.returned))


def test_a_device_runner_preprocesses_and_decodes_on_the_inference_thread(tmp_path):
    d = fake_detector(device=True)
    path = write_video(str(tmp_path / "in.avi"), 6)
    Pipeline(d, open_source(path), [Collect()]).run()
    log = d.runner.log
    assert [w for w, _ in log] == ["preprocess", "network", "decode"] * 6
    assert {t for _, t in log} == {"inference"}
