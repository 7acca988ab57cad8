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
from .errors import ParamError, UserError
from .stream.options import FLIPS, DetectOptions, OutputOptions, SourceOptions
from .track.options import TrackerOptions
from .train.options import TrainOptions


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


def terms_arg(text: str):
    """``T`` (every converted layer) or ``T1,T2,...`` (one per converted layer, in order)."""
    parts = [positive_int(t.strip()) for t in text.split(",")]
    return parts[0] if len(parts) == 1 else parts


def img_size(text: str) -> int:
    from .models.checks import check_input_size
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: must be a multiple of 32 "
                                         "between 32 and 4096") from None
    try:
        return check_input_size(v, "size")
    except ParamError as e:
        raise argparse.ArgumentTypeError(f"size {v!r} is invalid: {e.message}") from None


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
                   help=".safetensors checkpoint or plan, darknet .weights (with --cfg), a "
                        "published model (yolov2-voc, yolov2-tiny-voc, yolov2, yolov2-tiny, "
                        "yolo9000; "
                        "FastDSC: yolov2-voc-fastdsc, yolov2-tiny-voc-fastdsc; downloaded or "
                        "built once into the user cache), or random:SPEC (a zoo spec or spec "
                        "YAML with random weights)")
    p.add_argument("--cfg", help="darknet .cfg for a .weights file")
    p.add_argument("--names", help="class names file, one per line (default: from the checkpoint)")


def add_backend_args(p: argparse.ArgumentParser) -> None:
    from .engine.runners import BACKENDS
    p.add_argument("--backend", choices=BACKENDS, help="default: the fastest available")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda for the cuda backend, else cpu")
    p.add_argument("--img-size", type=img_size, help="network input size (multiple of 32; "
                   "default: the model's)")


def add_darknet_args(p: argparse.ArgumentParser) -> None:
    """How frames are resized and boxes kept: ours or darknet's (detect, eval)."""
    p.add_argument("--resize", choices=("opencv", "darknet"),
                   help="how frames are resized into the network: opencv (OpenCV's bilinear "
                        "resize, as FastDSC-YOLO trains) or darknet (darknet's own resize, bit "
                        "for bit); default: what the weights expect (darknet for darknet files "
                        "and models converted from them)")
    p.add_argument("--nms", choices=("opencv", "darknet"), default="opencv",
                   help="opencv (default): NMS on the boxes clipped to the frame; darknet: "
                        "darknet's box mapping and NMS on the unclipped boxes, in its order")
    p.add_argument("--hier-thresh", type=fraction, default=0.5,
                   help="YOLO9000 tree models: how far down the tree a box's class goes "
                        "(darknet's hier threshold, default 0.5)")


# ---- detect ----------------------------------------------------------------------------

def add_detect(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("detect", help="detect objects in images, videos, cameras and streams",
                       description="SOURCE: image, directory or glob of images, video file, "
                                   "camera index (0), /dev/videoN, rtsp://, http(s)://, csi://N, "
                                   "gst:PIPELINE. Several SOURCEs run through one network (a "
                                   "batch of their frames per call); {name} in an output path "
                                   "becomes each source's name")
    p.add_argument("source", metavar="SOURCE", nargs="*")
    p.add_argument("--sources", metavar="FILE",
                   help="more sources, one SOURCE a line (# starts a comment)")
    add_model_args(p)
    add_backend_args(p)
    add_darknet_args(p)
    p.add_argument("--tree-map", action="store_true",
                   help="YOLO9000 tree models: detect the classes the cfg's map= lists (e.g. "
                        "COCO's 80) instead of the tree's")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"),
                   help="bf16: torch's bfloat16 oneDNN path (the torch backend); int8: the ort "
                        "backend's static int8 graph (default: on a CPU with native bf16, "
                        "ORT fp32 or torch bf16, whichever is faster for this model here; "
                        "else fp32)")
    p.add_argument("--conf", type=fraction,
                   help="score threshold (default 0.25; with --track the tracker's low score, "
                        "0.1)")
    p.add_argument("--nms-iou", type=fraction, default=0.45,
                   help="NMS IoU threshold (default 0.45; 1 disables NMS)")
    add_detect_outputs(p)
    add_capture_args(p)
    return p


