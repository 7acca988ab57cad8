"""A real HTTP server on 127.0.0.1 for the published-weights tests: serves byte strings by
name, answers Range requests (206), and can cut a response short to test resuming."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple


class Files:
    """What the server serves and what it saw."""

    def __init__(self):
        self.files: Dict[str, bytes] = {}
        self.cut: Dict[str, List[int]] = {}      # name -> bytes to send on the next responses
        self.requests: List[Tuple[str, Optional[str]]] = []   # (name, Range header)
        self.lock = threading.Lock()

    def names_requested(self) -> List[str]:
        return [n for n, _ in self.requests]


def _handler(state: Files):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server's name)
            name = self.path.lstrip("/")
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((name, rng))
                data = state.files.get(name)
                cuts = state.cut.get(name)
                cut = cuts.pop(0) if cuts else None
            if data is None:
                self.send_error(404)
                return
            start = int(rng.split("=")[1].split("-")[0]) if rng else 0
            if start >= len(data) and rng:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206 if rng else 200)
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Connection", "close")
            self.end_headers()
            body = data[start:] if cut is None else data[start:start + cut]
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *args):
            pass

    return Handler


class WeightsServer:
    """``with WeightsServer() as s: s.files.files["x.weights"] = data; s.url`` ->
    ``http://127.0.0.1:PORT/``."""

    def __init__(self):
        self.files = Files()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.files))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "WeightsServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def dead_url() -> str:
    """A 127.0.0.1 URL where nothing listens (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"
