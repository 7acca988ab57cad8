"""The peer runtimes on the CPU: what a user would run instead of us, on the same network.

- ``ort-bare``: ONNX Runtime with default options on the exported graph (``detector export
  --format onnx``: the same network, BN folded, the portable op set), ``session.run`` with a
  feed dict.
- ``opencv-dnn``: OpenCV's DNN module, from darknet .cfg/.weights written by our writer where
  this OpenCV has the darknet importer (OpenCV 4), else from the exported ONNX graph (OpenCV
  5 removed the importer), else skipped with a note.
"""
from __future__ import annotations

import os

import cv2

from ..engine.ort_session import ort_model_path
from ..io.darknet_cfg import write_cfg
from ..io.darknet_weights import write_weights
from .case import Skip, Timed


def exported_graph(s) -> str:
    """The exported ONNX graph of the subject's plan (cached on disk)."""
    return ort_model_path(s.plan, "conv", s.cache_dir, ort_ops=False)


def ort_bare(s) -> Timed:
    if "ort" not in s.available:
        raise Skip("onnxruntime is not installed")
    import onnxruntime
    sess = onnxruntime.InferenceSession(exported_graph(s), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return Timed(lambda: sess.run(None, {name: s.blob}), "ORT default options, exported graph")


def opencv_dnn(s) -> Timed:
    if hasattr(cv2.dnn, "readNetFromDarknet"):
        stem = os.path.join(s.workdir, f"{s.spec.name}-{s.size}")
        spec = s.spec.replace(size=s.size)
        write_cfg(spec, stem + ".cfg")
        write_weights(stem + ".weights", spec, s.state)
        net = cv2.dnn.readNetFromDarknet(stem + ".cfg", stem + ".weights")
        note = f"OpenCV {cv2.__version__}, darknet importer"
    elif hasattr(cv2.dnn, "readNetFromONNX"):
        net = cv2.dnn.readNetFromONNX(exported_graph(s))
        note = f"OpenCV {cv2.__version__}, ONNX importer (no darknet importer)"
    else:
        raise Skip(f"OpenCV {cv2.__version__} has no DNN importer")
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)

    def run():
        net.setInput(s.blob)
        return net.forward()
    run()        # fail here (not in the rounds) if the importer built something unrunnable
    return Timed(run, note)