def add_detect_outputs(p: argparse.ArgumentParser) -> None:
    """detect's outputs, when to stop, tracking."""
    p.add_argument("--out", action="append", metavar="URI",
                   help="an output, repeatable: out.mp4 (.avi, .mkv, .mov, .m4v), DIR/ (one "
                        "image per frame), an image file (single-image source), dets.jsonl or "
                        "jsonl:PATH (JSON Lines; '-': stdout), mot:PATH (tracks), display://0 "
                        "(a window), http://HOST:PORT (MJPEG); {name}: each source's name")
    p.add_argument("--save", help="write annotated output: a video file (.mp4, .avi, .mkv, .mov; "
                                  "the source's fps and size), a directory of images (DIR/), or "
                                  "an image file for a single-image source")
    p.add_argument("--json", help="write detections as JSON Lines, one object per frame "
                                  "('-': stdout); --out jsonl:PATH")
    p.add_argument("--show", action="store_true", help="show a window (q or ESC quits); "
                                                       "--out display://0")
    p.add_argument("--max-frames", type=positive_int,
                   help="stop after N frames (of each source)")
    p.add_argument("--serve", metavar="HOST:PORT",
                   help="serve the annotated stream as MJPEG over HTTP (host defaults to "
                        "127.0.0.1); --out http://HOST:PORT")
    p.add_argument("--max-clients", type=positive_int, default=4,
                   help="--serve: most simultaneous stream clients (default 4; more get 503)")
    p.add_argument("--stats-json", help="write pipeline statistics as JSON at the end")
    p.add_argument("--track", action="store_true",
                   help="give each detection a track_id that stays with its object across "
                        "frames (ByteTrack-style, one tracker per source)")
    p.add_argument("--mot", metavar="PATH",
                   help="write the tracks in the MOT Challenge text format (implies --track; "
                        "several sources: put {name} in PATH); --out mot:PATH")
    p.add_argument("--quiet", action="store_true", help="no per-frame output")


def add_capture_args(p: argparse.ArgumentParser) -> None:
    """How detect's sources capture (every source of a run alike)."""
    g = p.add_argument_group("capture options")
    g.add_argument("--live", choices=("auto", "yes", "no"), default="auto",
                   help="yes: keep only the newest frame and reconnect when the stream drops "
                        "(cameras, network streams); no: every frame in order, end at the end "
                        "(files, folders); auto (default): by source type")
    g.add_argument("--no-reconnect", action="store_true",
                   help="end the run when a live stream drops instead of reconnecting")
    g.add_argument("--input-width", type=positive_int,
                   help="capture width for cameras and csi:// (csi default 1280)")
    g.add_argument("--input-height", type=positive_int,
                   help="capture height for cameras and csi:// (csi default 720)")
    g.add_argument("--input-rate", type=positive_float,
                   help="capture frame rate for cameras and csi:// (csi default 30)")
    g.add_argument("--input-flip", default="none", choices=FLIP_NAMES, metavar="FLIP",
                   help="flip/rotate frames (csi:// in nvvidconv, others with OpenCV): "
                        + ", ".join(FLIP_NAMES))
    g.add_argument("--sensor-mode", type=nonnegative_int,
                   help="csi://: nvarguscamerasrc sensor-mode (default: the driver's choice)")


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def nonnegative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def nonnegative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v


FLIP_NAMES = tuple(FLIPS)


def detect_options(args) -> DetectOptions:
    capture = SourceOptions(width=args.input_width, height=args.input_height,
                            rate=args.input_rate, flip=args.input_flip,
                            sensor_mode=args.sensor_mode,
                            live=None if args.live == "auto" else args.live == "yes")
    output = OutputOptions(outputs=tuple(args.out or ()), save=args.save, json=args.json,
                           show=args.show, serve=args.serve, mot=args.mot,
                           max_clients=args.max_clients, quiet=args.quiet,
                           stats_json=args.stats_json)
    sources = list(args.source)
    if args.sources:
        from .stream.source_list import read_source_list
        sources += read_source_list(args.sources)
    if not sources:
        raise UserError("detector detect: give a SOURCE (or --sources FILE)")
    return DetectOptions(source=sources[0] if len(sources) == 1 else tuple(sources),
                         capture=capture, output=output, max_frames=args.max_frames,
                         reconnect=not args.no_reconnect, track=args.track)


def cmd_detect(args) -> int:
    import detector
    from .stream.run import DetectRun
    # SOURCE and every output are parsed here: a bad one fails before the model loads
    run = DetectRun(detect_options(args), name=flag_for)
    options = {"precision": args.precision} if args.precision else {}
    conf = args.conf
    if conf is None:            # with tracking, the low-score boxes keep hidden objects' tracks
        conf = (run.options.tracker or TrackerOptions()).low_score if run.tracking else 0.25
    det = detector.load(args.weights, cfg=args.cfg, names=args.names, backend=args.backend,
                        device=args.device, img_size=args.img_size, conf=conf,
                        nms_iou=args.nms_iou, max_batch=run.max_batch, resize=args.resize,
                        nms=args.nms, hier_thresh=args.hier_thresh, tree_map=args.tree_map,
                        **options)
    return run.run(det)


# ---- export ----------------------------------------------------------------------------

