#!/usr/bin/env bash
# Train the codec on a lent GPU (the `device` tool), from a packed corpus (scripts/pack_corpus.py).
# Runs under the GPU image's own python3/torch; missing packages come as wheels in .whl/.
# A 50-step probe measures the step time so the cosine schedule ends when the time does.
#   env: PACK (corpus dir), OUT (output dir), MINUTES (training wall time), BATCH, DEVICE,
#        CONFIG (codec config, default hybrid), EXTRA (more train flags; default: the pitch
#        losses and a val pitch figure every 250 steps, logged beside the checkpoint)
# The hybrid codec's encoder is fixed signal processing: copy realmusic/ (scripts/real_music.py)
# into the pack too, so the codec hears real recordings, not only FluidSynth.
set -euo pipefail
PACK=${PACK:-.gpu/pack}
OUT=${OUT:-/tmp/out}
MINUTES=${MINUTES:-7}
BATCH=${BATCH:-32}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-hybrid}
EXTRA=${EXTRA:---peak-weight 1 --logfreq-weight 1 --eval-every 250}
PY=${PY:-python3}
if [ -d .whl ] && [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
$PY -c "import torch, vector_quantize_pytorch, pedalboard, librosa; print('torch', torch.__version__)"
mkdir -p "$OUT"
$PY -c "from model.train.audio_data import load_split; load_split('$PACK')"   # decode once into the cache
probe="$OUT/probe.safetensors"; rm -f "$probe"
if [ -n "${STEPS:-}" ]; then steps=$STEPS; else
t1=$(date +%s.%N)
$PY -m bridge.cli train codec --corpus "$PACK" --config "$CONFIG" --out "$probe" --device "$DEVICE" --bf16 --batch-size "$BATCH" --steps 40 --warmup 10 --checkpoint-every 1000 --json > "$OUT/probe.json"
t2=$(date +%s.%N)
# The probe's time includes start-up, so this undercounts a little: the schedule ends just early.
steps=$($PY -c "import sys; per=(float(sys.argv[2])-float(sys.argv[1]))/40; print(max(100, int(float(sys.argv[3])*60/per)))" "$t1" "$t2" "$MINUTES")
echo "probe: $(cat "$OUT/probe.json")"; fi
echo "training $steps steps"
rm -f "$probe"
# shellcheck disable=SC2086  # EXTRA is a list of flags
$PY -m bridge.cli train codec --corpus "$PACK" --config "$CONFIG" --out "$OUT/codec-gpu.safetensors" --device "$DEVICE" --bf16 \
  --batch-size "$BATCH" --steps "$steps" --warmup 500 --lr 1e-3 --checkpoint-every 2000 --max-minutes "$MINUTES" $EXTRA --json 2>&1 | tail -n 5
$PY -m bridge.cli export codec "$OUT/codec-gpu.safetensors" --out "$OUT/codec-gpu-fp16.safetensors" \
  --recipe "GPU: scripts/gpu_train_codec.sh, batch $BATCH, $steps steps, ${MINUTES} min, pack $PACK" --json
rm -f "$OUT/codec-gpu.safetensors" "$OUT/probe.safetensors"
