"""Sinks: where annotated frames and detections go. Several can be used at once.

- ``WindowSink``     ``--show``: an OpenCV window; q or ESC (or closing it) stops the run.
- ``VideoFileSink``  ``--save out.mp4``: source fps and size (mp4v, then avc1; .avi: MJPG).
- ``ImageDirSink``   ``--save dir/``: one image per frame (image sources keep their names).
- ``ImageFileSink``  ``--save out.jpg``: the annotated image of a single-image source.
- ``JsonLinesSink``  ``--json out.jsonl``: one JSON object per frame (``-``: stdout).
- ``MjpegServer``    ``--serve HOST:PORT``: MJPEG over HTTP at ``/stream.mjpg`` (and a tiny
  page at ``/``; anything else is 404). Each client has its own latest-frame slot served by its
  own thread, so a slow client skips frames instead of stalling the pipeline; the number of
  clients is bounded (503 beyond it) and a client that stops reading is dropped after
  ``CLIENT_TIMEOUT_S``.

A sink has ``write(frame)`` (a ``pipeline.Frame``: ``index``, ``image`` (BGR, annotated when
``needs_overlay``), ``origin``, ``detections``, ``times``) and ``close()``; errors users can
cause raise ``UserError``. Constructors open files and sockets, so bad paths fail at once.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

import cv2

from ..errors import UserError
from .sources import IMAGE_EXTS

VIDEO_FOURCCS = {".mp4": ("mp4v", "avc1"), ".m4v": ("mp4v", "avc1"), ".mov": ("mp4v", "avc1"),
                 ".avi": ("MJPG", "XVID", "mp4v"), ".mkv": ("mp4v", "MJPG", "XVID")}
DEFAULT_FPS = 30.0
STREAM_PATH = "/stream.mjpg"
BOUNDARY = "fastdsc-frame"
CLIENT_TIMEOUT_S = 10.0
CLIENT_SNDBUF = 256 * 1024      # small kernel buffer: a slow client gets fresh frames, not old
DEFAULT_HOST = "127.0.0.1"


class Sink:
    needs_overlay = False
    stop_requested = False

    def write(self, frame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def ensure_parent_dir(path: str, option: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if os.path.exists(d) and not os.path.isdir(d):
        raise UserError(f"{option} {path}: {d} is a file, not a directory")
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create the directory {d}: "
                        f"{e.strerror or e}") from None


# ---- JSON Lines ---------------------------------------------------------------------------

class JsonLinesSink(Sink):
    """``{"frame", "source", "width", "height", "detections": [...]}`` per line, flushed."""

    def __init__(self, path: str):
        self.path = path
        if path == "-":
            self._f, self._own = sys.stdout, False
            return
        ensure_parent_dir(path, "--json")
        try:
            self._f = open(path, "w", encoding="utf-8")
        except OSError as e:
            raise UserError(f"--json {path}: cannot write: {e.strerror or e}") from None
        self._own = True

    @staticmethod
    def record(frame) -> dict:
        return {"frame": frame.index, "source": frame.origin, "width": frame.width,
                "height": frame.height, "detections": [d.to_json() for d in frame.detections]}

    def write(self, frame) -> None:
        try:
            self._f.write(json.dumps(self.record(frame)) + "\n")
            self._f.flush()
        except OSError as e:                    # disk full: stop with one line, not a trace
            raise UserError(f"--json {self.path}: cannot write: {e.strerror or e} (the lines "
                            f"before frame {frame.index} are complete)") from None

    def close(self) -> None:
        if self._own and not self._f.closed:
            try:
                self._f.close()
            except OSError as e:
                raise UserError(f"--json {self.path}: cannot write: {e.strerror or e}") from None


# ---- files ----------------------------------------------------------------------------------

def _imwrite(path: str, image, option: str) -> None:
    ext = os.path.splitext(path)[1] or ".jpg"
    ok, data = cv2.imencode(ext, image)
    if not ok:
        raise UserError(f"{option} {path}: OpenCV cannot encode {ext} images")
    try:
        with open(path, "wb") as f:
            f.write(data.tobytes())
    except OSError as e:
        raise UserError(f"{option} {path}: cannot write: {e.strerror or e}") from None


class VideoFileSink(Sink):
    """A video at the source's frame rate and size (frames of another size are resized)."""

    needs_overlay = True

    def __init__(self, path: str, fps: Optional[float] = None):
        ext = os.path.splitext(path)[1].lower()
        if ext not in VIDEO_FOURCCS:
            raise UserError(f"--save {path}: unknown video type {ext or '(none)'} (use "
                            f"{', '.join(VIDEO_FOURCCS)}, or a directory for images)")
        self.path = path
        self.fps = fps if fps and fps > 0 else DEFAULT_FPS
        self.fourccs = VIDEO_FOURCCS[ext]
        self.fourcc: Optional[str] = None
        self.frames = 0
        self._writer = None
        self._size: Optional[Tuple[int, int]] = None
        ensure_parent_dir(path, "--save")
        try:                                    # fail now, not at the first frame
            with open(path, "wb"):
                pass
        except OSError as e:
            raise UserError(f"--save {path}: cannot write: {e.strerror or e}") from None

    def _open(self, w: int, h: int) -> None:
        for fourcc in self.fourccs:
            writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
            if writer.isOpened():
                self._writer, self._size, self.fourcc = writer, (w, h), fourcc
                return
            writer.release()
        raise UserError(f"--save {self.path}: OpenCV cannot write this video type here "
                        f"(tried {', '.join(self.fourccs)})")

    def write(self, frame) -> None:
        image = frame.image
        if self._writer is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()           # writes the container index: a playable file
            self._writer = None
            self._check_written()
        elif self.frames == 0 and os.path.isfile(self.path) and os.path.getsize(self.path) == 0:
            os.unlink(self.path)             # nothing was written: no empty placeholder

    def _check_written(self) -> None:
        """OpenCV's writer reports no write errors: read the container back (its header and
        index only), so a full disk is an error rather than a silently cut video."""
        cap = cv2.VideoCapture(self.path)
        try:
            readable = cap.isOpened()
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if readable else 0
        finally:
            cap.release()
        if not readable or count < self.frames - max(2, self.frames // 100):
            got = f"{count} of {self.frames} frames readable" if readable else "not readable"
            raise UserError(f"--save {self.path}: the video is incomplete ({got}): the disk "
                            "is full or the file could not be written")


class ImageDirSink(Sink):
    """One annotated image per frame: the source image's name, or ``frame_000123.jpg``."""

    needs_overlay = True

    def __init__(self, path: str, keep_names: bool):
        self.path = path
        self.keep_names = keep_names
        self._used = set()
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise UserError(f"--save {path}: cannot create the directory: "
                            f"{e.strerror or e}") from None
        if not os.access(path, os.W_OK):
            raise UserError(f"--save {path}: the directory is not writable")

    def write(self, frame) -> None:
        if self.keep_names:
            name = os.path.basename(frame.origin)
            if os.path.splitext(name)[1].lower() not in (".jpg", ".jpeg", ".png", ".bmp",
                                                          ".tif", ".tiff", ".webp"):
                name = os.path.splitext(name)[0] + ".jpg"
            if name in self._used:          # same name from two folders of a glob
                name = f"{frame.index:06d}_{name}"
        else:
            name = f"frame_{frame.index:06d}.jpg"
        self._used.add(name)
        _imwrite(os.path.join(self.path, name), frame.image, "--save")


class ImageFileSink(Sink):
    """``--save out.jpg`` for a single-image source."""

    needs_overlay = True

    def __init__(self, path: str):
        self.path = path
        ensure_parent_dir(path, "--save")

    def write(self, frame) -> None:
        _imwrite(self.path, frame.image, "--save")


def is_video_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in VIDEO_FOURCCS


def is_image_file_path(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTS and not os.path.isdir(path)


# ---- window -------------------------------------------------------------------------------

class WindowSink(Sink):
    """An OpenCV window; q or ESC, or closing the window, asks the pipeline to stop."""

    needs_overlay = True

    def __init__(self, title: str = "detector"):
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        self._shown = False

    @staticmethod
    def unavailable() -> Optional[str]:
        """Why no window can be shown here, or None when one can."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or
                                                     os.environ.get("WAYLAND_DISPLAY")):
            return "no display (DISPLAY is not set)"
        try:
            cv2.namedWindow("detector-probe", cv2.WINDOW_NORMAL)
            cv2.destroyWindow("detector-probe")
        except cv2.error:
            return "this OpenCV has no GUI support (e.g. opencv-python-headless)"
        return None

    def write(self, frame) -> None:
        cv2.imshow(self.title, frame.image)
        self._shown = True
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), ord("Q"), 27):
            self.stop_requested = True
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


# ---- MJPEG over HTTP ----------------------------------------------------------------------

def parse_serve(text: str) -> Tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` (host 127.0.0.1); ``[::1]:PORT`` for IPv6."""
    t = (text or "").strip()
    if t.startswith("["):
        host, sep, port = t[1:].partition("]:")
        if not sep:
            raise UserError(f"--serve {text}: expected [IPV6]:PORT")
    elif ":" in t:
        host, _, port = t.rpartition(":")
    else:
        host, port = "", t
    host = host or DEFAULT_HOST
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"--serve {text}: expected HOST:PORT with a port in 0..65535 "
                        f"(e.g. 127.0.0.1:8080)")
    return host, int(port)


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


def _handler(hub: FrameHub):
    class Handler(BaseHTTPRequestHandler):
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
            if not hub.join(me):
                self._send(503, "text/plain; charset=utf-8",
                           f"too many clients (at most {hub.max_clients})\n".encode())
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
                    got = hub.wait(seq, 1.0)
                    if got is None:
                        break
                    jpeg, new = got
                    if jpeg is None:
                        continue
                    seq = new
                    self.wfile.write(b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg"
                                     b"\r\nContent-Length: " + str(len(jpeg)).encode() +
                                     b"\r\n\r\n" + jpeg + b"\r\n")
                    hub.count_sent(me)
            except (OSError, socket.timeout):
                pass                               # client went away or stopped reading
            finally:
                hub.leave(me)

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class MjpegServer(Sink):
    """Serve the annotated frames as MJPEG. ``url`` is the stream address."""

    needs_overlay = True

    def __init__(self, host: str = DEFAULT_HOST, port: int = 8080, max_clients: int = 4,
                 quality: int = 80):
        if max_clients < 1:
            raise UserError(f"--max-clients {max_clients}: must be at least 1")
        self.hub = FrameHub(max_clients)
        self.quality = quality
        cls = _Server6 if ":" in host else _Server
        try:
            self.httpd = cls((host, port), _handler(self.hub))
        except OSError as e:
            raise UserError(f"--serve {host}:{port}: cannot listen: {e.strerror or e}") from None
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