def add_export(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="export weights as ONNX (for TensorRT/ORT), darknet "
                                      ".cfg/.weights, or a lowered plan for the cuda/emu engine")
    add_model_args(p)
    p.add_argument("--format", required=True, choices=("onnx", "darknet", "plan"))
    p.add_argument("--out", required=True, help="output path (darknet: OUT.cfg and OUT.weights)")
    p.add_argument("--img-size", type=img_size, help="input size (default: the model's)")
    p.add_argument("--dynamic-batch", action="store_true", help="onnx: dynamic batch dimension")
    p.add_argument("--pointwise", choices=("conv", "matmul"), default="conv",
                   help="onnx: pointwise convs as 1x1 Conv (default) or FastDSC's MatMul GEMM")
    return p


def cmd_export(args) -> int:
    from .export import export
    for path in export(args.weights, args.format, args.out, cfg=args.cfg, names=args.names,
                       img_size=args.img_size, dynamic_batch=args.dynamic_batch,
                       pointwise=args.pointwise):
        print(f"wrote {path}")
    return 0


# ---- train -----------------------------------------------------------------------------

def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """The recipe fields of ``detector train``: each unset one comes from the recipe the run
    chooses (train/recipe.py)."""
    g = p.add_argument_group("recipe (each unset flag: the recipe's, chosen for the run)")
    g.add_argument("--optimizer", choices=("auto", "sgd", "adamw"), default="auto",
                   help="auto (default): the recipe's; sgd: darknet's (momentum, decay on conv "
                        "weights); adamw: faster from scratch and on short runs")
    g.add_argument("--lr", type=positive_float,
                   help="base learning rate (default: the recipe's; fast: 0.002 at batch 8, 0.003 "
                        "at 16, 0.004 at 4; darknet's: the spec's)")
    g.add_argument("--schedule", choices=("auto", "steps", "cosine"), default="auto",
                   help="learning rate after burn-in: auto (default): the recipe's; steps "
                        "(darknet's, x0.1 at 50%% and 75%% of yolov2-voc's run) or cosine down "
                        "to the same final rate (better for short runs)")
    g.add_argument("--burn-in", type=fraction,
                   help="burn-in as a fraction of the run (default: the recipe's)")
    g.add_argument("--ema", type=nonnegative_float, metavar="DECAY",
                   help="validate and save an exponential moving average of the weights with "
                        "this decay (default: the recipe's; fast: 0.999 on a CPU, 0.998 on a "
                        "GPU; darknet's: 0, off)")
    g.add_argument("--batch", type=positive_int,
                   help="images per optimizer step (default: the recipe's; fast: 8 on a CPU, "
                        "16 on a GPU; darknet's: the spec's, 64)")
    g.add_argument("--multiscale", dest="multiscale", action="store_const", const=True,
                   help="redraw the input size every 10 steps (darknet's recipe)")
    g.add_argument("--no-multiscale", dest="multiscale", action="store_const", const=False,
                   help="keep the input size fixed (the fast recipe)")
    g.add_argument("--jitter", type=float, metavar="F",
                   help="crop jitter, a fraction of the image side in [0, 0.45] (default: the "
                        "recipe's; fast: 0.1; darknet's: the spec's, 0.2 for the YOLOv2 models)")
    g.add_argument("--hsv", dest="hsv", action="store_const", const=True,
                   help="hue/saturation/exposure distortion (darknet's recipe)")
    g.add_argument("--no-hsv", dest="hsv", action="store_const", const=False,
                   help="no hue/saturation/exposure distortion (the fast recipe)")
    g.add_argument("--mosaic", type=float, metavar="P",
                   help="probability in [0, 1] that a training sample is a mosaic of four "
                        "images, ended in the last tenth of the epochs (default: the recipe's; "
                        "fast: 1 for runs of 20 epochs or more, else 0; darknet's: 0)")
    g.add_argument("--iou-thresh", type=float, metavar="T",
                   help="each truth also trains the other anchors of its cell whose shape "
                        "overlaps it by more than T (darknet's [yolo] iou_thresh); 1: its best "
                        "anchor only, as darknet's region layer (default: the recipe's; "
                        "fast: 0.5; darknet's: 1)")
    g.add_argument("--anchors", choices=("spec", "auto"),
                   help="auto: k-means anchors of the training boxes instead of the spec's "
                        "(default: auto in the fast recipe unless the starting weights bring "
                        "their detection head, else spec)")


