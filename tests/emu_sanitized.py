"""Runs the emu backend under AddressSanitizer in a worker process (tests only).

A sanitized emulator library can only be loaded by a process started with libasan preloaded
(``detector.engine.emu.sanitizer_env``), so the tests keep one such worker per session and
send it requests; arrays travel as .npy/.npz files in a temporary directory. When a kernel
touches memory out of bounds, ASan aborts the worker: the client raises ``WorkerCrashed``
with the sanitizer's report, and the next request starts a fresh worker.

    python tests/emu_sanitized.py   # the worker: JSON requests on stdin, one JSON reply per line
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, Optional, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class WorkerCrashed(AssertionError):
    pass


class SanitizedEmu:
    """Client side: ``execute`` / ``call`` / ``preprocess`` a plan in the ASan worker."""

    def __init__(self, workdir: str, env: Optional[Dict[str, str]] = None):
        self.workdir = workdir
        self.env = env
        self.proc: Optional[subprocess.Popen] = None
        self._n = 0

    def _start(self) -> None:
        from detector.engine.emu import sanitizer_env
        env = sanitizer_env(self.env)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        self.stderr_path = os.path.join(self.workdir, f"worker-{self._n}.stderr")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env, text=True,
                                     cwd=self.workdir)

    def request(self, req: dict) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self._n += 1
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.proc.wait(timeout=60)
            self._stderr.close()
            with open(self.stderr_path, errors="replace") as f:
                report = f.read()
            self.proc = None
            raise WorkerCrashed(f"sanitized emu worker died (exit {self.proc_rc(report)}):\n"
                                + report[-8000:])
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    @staticmethod
    def proc_rc(report: str) -> str:
        return "AddressSanitizer" if "AddressSanitizer" in report else "?"

    def _path(self, name: str) -> str:
        self._n += 1
        return os.path.join(self.workdir, f"{self._n}-{name}")

    def _save_plan(self, plan) -> str:
        path = self._path("plan.safetensors")
        plan.save(path)
        return path

    def execute(self, plan, inputs: Dict[int, np.ndarray], outputs: Sequence[int],
                dtype: str = "fp32") -> Dict[int, np.ndarray]:
        inp = self._path("in.npz")
        np.savez(inp, **{str(k): np.asarray(v, np.float32) for k, v in inputs.items()})
        out = self._path("out.npz")
        self.request({"cmd": "execute", "plan": self._save_plan(plan), "dtype": dtype,
                      "inputs": inp, "outputs": [int(o) for o in outputs], "result": out})
        with np.load(out) as z:
            return {int(k): z[k] for k in z.files}

    def call(self, plan, blob: np.ndarray, dtype: str = "fp32"):
        """Returns (raw head, boxes, scores) from ``engine(blob)`` and ``engine.decode()``."""
        inp = self._path("blob.npy")
        np.save(inp, np.asarray(blob, np.float32))
        out = self._path("out.npz")
        self.request({"cmd": "call", "plan": self._save_plan(plan), "dtype": dtype, "blob": inp,
                      "result": out})
        with np.load(out) as z:
            return z["raw"], z["boxes"], z["scores"]

    def preprocess(self, plan, frame: np.ndarray, letterbox, dtype: str = "fp32",
                   resize: str = "opencv") -> np.ndarray:
        inp = self._path("frame.npy")
        np.save(inp, frame)
        out = self._path("out.npz")
        self.request({"cmd": "preprocess", "plan": self._save_plan(plan), "dtype": dtype,
                      "frame": inp, "letterbox": [int(v) for v in letterbox], "result": out,
                      "resize": resize})
        with np.load(out) as z:
            return z["blob"]

    def selftest(self, kernel: str, grid, block, shmem: int, args: list, buffers: Dict[str, list]):
        """Launch a kernel of tests/emu_selftest.cu; ``args`` items are numbers or buffer
        names; ``buffers`` maps names to (dtype, initial values). Returns the final buffers."""
        out = self._path("selftest.npz")
        reply = self.request({"cmd": "selftest", "kernel": kernel, "grid": list(grid),
                              "block": list(block), "shmem": shmem, "args": args,
                              "buffers": buffers, "result": out})
        with np.load(out) as z:
            return {k: z[k] for k in z.files}, reply.get("status")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
            self._stderr.close()
        self.proc = None


# ---- worker side ------------------------------------------------------------------------------

SELFTEST_KERNELS = {"st_reverse": ("PPi", True), "st_scan": ("PPi", True), "st_divergent": ("P", True),
                    "st_shared_oob": ("Pi", True), "st_index": ("P", False), "st_half": ("PPPi", False)}


def _selftest(req: dict) -> dict:
    from detector.engine.emu import EmuBackend, EmuLibrary
    from detector.engine.launch import KernelSpec, Launch
    specs = {k: KernelSpec(k, sig, sync) for k, (sig, sync) in SELFTEST_KERNELS.items()}
    lib = EmuLibrary(sanitize=True, source=os.path.join(HERE, "emu_selftest.cu"), kernels=specs)
    be = EmuBackend(emu_library=lib)
    arrays = {name: np.asarray(vals, dtype) for name, (dtype, vals) in req["buffers"].items()}
    dev = {}
    for name, arr in arrays.items():
        dev[name] = be.alloc(arr.nbytes)
        be.upload(dev[name], arr)
    args = tuple(dev[a] if isinstance(a, str) else a for a in req["args"])
    status = "ok"
    try:
        be.prepare(Launch(req["kernel"], tuple(req["grid"]), tuple(req["block"]), req["shmem"], args))()
    except RuntimeError as e:
        status = str(e)
    for name, arr in arrays.items():
        be.download(arr, dev[name])
    np.savez(req["result"], **arrays)
    be.close()
    return {"status": status}


def _serve() -> None:
    from detector.engine.kernel_engine import KernelEngine
    from detector.engine.plan import load_plan
    for line in sys.stdin:
        req = json.loads(line)
        try:
            cmd = req["cmd"]
            if cmd == "selftest":
                print(json.dumps(_selftest(req)), flush=True)
                continue
            plan = load_plan(req["plan"])
            with KernelEngine(plan, "emu", req["dtype"], sanitize=True) as eng:
                if cmd == "execute":
                    with np.load(req["inputs"]) as z:
                        inputs = {int(k): z[k] for k in z.files}
                    out = eng.execute(inputs, req["outputs"])
                    np.savez(req["result"], **{str(k): v for k, v in out.items()})
                elif cmd == "call":
                    raw = eng(np.load(req["blob"])).copy()
                    boxes, scores = eng.decode()
                    np.savez(req["result"], raw=raw, boxes=boxes, scores=scores)
                elif cmd == "preprocess":
                    from collections import namedtuple
                    lb = namedtuple("Letterbox", "frame_w frame_h net_w net_h new_w new_h left top")(
                        *req["letterbox"])
                    dev, _ = eng.preprocess_frame(np.load(req["frame"]), lb,
                                                  resize=req.get("resize", "opencv"))
                    blob = eng.execute({}, [0])[0]
                    np.savez(req["result"], blob=blob)
                else:
                    raise ValueError(f"unknown command {cmd!r}")
            print(json.dumps({"ok": True}), flush=True)
        except Exception as e:   # reported to the client, which raises it
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    _serve()
