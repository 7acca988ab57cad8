#!/usr/bin/env bash
# The standard FastDSC-YOLOv2 recipe on PASCAL VOC (for users with a GPU; it cannot run in
# our CI, which has neither VOC nor darknet's weights):
#
#   1. darknet's pretrained yolov2-voc (regular 3x3 convs) -> FastDSC without training:
#      Depth-wise Decomposition fitted on a few hundred VOC training images;
#   2. fine-tune the converted model on VOC 2007+2012 trainval: 40 epochs from a pretrained
#      detector are a long fine-tune, for which `detector train` chooses darknet's recipe
#      (SGD, burn-in and steps, batch 64, multi-scale; the run prints its choice);
#   3. evaluate on VOC2007 test (VOC07 11-point mAP, all-point mAP, COCO mAP).
#
#   scripts/download_voc.sh data/          # once: data/VOCdevkit for data/voc.yaml
#   scripts/train_voc.sh [RUN_DIR]         # RUN_DIR defaults to runs/voc-fastdsc
#
# Environment (all optional):
#   DARKNET_CFG / DARKNET_WEIGHTS  darknet yolov2-voc files (default: weights/yolov2-voc.*,
#                                  downloaded from pjreddie.com when missing)
#   EPOCHS (default 40)  BATCH (the recipe's: 64)  ACCUMULATE (1; raise it when a batch
#   does not fit)
#   ENERGY (0.95, singular-value energy kept per layer)  CALIB_IMAGES (300)
#   DEVICE (auto)  NPROC (1; >1 runs torchrun with that many GPUs)
# Re-running resumes: an existing conversion is reused and training continues (--resume).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="${1:-runs/voc-fastdsc}"
data="$here/data/voc.yaml"
cfg="${DARKNET_CFG:-$here/weights/yolov2-voc.cfg}"
weights="${DARKNET_WEIGHTS:-$here/weights/yolov2-voc.weights}"
epochs="${EPOCHS:-40}"
batch=()
if [ -n "${BATCH:-}" ]; then batch=(--batch "$BATCH"); fi
accumulate="${ACCUMULATE:-1}"
energy="${ENERGY:-0.95}"
calib="${CALIB_IMAGES:-300}"
device="${DEVICE:-auto}"
nproc="${NPROC:-1}"

if [ ! -d "$here/data/VOCdevkit/VOC2007/JPEGImages" ]; then
  echo "error: $here/data/VOCdevkit is missing; run scripts/download_voc.sh data/ first" >&2
  exit 2
fi

fetch() {
  if command -v curl >/dev/null 2>&1; then curl -fL --retry 3 -o "$2" "$1"
  else wget -O "$2" "$1"; fi
}
if [ ! -s "$cfg" ]; then
  mkdir -p "$(dirname "$cfg")"
  fetch https://raw.githubusercontent.com/pjreddie/darknet/master/cfg/yolov2-voc.cfg "$cfg"
fi
if [ ! -s "$weights" ]; then
  mkdir -p "$(dirname "$weights")"
  fetch https://pjreddie.com/media/files/yolov2-voc.weights "$weights.part"
  mv "$weights.part" "$weights"
fi

mkdir -p "$run"
converted="$run/converted-dd.safetensors"
if [ ! -s "$converted" ]; then
  python -m detector convert --weights "$weights" --cfg "$cfg" --method dd \
    --energy "$energy" --calib "$data" --calib-images "$calib" \
    --out "$converted" --report "$run/convert-report.json"
fi

train=(python -m detector train)
if [ "$nproc" -gt 1 ]; then
  train=(torchrun --standalone --nproc-per-node "$nproc" -m detector train)
fi
if [ -s "$run/train/last.pt" ]; then
  "${train[@]}" --out "$run/train" --data "$data" --resume
else
  "${train[@]}" --model yolov2-voc-fastdsc --weights "$converted" --data "$data" \
    --out "$run/train" --epochs "$epochs" "${batch[@]}" --accumulate "$accumulate" \
    --device "$device"
fi

python -m detector eval --weights "$run/train/best.safetensors" --data "$data" --split val \
  --json "$run/eval.json" --save-dets "$run/dets" --plots "$run/plots"
echo "done: $run/eval.json"