def add_train(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="train a detector on a dataset (the recipe chosen for the "
                                     "run unless flags set it)",
                       description="Recipe flags left unset (--optimizer and --schedule auto, "
                       "--lr, --burn-in, --ema, --batch, --multiscale, --jitter, --hsv, --mosaic, "
                       "--iou-thresh, --anchors) come from the recipe the run calls for: the fast one "
                       "(AdamW, cosine, weight average, small batches, fitted anchors) for "
                       "short runs and runs from scratch, darknet's (SGD, steps) for long "
                       "fine-tunes of pretrained weights. The run prints its choice.")
    p.add_argument("--model", help="zoo name or spec YAML (default: the spec of --weights)")
    p.add_argument("--data", required=True, help="dataset YAML (see data/voc.yaml)")
    p.add_argument("--out", required=True, help="run directory: checkpoints, metrics.csv, tb/")
    p.add_argument("--epochs", type=positive_int, help="default: the spec's max_batches")
    p.add_argument("--time", type=positive_float, metavar="MINUTES",
                   help="instead of --epochs: fit the schedule to end after MINUTES (counted "
                        "from the first step, validations included) and stop there")
    p.add_argument("--accumulate", type=positive_int, default=1,
                   help="split each step into N micro-batches (gradient accumulation)")
    p.add_argument("--img-size", type=img_size, help="training input size (default: the spec's)")
    p.add_argument("--final-size", type=img_size, metavar="N",
                   help="train the last --final-epochs epochs at this input size (e.g. the "
                        "size you will evaluate at)")
    p.add_argument("--final-epochs", type=positive_int, metavar="E",
                   help="how many of the last epochs --final-size covers (default 1)")
    p.add_argument("--val-size", type=img_size, metavar="N",
                   help="validation input size, also written into best/last.safetensors "
                        "(default: --final-size, else the training size)")
    p.add_argument("--weights", help="initial weights: checkpoint, converted FastDSC model, "
                                     "darknet .weights (with --cfg, or --model for backbones), "
                                     "or a published model (e.g. darknet19_448.conv.23)")
    p.add_argument("--cfg", help="darknet .cfg for --weights")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=nonnegative_int, help="data loader processes (default: 0 on machines "
                   "with 2 cores or fewer, where loading in the training process is faster; "
                   "else up to 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=positive_int,
                   help="validate every N epochs (default 1; with --time about 4 times)")
    p.add_argument("--save-every", type=nonnegative_int, default=0,
                   help="also save the training state every N steps (default: each epoch)")
    p.add_argument("--max-val-images", type=positive_int, help="validate on the first N images")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="mixed precision: auto = float16 on CUDA, bfloat16 on CPUs that compute "
                        "it natively (AVX512-BF16/AMX), else fp32; on = also emulated bf16")
    p.add_argument("--clip-grad", type=nonnegative_float, default=10.0,
                   help="clip the gradient norm (default 10; 0 disables)")
    add_recipe_args(p)
    return p


def train_options(args) -> TrainOptions:
    """The options of ``detector train`` (a resumed run keeps those it was started with)."""
    if args.final_epochs and not args.final_size and not args.resume:
        raise UserError("--final-epochs needs --final-size")
    return TrainOptions(data=args.data, out=args.out, model=args.model, weights=args.weights,
                        cfg=args.cfg, epochs=args.epochs, time=args.time, batch=args.batch,
                        accumulate=args.accumulate, img_size=args.img_size,
                        multiscale=args.multiscale, final_size=args.final_size,
                        final_epochs=args.final_epochs or 0, val_size=args.val_size,
                        jitter=args.jitter, hsv=args.hsv, mosaic=args.mosaic,
                        iou_thresh=args.iou_thresh,
                        lr=args.lr, burn_in=args.burn_in,
                        device=args.device, workers=args.workers, seed=args.seed,
                        val_every=args.val_every, save_every=args.save_every,
                        max_val_images=args.max_val_images, anchors=args.anchors,
                        optimizer=args.optimizer, schedule=args.schedule, ema=args.ema,
                        amp=args.amp, clip_grad=args.clip_grad, resume=args.resume)


def cmd_train(args) -> int:
    from .train.trainer import train
    final = train(train_options(args))
    if final:
        print(f"done: {args.out}/best.safetensors (best VOC07 mAP on val), "
              f"{args.out}/last.safetensors, {args.out}/metrics.csv")
    return 0


# ---- eval ------------------------------------------------------------------------------

def add_eval(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("eval", help="VOC07 / all-point / COCO mAP of weights or of result files")
    add_model_args(p, weights_required=False)
    p.add_argument("--dets", help="evaluate detections instead of running a network: a folder of "
                                  "devkit result files (comp4_det_<split>_<class>.txt) or a "
                                  "COCO results JSON file")
    p.add_argument("--data", help="dataset YAML (VOCdevkit, YOLO or COCO layout); required "
                                  "but with --tracks")
    p.add_argument("--split", default="val", help="split key of the dataset YAML (default val)")
    add_backend_args(p)
    add_darknet_args(p)
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="bf16: the torch backend's bfloat16 oneDNN path; int8: the ort "
                        "backend's statically quantized graph (this measures what each costs "
                        "in mAP)")
    p.add_argument("--json", help="write the metrics as JSON")
    p.add_argument("--save-dets", help="write detections as devkit result files to this directory, "
                                       "or as a COCO results JSON to a .json file")
    p.add_argument("--plots", help="write precision-recall curves (PNG) to this directory")
    p.add_argument("--max-images", type=positive_int, help="evaluate the first N images only")
    p.add_argument("--tracks", metavar="PRED", help="evaluate tracks instead: MOTA, IDF1 and ID "
                   "switches of a MOT results file (detect --mot) against --gt")
    p.add_argument("--gt", help="MOT ground-truth file of --tracks (e.g. synth --clip's gt.txt)")
    return p


