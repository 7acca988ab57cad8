"""The kernel engine: runs a lowered ``Plan`` op by op with the FastDSC kernels.

    from detector.engine.kernel_engine import KernelEngine
    eng = KernelEngine(plan, backend="cuda", dtype="fp16")   # or backend="emu" (CPU)
    raw = eng(blob)                          # blob [1, 3, S, S] float32 -> raw head, float32
    dev, lb = eng.preprocess_frame(frame)    # BGR uint8 frame -> input letterboxed on the device
    raw = eng(dev)                           # run on it (only the frame's bytes were uploaded)
    boxes, scores = eng.decode()             # region decode of the last output on the device
    eng.forward(dev)                         # run, leaving the raw head on the device ...
    boxes, scores = eng.decode()             # ... where only the decode reads it
    eng.close()

    eng = KernelEngine(plan, backend="emu", max_batch=4)   # buffers for up to 4 frames
    ins = [eng.preprocess_frame(f, slot=i)[0] for i, f in enumerate(frames)]
    raw = eng(ins)                           # [n, A*(5+C), S/32, S/32]; or eng(blobs [n, 3, S, S])
    boxes, scores = eng.decode()             # [n, A*H*W, 4], [n, A*H*W, C]

Everything is allocated when the engine is built: one device buffer per plan buffer (the
sources of a concat are placed inside its destination, so concats cost nothing), the weights
(converted to the engine's dtype) and the gathers' channel indices (int32), page-locked host
staging buffers, and the kernel launches of every op with their arguments. A frame then is:
upload, replay the launches on one stream, download. With ``max_batch`` > 1 every buffer
(and the input, output and decode staging) is allocated once per batch slot, and the launches
are prepared per slot: a batch of ``n`` frames is one upload each, the launches of slots
``0 .. n-1`` replayed back to back on the stream, and one synchronisation. Needs numpy only (plus pycuda for
``cuda``); never imports torch.

Not thread-safe: use one engine per thread (the ``cuda`` backend makes its context current
around every call, so that thread may differ from the one that built the engine).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from ..preprocess import check_frame, letterbox_geometry
from . import launch as L
from .cuda import CudaBackend
from .emu import EmuBackend
from .plan import Plan
from .plan_ops import Concat, Conv, Gather, Op

BACKENDS = ("emu", "cuda")
NP_DTYPE = {"fp32": np.float32, "fp16": np.float16}


def make_backend(name: str, device: int = 0, sanitize: bool = False, threads: Optional[int] = None):
    if name == "emu":
        return EmuBackend(sanitize=sanitize, threads=threads)
    if name == "cuda":
        return CudaBackend(device=device)
    raise UserError(f"unknown kernel backend {name!r}: expected one of {', '.join(BACKENDS)}")


class DeviceInput(NamedTuple):
    """The network input already on the device (from ``preprocess_frame``), in batch slot
    ``slot``."""
    engine_id: int
    frame_w: int
    frame_h: int
    slot: int = 0


class OpTime(NamedTuple):
    index: int
    name: str
    op: str
    path: str        # kernel path (gemm, dw3x3, im2col_gemm, direct, maxpool, ...)
    ms: float


class KernelEngine:
    """Executes ``plan`` with backend ``emu`` or ``cuda`` in ``fp32`` or ``fp16``.

    ``device``: CUDA device ordinal; ``sanitize``: emu only, AddressSanitizer build (the
    process must run with ``detector.engine.emu.sanitizer_env()``); ``threads``: emu only, CPU
    threads running blocks (default: all CPUs); ``max_batch``: the most frames of one call.
    """

    def __init__(self, plan: Plan, backend: str = "emu", dtype: str = "fp32", device: int = 0,
                 sanitize: bool = False, threads: Optional[int] = None, max_batch: int = 1):
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        self.plan = plan
        self.max_batch = max_batch
        self.dtype = L.check_dtype(dtype)
        self.np_dtype = NP_DTYPE[dtype]
        self.itemsize = L.ITEMSIZE[dtype]
        plan.check()          # native code indexes the buffers with the ops
        self.backend = make_backend(backend, device, sanitize, threads)
        self.backend_name = backend
        self._closed = False
        try:
            with self.backend.activate():
                self._setup()
        except BaseException:
            self.backend.close()
            raise

    # ---- construction ---------------------------------------------------------------------
    def _setup(self) -> None:
        plan, be = self.plan, self.backend
        self.alias = concat_aliases(plan)
        self._base: Dict[int, int] = {}
        for i, (c, h, w) in enumerate(plan.buffers):
            if i not in self.alias:
                self._base[i] = be.alloc(c * h * w * self.itemsize * self.max_batch)
        self._tensors: Dict[str, int] = {}
        for op in plan.ops:
            for key, arr in _DEVICE_DATA.get(type(op), _no_data)(op, plan, self.np_dtype):
                if key not in self._tensors:
                    self._tensors[key] = be.alloc(arr.nbytes)
                    be.upload(self._tensors[key], arr)
        scratch_elems = max([L.im2col_elems(plan, op) for op in plan.ops] + [0])
        scratch = be.alloc(scratch_elems * self.itemsize) if scratch_elems else 0
        # the launches of each batch slot (the slots share the weights and the scratch: they
        # run one after another on one stream); ``_steps`` is slot 0's
        self._slot_steps = [self._prepare_steps(slot, scratch) for slot in range(self.max_batch)]
        self._steps: List[Tuple[int, str, List[Callable[[], None]]]] = self._slot_steps[0]

        c0, h0, w0 = plan.buffers[0]
        self.input_shape = (1, c0, h0, w0)
        co, ho, wo = plan.buffers[plan.output]
        self.output_shape = (1, co, ho, wo)
        self._in_host = be.host_buffer((self.max_batch, c0, h0, w0), np.float32)
        self._out_host = be.host_buffer((self.max_batch, co, ho, wo), np.float32)
        self._setup_edges(c0 * h0 * w0, co * ho * wo)
        self._frames: List[Optional[_FrameStage]] = [None] * self.max_batch
        self._region = None
        self._ran: Optional[Tuple[int, ...]] = None    # the slots of the last run
        self._ran_batch = False

    def _prepare_steps(self, slot: int, scratch: int):
        plan, be = self.plan, self.backend
        steps = []
        for i, op in enumerate(plan.ops):
            launches = L.op_launches(plan, op, self.dtype, lambda b: self.addr(b, slot),
                                     self._tensors.__getitem__, scratch)
            if isinstance(op, Concat):      # sources placed inside the destination: no copy
                launches = [la for la, s in zip(launches, op.srcs) if s not in self.alias]
            steps.append((i, op_path(plan, op), [be.prepare(la) for la in launches]))
        return steps

    def _setup_edges(self, n_in: int, n_out: int) -> None:
        """Where each slot's float32 input and output live on the device; for fp16, the
        conversions at the edges (on the device)."""
        be, out, slots = self.backend, self.plan.output, range(self.max_batch)
        if self.dtype == "fp16":
            in_dev, out_dev = be.alloc(n_in * 4 * self.max_batch), be.alloc(n_out * 4 * self.max_batch)
            self._in_dev = [in_dev + s * n_in * 4 for s in slots]
            self._out_dev = [out_dev + s * n_out * 4 for s in slots]
            self._to_half = [be.prepare(L.convert("fp32", self._in_dev[s], self.addr(0, s), n_in))
                             for s in slots]
            self._to_float = [be.prepare(L.convert("fp16", self.addr(out, s), self._out_dev[s],
                                                   n_out)) for s in slots]
        else:
            self._in_dev = [self.addr(0, s) for s in slots]
            self._out_dev = [self.addr(out, s) for s in slots]
            self._to_half = self._to_float = None

    def addr(self, buf: int, slot: int = 0) -> int:
        """Device address of plan buffer ``buf`` (of batch slot ``slot``)."""
        if buf in self.alias:
            base, offset = self.alias[buf]
            return self.addr(base, slot) + offset * self.itemsize
        c, h, w = self.plan.buffers[buf]
        return self._base[buf] + slot * c * h * w * self.itemsize

    # ---- running ----------------------------------------------------------------------------
    def __call__(self, blob) -> np.ndarray:
        """Run one frame: ``blob`` [1, 3, S, S] float32 (host) or a ``DeviceInput`` from
        ``preprocess_frame``; or a batch: blobs [n, 3, S, S] or the DeviceInputs of slots
        ``0 .. n-1`` (a list). Returns the raw head [n, A*(5+C), S/32, S/32] float32 (a buffer
        reused by the next call: copy it to keep it)."""
        slots = self._forward(blob, download=True)
        if len(slots) == self.max_batch:
            return self._out_host
        return self._out_host[slots[0]:slots[0] + len(slots)]

    def forward(self, blob) -> None:
        """Run one frame (or a batch) and leave the raw head on the device, for ``decode()``."""
        self._forward(blob, download=False)

    def _forward(self, blob, download: bool) -> Tuple[int, ...]:
        self._check_open()
        slots, batch = self._slots(blob)
        be = self.backend
        with be.activate():
            if not isinstance(blob, (DeviceInput, list, tuple)):
                self._upload_input(blob)
            for slot in slots:
                for _, _, calls in self._slot_steps[slot]:
                    for call in calls:
                        call()
                if download:
                    if self._to_float is not None:
                        self._to_float[slot]()
                    be.download(self._out_host[slot], self._out_dev[slot])
            be.synchronize()
        self._ran, self._ran_batch = slots, batch
        return slots

    def _slots(self, blob) -> Tuple[Tuple[int, ...], bool]:
        """The batch slots an input runs in, and whether it is a batch (a list, or a host blob
        of more than one frame)."""
        if isinstance(blob, DeviceInput):
            self._check_input(blob)
            return (blob.slot,), False
        if isinstance(blob, (list, tuple)):
            for x in blob:
                self._check_input(x)
            slots = tuple(x.slot for x in blob)
            if not blob or len(blob) > self.max_batch or slots != tuple(range(len(blob))):
                raise ValueError(f"a batch of device inputs takes slots 0 .. n-1 in order, with "
                                 f"n <= {self.max_batch}; got slots {list(slots)}")
            return slots, True
        shape = np.shape(blob)
        n = shape[0] if len(shape) == 4 else 0
        if shape[1:] != self.input_shape[1:] or not 1 <= n <= self.max_batch:
            want = self.input_shape if self.max_batch == 1 else \
                (f"[n <= {self.max_batch}, " + ", ".join(map(str, self.input_shape[1:])) + "]")
            raise ValueError(f"input blob must have shape {want}, got {shape}")
        return tuple(range(n)), n > 1

    def _check_input(self, x) -> None:
        if not isinstance(x, DeviceInput) or x.engine_id != id(self):
            raise ValueError("this DeviceInput was made by another engine")
        if not 0 <= x.slot < self.max_batch:
            raise ValueError(f"DeviceInput slot {x.slot}: the engine has {self.max_batch}")

    def _upload_input(self, blob) -> None:
        """Host blobs [n, 3, S, S] into slots 0 .. n-1 (one upload: slot inputs are adjacent)."""
        blob = np.asarray(blob)
        n = blob.shape[0]
        np.copyto(self._in_host[:n], blob, casting="same_kind")
        self.backend.upload(self._in_dev[0], self._in_host[:n])
        if self._to_half is not None:
            for slot in range(n):
                self._to_half[slot]()

    def _run_steps(self) -> None:
        for _, _, calls in self._steps:
            for call in calls:
                call()

    def execute(self, inputs: Dict[int, np.ndarray], outputs: Sequence[int]) -> Dict[int, np.ndarray]:
        """Debugging/testing entry: set plan buffers ``inputs`` (float32 arrays, host-side cast
        to the engine dtype), run every op, and return copies of buffers ``outputs`` as float32."""
        self._check_open()
        be = self.backend
        with be.activate():
            for buf, arr in inputs.items():
                want = self.plan.buffers[buf]
                arr = np.asarray(arr, np.float32).reshape(-1)
                if arr.size != int(np.prod(want)):
                    raise ValueError(f"buffer {buf} holds {want}, got {arr.size} values")
                be.upload(self.addr(buf), np.ascontiguousarray(arr.astype(self.np_dtype)))
            self._run_steps()
            out = {}
            for buf in outputs:
                host = np.empty(self.plan.buffers[buf], self.np_dtype)
                be.download(host, self.addr(buf))
                out[buf] = host
            be.synchronize()
        self._ran, self._ran_batch = (0,), False
        return {k: v.astype(np.float32) for k, v in out.items()}

    # ---- preprocessing and decoding on the device -------------------------------------------
    def preprocess_frame(self, frame: np.ndarray, letterbox=None, slot: int = 0,
                         resize: str = "opencv"):
        """Upload a BGR uint8 frame (H, W, 3) and letterbox it into the input buffer on the
        device. ``letterbox``: the geometry (``detector.preprocess.Letterbox`` or any object with
        frame_w, frame_h, net_w, net_h, new_w, new_h, left, top); computed with
        ``detector.preprocess.letterbox_geometry`` when omitted. ``slot``: the batch slot whose
        input it fills. ``resize``: ``opencv`` or ``darknet`` (``detector.preprocess``).
        Returns (DeviceInput, letterbox): pass the first to ``__call__``."""
        self._check_open()
        if not 0 <= slot < self.max_batch:
            raise ValueError(f"slot {slot}: the engine has {self.max_batch}")
        check_frame(frame)
        fh, fw = frame.shape[:2]
        _, _, net_h, net_w = self.input_shape
        if letterbox is None:
            letterbox = letterbox_geometry(fw, fh, net_w, net_h)
        lb = letterbox
        if (lb.frame_w, lb.frame_h, lb.net_w, lb.net_h) != (fw, fh, net_w, net_h):
            raise ValueError(f"letterbox {tuple(lb)} does not fit a {fw}x{fh} frame and a "
                             f"{net_w}x{net_h} input")
        be = self.backend
        with be.activate():
            n = frame.nbytes
            stage = self._frames[slot]
            if stage is None or n > stage.cap:
                stage = self._frames[slot] = _FrameStage(n, be.host_buffer((n,), np.uint8),
                                                         be.alloc(n))
            host = stage.host[:n]
            np.copyto(host, frame.reshape(-1))
            be.upload(stage.dev, host)
            key = (fw, fh, lb.new_w, lb.new_h, lb.left, lb.top, resize)
            run = stage.launch.get(key)
            if run is None:
                run = be.prepare(L.preprocess(self.dtype, stage.dev, self.addr(0, slot), fw, fh,
                                              net_w, net_h, lb.new_w, lb.new_h, lb.left, lb.top,
                                              resize))
                stage.launch = {key: run}
            run()
        return DeviceInput(id(self), fw, fh, slot), lb

    def decode(self) -> Tuple[np.ndarray, np.ndarray]:
        """Region decode of the last output on the device: (boxes [A*H*W, 4] as cx, cy, w, h
        fractions of the input, scores [A*H*W, C]), ordered anchor, row, col, as
        ``detector.postprocess.decode_region``; after a batch, [n, A*H*W, 4] and
        [n, A*H*W, C]. Arrays are reused by the next call."""
        self._check_open()
        if self._ran is None:
            raise RuntimeError("decode() needs a frame: call the engine first")
        plan, be = self.plan, self.backend
        num, classes = len(plan.anchors), plan.classes
        _, ch, gh, gw = self.output_shape
        if ch != num * (5 + classes):
            raise UserError(f"plan output has {ch} channels, the region layer expects "
                            f"{num}*(5+{classes})")
        with be.activate():
            if self._region is None:
                self._region = self._setup_region(num, classes, gh, gw)
            runs, boxes_h, boxes_d, scores_h, scores_d, _ = self._region
            for slot in self._ran:
                runs[slot]()
                be.download(boxes_h[slot], boxes_d[slot])
                be.download(scores_h[slot], scores_d[slot])
            be.synchronize()
        if self._ran_batch:
            n = len(self._ran)
            return boxes_h[:n], scores_h[:n]
        slot = self._ran[0]
        return boxes_h[slot], scores_h[slot]

    def _setup_region(self, num: int, classes: int, gh: int, gw: int):
        """The region decode of every slot: launches, host and device boxes and scores."""
        plan, be, slots = self.plan, self.backend, range(self.max_batch)
        anchors = np.asarray(plan.anchors, np.float32).reshape(-1)
        dev_a = be.alloc(anchors.nbytes)
        be.upload(dev_a, anchors)
        cells = num * gh * gw
        boxes_h = be.host_buffer((self.max_batch, cells, 4), np.float32)
        scores_h = be.host_buffer((self.max_batch, cells, classes), np.float32)
        boxes_at, scores_at = be.alloc(boxes_h.nbytes), be.alloc(scores_h.nbytes)
        boxes_d = [boxes_at + s * boxes_h[0].nbytes for s in slots]
        scores_d = [scores_at + s * scores_h[0].nbytes for s in slots]
        runs = [be.prepare(L.region(self.dtype, self.addr(plan.output, s), dev_a, boxes_d[s],
                                    scores_d[s], num, classes, gh, gw)) for s in slots]
        return runs, boxes_h, boxes_d, scores_h, scores_d, anchors

    # ---- timing -------------------------------------------------------------------------------
    def profile(self, repeat: int = 10, warmup: int = 2) -> List[OpTime]:
        """Per-op time (ms, mean over ``repeat`` frames) of the current input: CUDA events on
        the stream for ``cuda``, host wall time for ``emu``."""
        self._check_open()
        be = self.backend
        totals = [0.0] * len(self._steps)
        with be.activate():
            for _ in range(warmup):
                self._run_steps()
            be.synchronize()
            for _ in range(max(1, repeat)):
                marks = [be.event()]
                for _, _, calls in self._steps:
                    for call in calls:
                        call()
                    marks.append(be.event())
                be.synchronize()
                for k in range(len(self._steps)):
                    totals[k] += be.elapsed_ms(marks[k], marks[k + 1])
        n = max(1, repeat)
        return [OpTime(i, self.plan.ops[i].name, self.plan.ops[i].KIND, path, t / n)
                for (i, path, _), t in zip(self._steps, totals)]

    # ---- lifetime -----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")

    def close(self) -> None:
        """Free device memory (and the CUDA context). Idempotent."""
        if not self._closed:
            self._closed = True
            self._steps = self._slot_steps = []
            self._frames = []
            self._region = None
            self._to_half = self._to_float = None
            # page-locked host buffers belong to the backend's context: drop them first
            self._in_host = self._out_host = None
            self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _FrameStage:
    """A batch slot's frame on its way to the device: page-locked host bytes and device
    bytes (``cap`` of them, grown for larger frames), and the preprocess launch of the last
    frame geometry."""

    def __init__(self, cap: int, host: np.ndarray, dev: int):
        self.cap, self.host, self.dev = cap, host, dev
        self.launch: Dict[tuple, Callable[[], None]] = {}


def op_path(plan: Plan, op: Op) -> str:
    """How an op runs (for reports): the conv path, else the op type."""
    if isinstance(op, Conv):
        return L.conv_path(plan.conv_kind(op), op)
    return op.KIND


def concat_aliases(plan: Plan) -> Dict[int, Tuple[int, int]]:
    """Buffers placed inside a concat's destination, ``{src: (dst, element offset)}``.

    Every plan buffer is written by one op, so a concat source can live in its slice of the
    destination (the concat then copies nothing) unless it is the input, is itself a concat
    destination, or feeds more than one concat slot."""
    concats = [op for op in plan.ops if isinstance(op, Concat)]
    uses = Counter(s for op in concats for s in op.srcs)
    concat_dsts = {op.dst for op in concats}
    alias: Dict[int, Tuple[int, int]] = {}
    for op in concats:
        offset = 0
        for s in op.srcs:
            c, h, w = plan.buffers[s]
            if s != 0 and uses[s] == 1 and s not in concat_dsts:
                alias[s] = (op.dst, offset)
            offset += c * h * w
    return alias


# ---- what an op keeps on the device besides its buffers: {name: array} ---------------------

def _conv_data(op: Conv, plan: Plan, np_dtype) -> List[Tuple[str, np.ndarray]]:
    """Weight and bias, in the engine's dtype."""
    return [(key, np.ascontiguousarray(plan.tensors[key], dtype=np_dtype))
            for key in (op.weight, op.bias)]


def _gather_data(op: Gather, plan: Plan, np_dtype) -> List[Tuple[str, np.ndarray]]:
    """The channel indices, int32 in every dtype."""
    return [(L.gather_key(op), np.ascontiguousarray(op.channels, dtype=np.int32))]


def _no_data(op: Op, plan: Plan, np_dtype) -> List[Tuple[str, np.ndarray]]:
    return []


_DEVICE_DATA: Dict[type, Callable[[Op, Plan, type], List[Tuple[str, np.ndarray]]]] = {
    Conv: _conv_data, Gather: _gather_data}
