"""Command line: argument parsing only; each command calls the API.

Every subcommand has one ``add_<command>`` (its arguments) and one ``cmd_<command>`` (its
call into the package). Errors users can cause (``UserError``) print one line on stderr and
exit with code 2; Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line + exit code 2, like every user error."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def img_size(text: str) -> int:
    from .models.spec import check_input_size
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be a multiple of 32 "
                                         "between 32 and 4096") from None
    try:
        return check_input_size(v, "size")
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {v}")
    return v


def add_model_args(p: argparse.ArgumentParser, weights_required: bool = True) -> None:
    p.add_argument("--weights", required=weights_required,
                   help=".safetensors checkpoint or plan, darknet .weights (with --cfg), or a zoo "
                        "model name (random weights, for benchmarks)")
    p.add_argument("--cfg", help="darknet .cfg for a .weights file")
    p.add_argument("--names", help="class names file, one per line (default: from the checkpoint)")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    from .engine.backends import BACKENDS
    p.add_argument("--backend", choices=BACKENDS, help="default: the fastest available")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda for the cuda backend, else cpu")
    p.add_argument("--img-size", type=img_size, help="network input size (multiple of 32; "
                   "default: the model's)")


# ---- detect ----------------------------------------------------------------------------

def add_detect(sub) -> None:
    p = sub.add_parser("detect", help="detect objects in images, videos, cameras and streams",
                       description="SOURCE: image, directory or glob of images, video file, "
                                   "camera index (0), /dev/videoN, rtsp://, http(s)://, csi://N, "
                                   "gst:PIPELINE")
    p.add_argument("source")
    add_model_args(p)
    add_backend_args(p)
    p.add_argument("--conf", type=fraction, default=0.25, help="score threshold (default 0.25)")
    p.add_argument("--nms-iou", type=fraction, default=0.45,
                   help="NMS IoU threshold (default 0.45; 1 disables NMS)")
    p.add_argument("--save", help="write annotated output: a video file (.mp4/.avi) or a directory of images")
    p.add_argument("--json", help="write detections as JSON Lines, one object per frame")
    p.add_argument("--show", action="store_true", help="show a window (q or ESC quits)")
    p.add_argument("--max-frames", type=positive_int, help="stop after N frames")
    p.add_argument("--serve", metavar="HOST:PORT",
                   help="serve the annotated stream as MJPEG over HTTP (host defaults to 127.0.0.1)")
    p.add_argument("--stats-json", help="write pipeline statistics as JSON at the end")
    p.add_argument("--quiet", action="store_true", help="no per-frame output")


def cmd_detect(args) -> int:
    import detector
    from .stream.run import run_detect
    det = detector.load(args.weights, cfg=args.cfg, names=args.names, backend=args.backend,
                        device=args.device, img_size=args.img_size, conf=args.conf,
                        nms_iou=args.nms_iou)
    return run_detect(det, args)


# ---- export ----------------------------------------------------------------------------

def add_export(sub) -> None:
    p = sub.add_parser("export", help="export weights as ONNX (for TensorRT/ORT), darknet "
                                      ".cfg/.weights, or a lowered plan for the cuda/emu engine")
    add_model_args(p)
    p.add_argument("--format", required=True, choices=("onnx", "darknet", "plan"))
    p.add_argument("--out", required=True, help="output path (darknet: OUT.cfg and OUT.weights)")
    p.add_argument("--img-size", type=img_size, help="input size (default: the model's)")
    p.add_argument("--dynamic-batch", action="store_true", help="onnx: dynamic batch dimension")
    p.add_argument("--pointwise", choices=("conv", "matmul"), default="conv",
                   help="onnx: pointwise convs as 1x1 Conv (default) or FastDSC's MatMul GEMM")


def cmd_export(args) -> int:
    from .export import export
    for path in export(args.weights, args.format, args.out, cfg=args.cfg, names=args.names,
                       img_size=args.img_size, dynamic_batch=args.dynamic_batch,
                       pointwise=args.pointwise):
        print(f"wrote {path}")
    return 0


# ---- bench -----------------------------------------------------------------------------

def add_bench(sub) -> None:
    from .bench import ALL_CASES, DEFAULT_MODELS
    p = sub.add_parser("bench", help="benchmark our backends and per-frame path against "
                                     "OpenCV-DNN and bare ONNX Runtime (one run, interleaved)",
                       description="Cases: " + ", ".join(ALL_CASES) + ". Speed-ups are "
                       "medians over interleaved rounds; progress goes to stderr.")
    p.add_argument("--model", nargs="+", action="extend", metavar="M",
                   help="zoo names or spec YAMLs (default: " + " ".join(DEFAULT_MODELS) + ")")
    p.add_argument("--img-size", nargs="+", action="extend", type=img_size, metavar="N",
                   help="input sizes (default: 416)")
    p.add_argument("--backends", nargs="+", action="extend", metavar="B",
                   help="cases to run (default: all available but ort-int8)")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--warmup", type=positive_int, default=2,
                   help="untimed calls per case before the rounds (default 2)")
    p.add_argument("--layers", action="store_true",
                   help="per-layer breakdown (ORT profiler; 1x1 Conv and GEMM forms)")
    p.add_argument("--int8", action="store_true",
                   help="add the opt-in int8 ORT graph, with its accuracy cost vs fp32")
    p.add_argument("--no-tune", action="store_true",
                   help="skip measuring the pointwise form per layer (use the stored choice)")
    p.add_argument("--threads", type=positive_int,
                   help="ORT intra-op threads (default: physical cores)")
    p.add_argument("--startup", nargs="?", const="yolov2-voc-fastdsc", metavar="M",
                   help="also time load-to-first-detection in fresh processes, cold (empty "
                        "cache) and warm (default model: yolov2-voc-fastdsc)")
    p.add_argument("--json", help="write the results as JSON")


def cmd_bench(args) -> int:
    from .bench import DEFAULT_MODELS, bench
    bench(models=args.model or DEFAULT_MODELS, sizes=args.img_size or [416],
          backends=args.backends, rounds=args.rounds, warmup=args.warmup, layers=args.layers,
          json_out=args.json, int8=args.int8, tune=not args.no_tune, threads=args.threads,
          startup_model=args.startup, argv=sys.argv[2:] if len(sys.argv) > 1 else [])
    return 0


# ---- main ------------------------------------------------------------------------------

COMMANDS = ("detect", "export", "bench")


def build_parser() -> Parser:
    parser = Parser(prog="detector", description="FastDSC-YOLO: real-time YOLOv2 with FastDSC "
                                                 "depthwise-separable convolutions")
    parser.add_argument("--version", action="version", version=f"fastdsc-yolo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMANDS:
        globals()["add_" + name](sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return globals()["cmd_" + args.command.replace("-", "_")](args) or 0
    except UserError as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
