#!/usr/bin/env bash
# CPU fine-tuning stages of the bundled default model (MambaIRv2-Light x4): continues given
# weights on T91 + BSD200 with 4 × 32² LR patches, a cosine schedule (30 warm-up steps, down to
# 1e-5), EMA 0.998 and Set5 validation every 300 steps. The shipped weights came from
#
#   stage 2: bash scripts/finetune_default_model_cpu.sh stage1.safetensors runs/default_cpu_ft 1800 5e-4 62
#   stage 3: bash scripts/finetune_default_model_cpu.sh stage2.safetensors runs/default_cpu_ft3 3200 4e-4 88
#
# where stage1.safetensors is the GPU run of scripts/train_default_model.sh (as shipped in commit
# 55e4d3b: git show 55e4d3b:src/mambairv2/weights/light_x4.safetensors > stage1.safetensors) and
# stage2.safetensors the result of stage 2 (shipped in commit 560b6d6), each converted with
#
#   mambairv2 convert OUTPUT_DIR/models/net_g_latest.pth stageN.safetensors
#
# Stage 3 was started with 3600 steps and resumed at step 100 with --set train.iters=3200 (the
# cosine's length) to fit the session: the first 100 learning rates differ by < 0.03%.
#
#   bash scripts/finetune_default_model_cpu.sh INIT_WEIGHTS OUTPUT_DIR ITERS PEAK_LR MAX_MINUTES [TRAIN_DIR]
set -euo pipefail
INIT=${1:?usage: finetune_default_model_cpu.sh INIT_WEIGHTS OUTPUT_DIR ITERS PEAK_LR MAX_MINUTES [TRAIN_DIR]}
OUT=${2:?output directory missing}
ITERS=${3:?number of steps missing}
LR=${4:?peak learning rate missing}
MINUTES=${5:?time limit (minutes) missing}
TRAIN=${6:-../shared/data/train}
python3 -m mambairv2 train default_light_x4_gpu --set device=cpu \
  --set model.init_from="$INIT" --set "data.train_root=[$TRAIN/T91, $TRAIN/BSD200]" \
  --set data.patch_size=32 --set data.batch_size=4 --set data.num_workers=1 \
  --set train.iters="$ITERS" --set train.lr="$LR" --set train.warmup_iters=30 --set train.eta_min=1e-5 \
  --set train.max_minutes="$MINUTES" --set val.every=300 --set train.log_every=20 --set train.save_every=100 \
  --set train.ema_decay=0.998 --set output_dir="$OUT"
