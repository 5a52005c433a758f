#!/usr/bin/env bash
# Prepared device-tool runs for a lent GPU (the device tool's `run`, from the repo root).
# The training photos travel packed, one part per call, since a call carries at most 64 MiB:
#   python benchmarks/pack_training_data.py ../shared/datasets/train .gpudata --keep models/MODEL_CARD.json --parts 3
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl pywavelets==1.9.0 constriction==0.5.0
# (.gpudata and .whl, the wheels the device's Python 3.12 lacks, ignored in .git/info/exclude).
# Each call merges the parts it carries into $DATA, which a warm machine keeps:
#   STAGE=smoke bash benchmarks/gpu_train.sh   carry [".gpudata/part1", ".whl"]: a 1-minute timing run
#   STAGE=stage bash benchmarks/gpu_train.sh   carry [".gpudata/part2"]
#   ITERS=N bash benchmarks/gpu_train.sh MINUTES   carry [".gpudata/part3"]: trains into $OUT/gpu
# An H200 ran 4.7 iterations/s (8 blocks, batch 128): the defaults, 2500 iterations within 9 minutes,
# fit one 10-minute call after the two staging calls in 15 device minutes.
# The run starts from INIT (default the shipped model) grown to BLOCKS (default 8; added blocks start as
# the identity), with the shipped model's recipe (9 context groups, direct term 3/4 of the time, cosine
# decay to 2e-5 at ITERS) at BATCH 128 crops of 128 px prepared by WORKERS processes; DEVICE (default
# cuda) lets the script be tried on a CPU.
set -euo pipefail
MINUTES=${1:-9}
STAGE=${STAGE:-train}
DATA=${DATA:-/tmp/hvpzip-train}
OUT=${OUT:-/tmp/hvpzip-out}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:/tmp/site
mkdir -p "$DATA"
for part in .gpudata/part*; do
    if [ -d "$part" ]; then cp -r "$part"/. "$DATA"/; fi
done
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
echo "$(find "$DATA" -type f | wc -l) training files in $DATA"
python3 -c "import torch, pywt, constriction; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if [ "$STAGE" = stage ]; then exit 0; fi
RUN=$OUT/gpu
if [ "$STAGE" = smoke ]; then RUN=/tmp/hvpzip-smoke; MINUTES=1; rm -rf "$RUN"; fi
python3 -m hvpzip train --data "$DATA" --out "$RUN" --device "${DEVICE:-cuda}" --batch "${BATCH:-128}" --crop 128 \
    --blocks "${BLOCKS:-8}" --steps 4 --seed 0 --context-groups 9 --init-from "${INIT:-models/hvpzip-small.pt}" \
    --minutes "$MINUTES" --workers "${WORKERS:-12}" --direct-share 0.75 --lr "${LR:-0.0006}" --lr-final 0.00002 \
    --iters "${ITERS:-2500}" --eval-every "${EVAL_EVERY:-500}" 2>&1 | { grep -v '"loss_bpsp"' || true; }
python3 - "$RUN/log.jsonl" <<'PY'
import json, sys
log = [json.loads(line) for line in open(sys.argv[1])]
(a, b) = (log[min(19, len(log) - 1)], log[-1])
print(f"{b['iteration']} iterations in {b['seconds']:.0f} s; "
      f"{(b['iteration'] - a['iteration']) / max(1e-9, b['seconds'] - a['seconds']):.2f} it/s after the first 20")
print([{k: round(v, 4) for k, v in r.items()} for r in log if "val_direct_bpsp" in r])
PY
