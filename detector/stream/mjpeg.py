"""MJPEG over HTTP: the annotated frames as a ``multipart/x-mixed-replace`` stream.

The stream is at ``/stream.mjpg``, a tiny page that shows it at ``/``; anything else is 404.
Each client has its own latest-frame slot served by its own thread, so a slow client skips
frames instead of stalling the pipeline; the number of clients is bounded (503 beyond it) and
a client that stops reading is dropped after ``CLIENT_TIMEOUT_S``. Frames are encoded only
while someone is watching. The server binds 127.0.0.1 unless given another host.
"""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

import cv2

from ..errors import ParamError
from .sinks import Label, Sink

STREAM_PATH = "/stream.mjpg"
BOUNDARY = "fastdsc-frame"
CLIENT_TIMEOUT_S = 10.0
CLIENT_SNDBUF = 256 * 1024      # small kernel buffer: a slow client gets fresh frames, not old
DEFAULT_HOST = "127.0.0.1"


def split_host_port(text: str) -> Optional[Tuple[str, int]]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); ``[::1]:PORT`` for IPv6.
    None when ``text`` is none of these."""
    t = (text or "").strip()
    if t.startswith("["):
        host, sep, port = t[1:].partition("]:")
        if not sep:
            return None
    elif ":" in t:
        host, _, port = t.rpartition(":")
    else:
        host, port = "", t
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        return None
    return host or DEFAULT_HOST, int(port)


def parse_serve(text: str, label: Optional[Label] = None) -> Tuple[str, int]:
    """``split_host_port``, or a UserError naming ``label`` (default: the ``serve``
    parameter)."""
    label = label or Label(text, "serve")
    address = split_host_port(text)
    if address is None:
        if (text or "").strip().startswith("[") and "]:" not in text:
            raise label.error("expected [IPV6]:PORT")
        raise label.error("expected HOST:PORT with a port in 0..65535 (e.g. 127.0.0.1:8080)")
    return address


class FrameHub:
    """The latest JPEG and its sequence number; clients wait for a newer one."""

    def __init__(self, max_clients: int):
        self.max_clients = max_clients
        self.clients = 0
        self._cond = threading.Condition()
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self._closed = False
        self.rejected = 0
        self.sent: Dict[int, int] = {}     # frames sent, by client id (for diagnostics)

    def join(self, client: int) -> bool:
        with self._cond:
            if self._closed or self.clients >= self.max_clients:
                self.rejected += 1
                return False
            self.clients += 1
            self.sent[client] = 0
            return True

    def leave(self, client: int) -> None:
        with self._cond:
            self.clients -= 1
            self.sent.pop(client, None)

    def count_sent(self, client: int) -> None:
        with self._cond:
            self.sent[client] += 1

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            self._cond.notify_all()

    def wait(self, seq: int, timeout: float):
        """(jpeg, seq) newer than ``seq``; (None, seq) on timeout; None once closed."""
        with self._cond:
            if not self._closed and self._seq <= seq:
                self._cond.wait(timeout)
            if self._closed:
                return None
            if self._seq <= seq:
                return None, seq
            return self._jpeg, self._seq

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


INDEX_HTML = (b"<!doctype html><html><head><title>FastDSC-YOLO</title></head>"
              b"<body style=\"margin:0;background:#111\"><img src=\"" + STREAM_PATH.encode() +
              b"\" style=\"display:block;max-width:100%;margin:auto\"></body></html>\n")


class _Handler(BaseHTTPRequestHandler):
    """One client: the page, the stream, or 404. ``hub`` is set per server (``_handler``)."""

    hub: FrameHub
    server_version = "fastdsc-yolo"
    protocol_version = "HTTP/1.0"
    timeout = CLIENT_TIMEOUT_S                 # a client that stops reading is dropped

    def log_message(self, format, *args):      # noqa: A002 -- quiet
        pass

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF)
        except OSError:
            pass

    def do_GET(self):                          # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == STREAM_PATH:
            self._stream()
        elif path in ("/", "/index.html"):
            self._send(200, "text/html; charset=utf-8", INDEX_HTML)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def do_HEAD(self):                         # noqa: N802
        path = self.path.split("?", 1)[0]
        ok = path in ("/", "/index.html", STREAM_PATH)
        self.send_response(200 if ok else 404)
        self.end_headers()

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        me = id(self)
        if not self.hub.join(me):
            self._send(503, "text/plain; charset=utf-8",
                       f"too many clients (at most {self.hub.max_clients})\n".encode())
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type",
                             f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-cache, no-store")
            self.send_header("Pragma", "no-cache")
            self.end_headers()
            seq = 0
            while True:
                got = self.hub.wait(seq, 1.0)
                if got is None:
                    break
                jpeg, new = got
                if jpeg is None:
                    continue
                seq = new
                self.wfile.write(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg"
                                 b"\r\nContent-Length: " + str(len(jpeg)).encode() +
                                 b"\r\n\r\n" + jpeg + b"\r\n")
                self.hub.count_sent(me)
        except (OSError, socket.timeout):
            pass                               # client went away or stopped reading
        finally:
            self.hub.leave(me)


def _handler(hub: FrameHub):
    return type("Handler", (_Handler,), {"hub": hub})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MjpegServer(Sink):
    """Serve the annotated frames as MJPEG. ``url`` is the stream address."""

    needs_overlay = True

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, max_clients: int = 4,
                 quality: int = 80, label: Optional[Label] = None):
        if max_clients < 1:
            raise ParamError("max_clients", "must be at least 1", value=max_clients)
        self.hub = FrameHub(max_clients)
        self.quality = quality
        cls = _Server6 if ":" in host else _Server
        try:
            self.httpd = cls((host, port), _handler(self.hub))
        except OSError as e:
            label = label or Label(f"{host}:{port}")
            raise label.error(f"cannot listen: {e.strerror or e}") from None
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={
            "poll_interval": 0.2}, name="mjpeg-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{STREAM_PATH}"

    def write(self, frame) -> None:
        if self.hub.clients == 0:
            return                                  # nobody watching: no encoding cost
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self.hub.publish(data.tobytes())

    def close(self) -> None:
        self.hub.close()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(2.0)