def cmd_eval(args) -> int:
    if args.tracks or args.gt:
        return _eval_tracks(args)
    if not args.data:
        raise UserError("detector eval: the following arguments are required: --data")
    if bool(args.weights) == bool(args.dets):
        raise UserError("give exactly one of --weights and --dets")
    if args.dets:
        from .eval.report import evaluate_dets_dir
        evaluate_dets_dir(args.data, args.split, args.dets, args.json, args.plots)
        return 0
    from .eval.evaluate import PRECISION_BACKENDS, evaluate_model, fps_line
    need = PRECISION_BACKENDS.get(args.precision)
    if need and args.backend not in (None, need):
        raise UserError(f"--precision {args.precision} runs on the {need} backend only "
                        f"(not --backend {args.backend})")
    res = evaluate_model(args.weights, args.data, args.split, cfg=args.cfg, names=args.names,
                         backend=args.backend, device=args.device, img_size=args.img_size,
                         precision=args.precision, max_images=args.max_images,
                         save_dets=args.save_dets, resize=args.resize, nms=args.nms,
                         hier_thresh=args.hier_thresh)
    print(res.table())
    print(fps_line(res, res.fps))
    if args.json:
        res.write_json(args.json)
    if args.plots:
        from .eval.plots import plot_pr_curves
        plot_pr_curves(res.classes, res.names, args.plots, title=args.split)
    return 0


def _eval_tracks(args) -> int:
    if not (args.tracks and args.gt):
        raise UserError("--tracks and --gt go together")
    other = [f for f, v in (("--weights", args.weights), ("--dets", args.dets),
                            ("--data", args.data)) if v]
    if other:
        raise UserError(f"--tracks evaluates MOT files alone; drop {', '.join(other)}")
    from .eval.tracking import evaluate_track_files
    evaluate_track_files(args.tracks, args.gt, args.json)
    return 0


# ---- synth / anchors -------------------------------------------------------------------

