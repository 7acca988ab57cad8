"""The GPU cases: our CUDA kernels, and the same network through PyTorch/cuDNN and TensorRT
on the same GPU.

- ``cuda``, ``cuda-fp16``: the kernel engine through pycuda, storing activations and weights
  in float32 or float16 (the input and output stay float32). Its calls return when the
  device is done; ``layers`` profiles its ops (CUDA events).
- ``torch-cuda``, ``torch-cuda-fp16``: the torch model, eager, on cuDNN with
  ``cudnn.benchmark``, in float32 or half precision; each call synchronizes the device.
- ``trt``: TensorRT on the exported ONNX graph, through ORT's TensorRT execution provider
  or the ``tensorrt`` package, with fp16 kernels allowed.

Like ``cuda``'s, every call takes the preprocessed frame from the host and brings the raw
output back, so the cases compare alike. Each is skipped, with the reason, where it cannot run.
"""
from __future__ import annotations

import importlib.util

from ..engine.runners import make_runner
from ..host import cuda_device_present
from .case import Skip, Timed, log
from .layers import kernel_layers
from .peers import exported_graph


def kernels(s, dtype: str = "fp32", backend: str = "cuda") -> Timed:
    """Our kernels (``backend`` ``emu`` runs the same path on the CPU emulator)."""
    if backend not in s.available:
        raise Skip("pycuda is not installed" if cuda_device_present() else "no NVIDIA GPU here")
    r = make_runner(backend, s.spec, s.state, s.plan_fn, "cuda" if backend == "cuda" else "cpu",
                    dtype=dtype)
    return Timed(lambda: r(s.blob), f"{'pycuda' if backend == 'cuda' else 'emulated'} kernel "
                 f"engine, {dtype}", layers=lambda repeat=10: kernel_layers(r.engine, repeat),
                 device="gpu" if backend == "cuda" else "cpu")


def torch_cuda(s, half: bool = False, device: str = "cuda") -> Timed:
    """The torch model, eager, in float32 or half precision (``device`` ``cpu`` runs the
    same path on the CPU)."""
    if "torch" not in s.available:
        raise Skip("torch is not installed")
    import torch
    on_gpu = device == "cuda"
    if on_gpu and not torch.cuda.is_available():
        raise Skip("torch sees no CUDA device")
    if on_gpu:
        torch.backends.cudnn.benchmark = True
    r = make_runner("torch", s.spec, s.state, s.plan_fn, device)
    model = r.model.half() if half else r.model
    dtype = torch.float16 if half else torch.float32
    at = torch.device(device)

    def run():
        with torch.inference_mode():
            out = model(torch.from_numpy(s.blob).to(at, dtype)).float().cpu().numpy()
        if on_gpu:
            torch.cuda.synchronize()
        return out
    return Timed(run, f"torch eager{', cuDNN' if on_gpu else ''}, {'fp16' if half else 'fp32'}",
                 device="gpu" if on_gpu else "cpu")


def tensorrt(s) -> Timed:
    """TensorRT: ORT's TensorRT execution provider where this onnxruntime has it, else the
    ``tensorrt`` package (with torch for the device buffers)."""
    if "ort" in s.available:
        import onnxruntime
        if "TensorrtExecutionProvider" in onnxruntime.get_available_providers():
            return _ort_tensorrt(s, onnxruntime)
    if importlib.util.find_spec("tensorrt") is None:
        raise Skip("neither the tensorrt package nor ORT's TensorrtExecutionProvider is here")
    if "torch" not in s.available:
        raise Skip("the tensorrt case needs torch (for its device buffers)")
    return _tensorrt_engine(s)


def _ort_tensorrt(s, onnxruntime) -> Timed:
    trt_options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                   "trt_engine_cache_path": s.workdir}
    sess = onnxruntime.InferenceSession(exported_graph(s), providers=[
        ("TensorrtExecutionProvider", trt_options), "CUDAExecutionProvider"])
    name = sess.get_inputs()[0].name
    log(f"{s.tag}: building the TensorRT engine (ORT)")
    sess.run(None, {name: s.blob})
    return Timed(lambda: sess.run(None, {name: s.blob}), "TensorRT (ORT execution provider), "
                 "fp16 allowed", device="gpu")


def _tensorrt_engine(s) -> Timed:
    import tensorrt as trt
    import torch
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if explicit is None else 1 << int(explicit))
    parser = trt.OnnxParser(network, logger)
    with open(exported_graph(s), "rb") as f:
        if not parser.parse(f.read()):
            raise RuntimeError(f"TensorRT cannot parse the graph: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    log(f"{s.tag}: building the TensorRT engine")
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(builder.build_serialized_network(network, config))
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    x = torch.empty(tuple(s.blob.shape), device="cuda")
    y = torch.empty(tuple(engine.get_tensor_shape(names[1])), device="cuda")
    context.set_tensor_address(names[0], x.data_ptr())
    context.set_tensor_address(names[1], y.data_ptr())
    stream = torch.cuda.current_stream()

    def run(_keep=(runtime, engine)):     # the context needs both alive
        x.copy_(torch.from_numpy(s.blob))
        context.execute_async_v3(stream.cuda_stream)
        out = y.cpu().numpy()
        torch.cuda.synchronize()
        return out
    return Timed(run, "TensorRT (tensorrt package), fp16 allowed", device="gpu")
