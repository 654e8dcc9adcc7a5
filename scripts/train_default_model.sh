#!/usr/bin/env bash
# Trains the bundled default model (MambaIRv2-Light x4) on one CUDA GPU, the way the shipped
# weights were made: the shared training images (T91 + BSD200), Set5 validation,
# default_light_x4_gpu with the overrides below, in sessions of at most
# MINUTES minutes each (run the script again to continue: it resumes).
#
#   bash scripts/train_default_model.sh TRAIN_DIR [VAL_DIR] [ITERS] [MINUTES]
#
# TRAIN_DIR holds the T91 and BSD200 folders; the run goes to runs/default_light_x4.
set -euo pipefail
TRAIN=${1:?usage: train_default_model.sh TRAIN_DIR [VAL_DIR] [ITERS] [MINUTES]}
VAL=${2:-../shared/data/sr/Set5/HR}
ITERS=${3:-4000}
MINUTES=${4:-0}
RESUME=()
if ls runs/default_light_x4/training_states/*.state >/dev/null 2>&1; then RESUME=(--resume auto); fi
python3 -m mambairv2 train default_light_x4_gpu \
  --set "data.train_root=[$TRAIN/T91, $TRAIN/BSD200]" --set "val.root=$VAL" \
  --set train.iters="$ITERS" --set train.lr=5e-4 --set train.warmup_iters=200 \
  --set train.max_minutes="$MINUTES" --set val.every=500 --set train.log_every=50 \
  --set output_dir=runs/default_light_x4 "${RESUME[@]}"