def add_synth(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("synth", help="write a synthetic dataset (tests and demos) in the VOCdevkit, "
                                     "YOLO or COCO layout")
    p.add_argument("out")
    p.add_argument("--train", type=int, default=800, help="training images (default 800)")
    p.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    p.add_argument("--size", type=positive_int, default=256, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=("voc", "yolo", "coco"), default="voc",
                   help="dataset layout: VOCdevkit (default), ultralytics YOLO (images/, labels/) "
                        "or COCO JSON (images/, annotations/); OUT/data.yaml in the matching form")
    p.add_argument("--clip", type=int, default=0, metavar="FRAMES",
                   help="also write OUT/clip.mp4, a video of moving objects (crossing, hidden "
                        "for a while) with FRAMES frames, and their true tracks OUT/gt.txt")
    p.add_argument("--clip-images", type=int, default=0, metavar="N",
                   help="also put N frames of other such clips in the train split (labelled "
                        "like the stills): objects crossing and behind a post, the scenes a "
                        "tracker meets and the stills lack (default 0)")
    return p


def cmd_synth(args) -> int:
    from .data.synth import main as synth_main
    if min(args.train, args.val, args.clip, args.clip_images) < 0:
        raise UserError("--train, --val, --clip and --clip-images must be >= 0")
    images = args.train or args.val or args.clip_images
    if not (images or args.clip):
        raise UserError("--train and --val are both 0: nothing to generate")
    rc = 0
    if images or not args.clip:      # --train 0 --val 0 --clip N: a clip only
        rc = synth_main(args.out, args.train, args.val, args.size, args.seed, args.format,
                        args.clip_images)
    if args.clip:
        from .data.clip import write_clip
        path, gt = os.path.join(args.out, "clip.mp4"), os.path.join(args.out, "gt.txt")
        write_clip(path, args.clip, args.size, args.seed, gt=gt)
        print(f"wrote {path} ({args.clip} frames) and its true tracks {gt} (MOT format)")
    return rc


def add_anchors(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("anchors", help="k-means anchors (1 - IoU distance) in grid units")
    p.add_argument("--data", required=True, help="dataset YAML (VOCdevkit, YOLO or COCO layout)")
    p.add_argument("--num", type=positive_int, default=5)
    p.add_argument("--img-size", type=img_size, default=416)
    p.add_argument("--split", default=None, help="split to cluster (default: train)")
    p.add_argument("--seed", type=int, default=0)
    return p


def cmd_anchors(args) -> int:
    from .train.anchors import main as anchors_main
    return anchors_main(args.data, args.num, args.img_size, args.split, args.seed)


# ---- convert ---------------------------------------------------------------------------

def add_convert(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("convert", help="convert regular 3x3 convs into FastDSC blocks without "
                                       "training (Network Decoupling, refined with data by "
                                       "Depth-wise Decomposition)")
    add_model_args(p)
    p.add_argument("--method", required=True, choices=("nd", "dd"),
                   help="nd: SVD only, no data; dd: nd refined on --calib images")
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--terms", type=terms_arg,
                     help="T terms per layer (K*K is exact), or T1,T2,... one per converted "
                          "layer in network order")
    sel.add_argument("--energy", type=fraction, help="per layer, the smallest T keeping this "
                     "fraction of the singular-value energy (default 0.95)")
    p.add_argument("--order", choices=("auto", "dw_pw", "pw_dw"), default="auto",
                   help="block order; auto picks the cheaper one per layer (default)")
    p.add_argument("--allocate", choices=("channel", "layer"), default="channel",
                   help="channel: a dw_pw layer's terms go to the input channels with the "
                        "largest singular values, 0 to K*K each, same FLOPs (default); "
                        "layer: T terms for every input channel")
    p.add_argument("--calib", nargs="+", metavar="FOOTAGE",
                   help="calibration footage, no labels needed (required by dd; with nd, "
                        "errors are measured on it): a dataset YAML, a folder or glob of "
                        "images, a video file, or a camera/stream URI of detect's SOURCE "
                        "grammar; several may follow")
    p.add_argument("--calib-split", help="split of a dataset YAML in --calib (default: train, "
                   "else the first split)")
    p.add_argument("--als", type=nonnegative_int, default=2, metavar="N",
                   help="dd: rounds of the alternating refit of kernels and pointwise weights "
                        "(default 2; 0: off)")
    p.add_argument("--calib-images", type=positive_int, default=200,
                   help="frames drawn from each --calib FOOTAGE: images (seeded), frames "
                        "spread over a video, the first distinct frames of a camera/stream "
                        "(default 200)")
    p.add_argument("--holdout", type=fraction, default=0.125,
                   help="fraction of the calibration frames held out: never fitted, they "
                        "measure the agreement with the original in the report (default "
                        "0.125)")
    p.add_argument("--distill-epochs", type=nonnegative_int, default=0, metavar="E",
                   help="then distil the converted model against the original for E epochs "
                        "on the fitted calibration frames (detector distill; default 0: no)")
    p.add_argument("--distill-batch", type=positive_int, default=8, metavar="B",
                   help="frames per distillation step (default 8)")
    p.add_argument("--img-size", type=img_size, help="calibration/FLOPs/latency input size "
                   "(default: the model's)")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors)")
    p.add_argument("--report", help="write the report as JSON")
    p.add_argument("--latency-runs", type=int, default=5,
                   help="CPU (ort) latency runs before/after (default 5; 0 skips)")
    p.add_argument("--no-map", action="store_true",
                   help="skip mAP before/after on the --calib val split")
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    return p


def cmd_convert(args) -> int:
    from .convert import ConvertOptions, convert
    opts = ConvertOptions(weights=args.weights, method=args.method, cfg=args.cfg,
                          names=args.names, terms=args.terms, energy=args.energy,
                          order=args.order, allocate=args.allocate, calib=args.calib,
                          calib_split=args.calib_split, calib_images=args.calib_images,
                          img_size=args.img_size, out=args.out, report=args.report,
                          latency_runs=args.latency_runs, map_eval=not args.no_map,
                          seed=args.seed, progress=not args.quiet, als=args.als,
                          holdout=args.holdout, distill_epochs=args.distill_epochs,
                          distill_batch=args.distill_batch)
    res = convert(opts)
    if not args.quiet:
        print(res.table)
    print(f"wrote {args.out}")
    if args.report:
        print(f"wrote {args.report}")
    return 0


# ---- distill / compare -----------------------------------------------------------------

def add_distill(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("distill", help="teach a converted model to reproduce its original on "
                                       "unlabelled footage (label-free distillation)")
    p.add_argument("--teacher", help="the original model: weights as --weights takes them")
    p.add_argument("--teacher-cfg", help="darknet .cfg for a --teacher .weights file")
    p.add_argument("--student", help="the model that learns (a converted checkpoint)")
    p.add_argument("--student-cfg", help="darknet .cfg for a --student .weights file")
    p.add_argument("--data", nargs="+", metavar="FOOTAGE",
                   help="unlabelled footage: a dataset YAML, a folder or glob of images, a "
                        "video file, or a camera/stream URI; several may follow")
    p.add_argument("--out", required=True, help="the distilled model (.safetensors, the best "
                   "by agreement on the held-out footage); the run (training state, "
                   "metrics.csv) goes to OUT without .safetensors plus .distill/")
    p.add_argument("--epochs", type=positive_int, help="passes over the footage (default 30)")
    p.add_argument("--batch", type=positive_int, default=8, help="frames per step (default 8)")
    p.add_argument("--img-size", type=img_size, help="input size (default: the student's)")
    p.add_argument("--frames", type=positive_int, default=400,
                   help="frames drawn from each FOOTAGE (default 400)")
    p.add_argument("--split", help="split of a dataset YAML in --data (default: train)")
    p.add_argument("--holdout", type=fraction, default=0.2,
                   help="fraction of the frames held out to validate on (default 0.2)")
    p.add_argument("--lr", type=positive_float, default=5e-4,
                   help="AdamW learning rate, cosine schedule (default 0.0005)")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="validate and save a weight average with this decay (default 0: off)")
    p.add_argument("--jitter", type=float, metavar="F",
                   help="crop jitter (default: the student spec's)")
    p.add_argument("--no-hsv", action="store_true", help="no hue/saturation/exposure distortion")
    p.add_argument("--resume", action="store_true",
                   help="continue the run of --out exactly (the other options are its own)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--workers", type=nonnegative_int, help="data loader processes")
    p.add_argument("--amp", choices=("auto", "on", "off"), default="auto",
                   help="mixed precision, as for detector train")
    p.add_argument("--save-every", type=nonnegative_int, default=0,
                   help="also save the training state every N steps (default: each epoch)")
    p.add_argument("--seed", type=int, default=0)
    return p


def cmd_distill(args) -> int:
    from .distill import DistillOptions, distill
    if not args.resume:
        for flag in ("teacher", "student", "data"):
            if not getattr(args, flag):
                raise UserError(f"--{flag} is required (unless --resume)")
    row = distill(DistillOptions(
        out=args.out, teacher=args.teacher, teacher_cfg=args.teacher_cfg,
        student=args.student, student_cfg=args.student_cfg, data=args.data,
        epochs=args.epochs, batch=args.batch, img_size=args.img_size, frames=args.frames,
        split=args.split, holdout=args.holdout, lr=args.lr, ema=args.ema, jitter=args.jitter,
        hsv=not args.no_hsv, device=args.device, workers=args.workers, amp=args.amp,
        save_every=args.save_every, seed=args.seed, resume=args.resume))
    best = row.get("best_agreement")
    print(f"done: {args.out} (best agreement on the held-out footage "
          f"{'-' if best is None else f'{best:.4f}'})")
    return 0


def add_compare(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="agreement of model B with model A on any footage, "
                                       "without labels",
                       description="A's detections with score >= --conf are the ground truth; "
                       "B's detections are scored against them: all-point mAP@0.5 "
                       "(the agreement), mean IoU of matched boxes, per class.")
    p.add_argument("a", metavar="A", help="the reference model (weights as --weights takes)")
    p.add_argument("b", metavar="B", help="the model to check (e.g. A converted)")
    p.add_argument("--data", nargs="+", required=True, metavar="FOOTAGE",
                   help="a dataset YAML, a folder or glob of images, a video file, or a "
                        "camera/stream URI; several may follow")
    p.add_argument("--cfg-a", help="darknet .cfg for a .weights A")
    p.add_argument("--cfg-b", help="darknet .cfg for a .weights B")
    p.add_argument("--names", help="class names file (default: from the checkpoints)")
    p.add_argument("--frames", type=positive_int, default=200,
                   help="frames drawn from each FOOTAGE (default 200)")
    p.add_argument("--split", help="split of a dataset YAML in --data (default: train)")
    p.add_argument("--conf", type=fraction, default=0.25,
                   help="A's score threshold for its boxes to count (default 0.25)")
    add_backend_args(p)
    p.add_argument("--json", help="write the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    return p


def cmd_compare(args) -> int:
    from .eval.compare import compare_files
    res = compare_files(args.a, args.b, args.data, cfg_a=args.cfg_a, cfg_b=args.cfg_b,
                        names=args.names, frames=args.frames, split=args.split,
                        img_size=args.img_size, backend=args.backend, device=args.device,
                        conf=args.conf, progress=not args.quiet)
    print(res.line() if args.quiet else res.table())
    if args.json:
        res.write_json(args.json)
        print(f"wrote {args.json}")
    return 0


# ---- bench -----------------------------------------------------------------------------

def bench_cases_help() -> str:
    """The case table for ``detector bench --help``, one case a line."""
    from .bench import CASES
    lines = ["cases (--backends; peers are marked):"]
    for name, case in CASES.items():
        when = {"opt-in": " [opt-in]", "gpu": " [GPU]"}.get(case.when, "")
        lines.append(f"  {name:<16}{'peer  ' if case.peer else '      '}{case.about}{when}")
    lines += ["[opt-in]: only when named (ort-int8 also with --int8)",
              "[GPU]: in the default run where an NVIDIA GPU is present"]
    return "\n".join(lines)


def add_bench(sub) -> argparse.ArgumentParser:
    from .bench import DEFAULT_MODELS
    p = sub.add_parser("bench", help="benchmark our backends and per-frame path against "
                                     "OpenCV-DNN and bare ONNX Runtime (one run, interleaved)",
                       description="Times every case (a model at a size, run one way) in one "
                       "process, in interleaved\nrounds; speed-ups are medians of per-round "
                       "ratios. Progress goes to stderr, the table\nto stdout.",
                       epilog=bench_cases_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", action="extend", metavar="M",
                   help="zoo names or spec YAMLs (default: " + " ".join(DEFAULT_MODELS) + ")")
    p.add_argument("--img-size", nargs="+", action="extend", type=img_size, metavar="N",
                   help="input sizes (default: 416)")
    p.add_argument("--backends", nargs="+", action="extend", metavar="B",
                   help="cases to run, from the table below (default: every case that is "
                        "neither opt-in nor GPU-only, and the GPU ones where there is a GPU)")
    p.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--warmup", type=positive_int, default=2,
                   help="untimed calls per case before the rounds (default 2)")
    p.add_argument("--layers", action="store_true",
                   help="per-layer breakdown (ORT profiler, 1x1 Conv and GEMM forms; the "
                        "kernel engine's per-op times for the cuda cases)")
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
    return p


def cmd_bench(args) -> int:
    from .bench import DEFAULT_MODELS, BenchOptions, bench
    argv = sys.argv[2:] if len(sys.argv) > 1 else []
    bench(BenchOptions(models=args.model or DEFAULT_MODELS, sizes=args.img_size or [416],
                       backends=args.backends, rounds=args.rounds, warmup=args.warmup,
                       layers=args.layers, int8=args.int8, tune=not args.no_tune,
                       threads=args.threads, startup=args.startup, json_out=args.json,
                       command=" ".join(["detector bench", *argv])))
    return 0


# ---- main ------------------------------------------------------------------------------

COMMANDS = ((add_detect, cmd_detect), (add_train, cmd_train), (add_eval, cmd_eval),
            (add_export, cmd_export), (add_convert, cmd_convert), (add_bench, cmd_bench),
            (add_synth, cmd_synth), (add_anchors, cmd_anchors))
COMMANDS += ((add_distill, cmd_distill),)
COMMANDS += ((add_compare, cmd_compare),)


def build_parser() -> Parser:
    parser = Parser(prog="detector", description="FastDSC-YOLO: real-time YOLOv2 with FastDSC "
                                                 "depthwise-separable convolutions")
    parser.add_argument("--version", action="version", version=f"fastdsc-yolo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add, run in COMMANDS:
        add(sub).set_defaults(func=run)
    return parser


# Parameters of the library whose flag is not ``--`` + the name with dashes.
FLAGS = {"source": "SOURCE", "out_dir": "OUT", "outputs": "--out", "flip": "--input-flip",
         "width": "--input-width", "height": "--input-height", "rate": "--input-rate",
         "fmt": "--format", "models": "--model", "sizes": "--img-size", "json_out": "--json"}


def flag_for(param: str) -> str:
    """The command-line spelling of a library parameter named in a ParamError."""
    return FLAGS.get(param) or "--" + param.replace("_", "-")


def _out_of_memory(e: BaseException) -> Optional[str]:
    """What failed to allocate (numpy's MemoryError, torch's and ORT's RuntimeErrors), or
    None for any other error."""
    text = " ".join(str(e).split())
    for s in ("failed to allocate memory", "can't allocate memory", "out of memory"):
        at = text.lower().find(s)
        if at >= 0:
            return text[at:at + 120]
    if isinstance(e, MemoryError):
        return (text or "MemoryError")[:120]
    return None


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args) or 0
    except UserError as e:
        text = e.render(flag_for(e.param)) if isinstance(e, ParamError) else str(e)
        msg = " ".join(text.split())
        print(f"error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:
        why = _out_of_memory(e)
        if why is None:
            raise
        print(f"error: out of memory ({why}); a smaller --img-size or --batch, or a smaller "
              "model, needs less", file=sys.stderr)
        return 2
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
