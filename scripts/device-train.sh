#!/usr/bin/env bash
# The training run on a lent H200: one command for the `device` tool, dry-run tested on the CPU
# by tests/test_recipe.py. Prepare here once (the pruned text encoder, 22 MB, is carried):
#   .venv/bin/python -m tenku.train.device pack-text --out .device/minilm-world
# then call the device tool's run with
#   command: bash scripts/device-train.sh 450s     carry: [".device"]     timeout_s: 600
# It writes the model folder into $OUT/model at every transformer checkpoint, and train.log,
# summary.json and loss.png beside it after every phase (8 files: what the tool brings back).
# Usage: scripts/device-train.sh [BUDGET=450s] [RECIPE=world-m] [DEVICE=cuda]
# On CUDA it first prints bench/train_throughput.py (at most 100 s), then trains for BUDGET.
# SHARES=0,0.1,0.9 keeps the shipped VAE (when it is the recipe's) and trains the transformer.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-450s}
recipe=${2:-world-m}
device=${3:-cuda}
results=${OUT:?OUT must name the folder that comes back (the device tool sets it)}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ "$device" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total --format=csv || true
    # throughput and MFU of both models' training steps, fp32 vs bf16 (into the output tail)
    timeout 100 "$python" bench/train_throughput.py --device cuda --dit world-s --vae world-m \
        --batch 32 --steps 5 || echo "bench/train_throughput.py failed; training anyway"
fi
exec "$python" -m tenku.train.device run --budget "$budget" --recipe "$recipe" \
    --device "$device" --out "${RUN_DIR:-/tmp/tenku-run}" --results "$results" \
    --text-encoder "${TEXT_ENCODER:-.device/minilm-world}" --shares "${SHARES:-}"
