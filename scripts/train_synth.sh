#!/usr/bin/env bash
# The CPU training benchmark, reproducibly: yolov2-tiny-voc-fastdsc from random weights on
# the synthetic VOC-format set, within 15 minutes on a 2-core CPU, then VOC07 mAP on its val
# split (the recipe and its curve: docs/performance.md, "Training").
#
#   scripts/train_synth.sh [RUN_DIR]        # RUN_DIR defaults to runs/synth-tiny
#
# The recipe is the one `detector train` chooses for a short run from scratch (AdamW, cosine,
# weight average, batch 8 on a CPU, fixed size, jitter 0.1, no colour distortion, fitted
# anchors, truths on anchors over IoU 0.5); the script gives only data, model, sizes and the
# time budget.
#
# Environment (all optional):
#   DATA_DIR (data/synth-bench in the repository: made once with `detector synth` when missing)
#   TRAIN_IMAGES (4000)  SEED (0)  MINUTES (15)  EVAL_SIZE (352)  PYTHON (python)
#   EPOCHS (unset; when set, that many epochs instead of MINUTES)
# The val split does not depend on TRAIN_IMAGES: every image draws from its own seeded RNG,
# so the 200 val images are those of `detector synth`'s default 800/200 set.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run="${1:-runs/synth-tiny}"
data_dir="${DATA_DIR:-$here/data/synth-bench}"
train_images="${TRAIN_IMAGES:-4000}"
seed="${SEED:-0}"
minutes="${MINUTES:-15}"
length=(--time "$minutes")
if [ -n "${EPOCHS:-}" ]; then length=(--epochs "$EPOCHS"); fi
eval_size="${EVAL_SIZE:-352}"
py="${PYTHON:-python}"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"

if [ ! -s "$data_dir/data.yaml" ]; then
  "$py" -m detector synth "$data_dir" --train "$train_images" --val 200 --size 256 --seed 0
fi
if [ -s "$run/last.pt" ]; then
  "$py" -m detector train --data "$data_dir/data.yaml" --out "$run" --resume
else
  "$py" -m detector train --model yolov2-tiny-voc-fastdsc --data "$data_dir/data.yaml" \
    --out "$run" --img-size 320 --val-size "$eval_size" "${length[@]}" --seed "$seed"
fi
"$py" -m detector eval --weights "$run/best.safetensors" --data "$data_dir/data.yaml" \
  --json "$run/eval.json"
echo "done: $run/eval.json (curve: $run/metrics.csv)"
