"""MJPEG over HTTP, read by real HTTP clients while a real pipeline runs."""
from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

import detector
from detector.errors import ParamError, UserError
from detector.stream.mjpeg import BOUNDARY, MjpegServer, parse_serve
from detector.stream.pipeline import Pipeline
from detector.stream.sinks import Sink
from detector.stream.sources import open_source
from stream_helpers import MODEL, SIZE, gst_live, requires_gst


@pytest.fixture(scope="module")
def det():
    return detector.load(MODEL, img_size=SIZE)


class Count(Sink):
    def __init__(self):
        self.n = 0

    def write(self, frame):
        self.n += 1


class Running:
    """A live pipeline (videotestsrc at 30 fps) serving MJPEG, in a background thread."""

    def __init__(self, det, max_clients=4, source=None, port=0):
        self.server = MjpegServer("127.0.0.1", port, max_clients=max_clients)
        self.count = Count()
        self.pipe = Pipeline(det, open_source(source or gst_live(160, 120)),
                             [self.count, self.server])
        self.thread = threading.Thread(target=self.pipe.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.pipe.stop("test")
        self.thread.join(60)
        assert not self.thread.is_alive()

    def connect(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        conn.request("GET", "/stream.mjpg")
        return conn, conn.getresponse()


def read_parts(resp, n):
    """Parse ``n`` multipart parts: boundary line, headers, Content-Length bytes of JPEG."""
    ctype = resp.getheader("Content-Type")
    assert ctype == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    parts = []
    for _ in range(n):
        line = resp.fp.readline()
        while line in (b"\r\n", b"\n"):
            line = resp.fp.readline()
        assert line.rstrip(b"\r\n") == b"--" + BOUNDARY.encode()
        headers = {}
        while True:
            h = resp.fp.readline().rstrip(b"\r\n")
            if not h:
                break
            k, v = h.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        assert headers["content-type"] == "image/jpeg"
        body = resp.fp.read(int(headers["content-length"]))
        assert body[:2] == b"\xff\xd8" and body[-2:] == b"\xff\xd9"      # SOI ... EOI
        parts.append(body)
    return parts


@requires_gst
def test_stream_serves_jpeg_frames(det):
    with Running(det) as run:
        conn, resp = run.connect()
        assert resp.status == 200
        parts = read_parts(resp, 5)
        resp.close()
        conn.close()
        images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
        assert all(img.shape == (120, 160, 3) for img in images)
        assert len(set(parts)) == 5                  # five different frames, not one resent
        base = f"http://127.0.0.1:{run.server.port}"
        page = urllib.request.urlopen(base + "/", timeout=30).read()
        assert b"/stream.mjpg" in page
        for path in ("/etc/passwd", "/../stream.mjpg", "/stream", "/favicon.ico"):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(base + path, timeout=30)
            assert e.value.code == 404, path


@requires_gst
def test_clients_are_bounded(det):
    with Running(det, max_clients=2) as run:
        a, ra = run.connect()
        b, rb = run.connect()
        read_parts(ra, 1)
        read_parts(rb, 1)
        c, rc = run.connect()
        assert rc.status == 503
        c.close()
        ra.close()
        a.close()             # a slot frees up once the server notices the client has left
        for _ in range(200):
            d, rd = run.connect()
            if rd.status == 200:
                break
            d.close()
            time.sleep(0.05)
        assert rd.status == 200
        read_parts(rd, 1)
        for r in (rb, b, rd, d):
            r.close()


@requires_gst
def test_slow_client_does_not_stall_the_pipeline(det):
    # Noise frames (~50 kB JPEGs): a client that never reads fills its socket buffers quickly.
    with Running(det, source=gst_live(320, 240, extra="pattern=snow ")) as run:
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(30)
        slow.connect(("127.0.0.1", run.server.port))
        slow.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")   # ... and never reads
        conn, resp = run.connect()
        before = run.count.n
        parts = read_parts(resp, 60)                 # ~2 s of frames at 30 fps
        assert len(set(parts)) == 60
        assert run.count.n >= before + 50            # the pipeline kept going
        sent = sorted(run.server.hub.sent.values())
        assert len(sent) == 2 and sent[0] < 40 <= sent[1], sent   # the slow one is stuck
        resp.close()
        conn.close()
        slow.close()


def test_parse_serve():
    assert parse_serve("8080") == ("127.0.0.1", 8080)
    assert parse_serve(":8080") == ("127.0.0.1", 8080)
    assert parse_serve("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_serve("[::1]:9000") == ("::1", 9000)
    for bad in ("host:", "host:99999", "a:b", "[::1]"):
        with pytest.raises(ParamError, match="serve") as e:     # the CLI shows it as --serve
            parse_serve(bad)
        assert e.value.param == "serve" and e.value.value == bad


def test_port_in_use_is_a_user_error():
    first = MjpegServer("127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match="cannot listen"):
            MjpegServer("127.0.0.1", first.port)
    finally:
        first.close()


@requires_gst
def test_http_stream_source_reconnects_when_the_server_restarts(det):
    """Our own MJPEG stream read back as an http:// source (OpenCV's FFmpeg); the server goes
    away mid-stream and comes back on the same port: the live run reconnects."""
    first = Running(det).__enter__()
    port = first.server.port
    url = first.server.url
    dropped = threading.Event()
    warnings = []

    class Watch(Sink):
        def __init__(self):
            self.n = 0

        def write(self, frame):
            self.n += 1
            assert frame.image.shape == (120, 160, 3)
            if self.n == 5:
                dropped.set()

    watch = Watch()
    own = detector.load(MODEL, img_size=SIZE)      # a Detector serves one pipeline at a time
    consumer = Pipeline(own, open_source(url, warn=warnings.append), [watch], max_frames=15,
                 warn=warnings.append, backoff=(0.1, 0.5))
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    second = None
    try:
        assert dropped.wait(60)
        first.__exit__(None, None, None)              # the server goes away mid-stream
        second = Running(det, port=port).__enter__()    # back, on the same port
        thread.join(120)
        assert not thread.is_alive()
    finally:
        consumer.stop("test")
        if second is not None:
            second.__exit__(None, None, None)
    assert watch.n == 15 and consumer.stats.reconnects >= 1, warnings
    assert any("reconnecting" in w for w in warnings)
