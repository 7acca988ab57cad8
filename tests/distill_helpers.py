"""Helpers of the footage and distillation tests: a small teacher (the conversion tests' mini
network with random weights and a confident head, so that it detects a few objects with score
>= 0.25 on most frames, depending on the picture), a folder of images, and a looping live
MJPEG stream on 127.0.0.1."""
from __future__ import annotations

import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
from convert_helpers import MINI, mini_spec, random_state
from stream_helpers import frame_image

from detector.io.checkpoint import save_checkpoint

HEAD = f"layers.{len(MINI['layers']) - 1}.conv"


def teacher_state(seed=0):
    spec = mini_spec()
    state = random_state(spec, seed)
    per = 5 + spec.classes
    for a in range(len(spec.region.anchors)):
        state[HEAD + ".bias"][a * per + 4] += 0.5                 # objectness up
        state[HEAD + ".weight"][a * per + 4] *= 6.0               # ... and picture-dependent
        state[HEAD + ".weight"][a * per + 5:(a + 1) * per] *= 10.0    # peaked classes
    return spec, state


def save_teacher(path, seed=0):
    spec, state = teacher_state(seed)
    save_checkpoint(path, spec, state)
    return path


def write_images(folder, n, w=96, h=72):
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"im{i:02d}.png"), frame_image(3 * i, w, h))
    return str(folder)


class LoopingMjpeg:
    """A live MJPEG stream on 127.0.0.1 that shows ``frames`` in a loop, forever."""

    def __init__(self, frames, fps=100.0):
        jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):          # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=fr")
                self.end_headers()
                try:
                    for i in range(100000):
                        j = jpegs[i % len(jpegs)]
                        self.wfile.write(b"--fr\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(j)).encode() + b"\r\n\r\n" + j + b"\r\n")
                        time.sleep(1.0 / fps)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
