#!/usr/bin/env bash
# Prepared device-tool run for a lent GPU (the device tool's `run`, from the repo root):
#   bash benchmarks/gpu_train.sh [MINUTES]
# Resumes runs/gpu (carry it: carry=["runs/gpu"]) or starts it, trains on CUDA for MINUTES (default 8),
# and puts model.pt, model_card.json, log.jsonl and checkpoint.pt under $OUT to bring back.
# The device image's own python3/torch are used; the training data travels as a copy under shared/
# (copy ../shared/datasets/train into an ignored folder named in carry, or point DATA at it).
# INIT=models/hvpzip-small.pt starts a new run from the shipped weights (the context architecture);
# BLOCKS (default 6) above the source's adds residual blocks that start as the identity.
# The recipe is the shipped model's last run: 9 context groups, direct term sampled 3/4 of the time,
# cosine learning-rate decay to 5e-5 at ITERS (default 4000); DEVICE (default cuda) lets the script be
# tried on a CPU.
set -euo pipefail
MINUTES=${1:-8}
DATA=${DATA:-shared/datasets/train}
OUT=${OUT:-/tmp/hvpzip-out}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m pip install -q --no-deps --no-index pywavelets constriction 2>/dev/null || true
python3 -m hvpzip train --data "$DATA" --out runs/gpu --device "${DEVICE:-cuda}" --batch 64 --crop 128 \
    --width 48 --blocks "${BLOCKS:-6}" --steps 4 --seed 0 --context-groups 9 ${INIT:+--init-from "$INIT"} \
    --minutes "$MINUTES" \
    --direct-share 0.75 --lr 0.001 --lr-final 0.00005 --iters "${ITERS:-4000}" --eval-every 500 2>&1 | tail -n 40
cp runs/gpu/model.pt runs/gpu/model_card.json runs/gpu/log.jsonl runs/gpu/checkpoint.pt "$OUT"/
