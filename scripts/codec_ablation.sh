#!/usr/bin/env bash
# Short codec ablations in equal wall time, scored the same way (issue: a codec that keeps
# the notes). Each variant trains for MINUTES on the same corpus and seed, logging val pitch
# figures every EVAL_EVERY steps (<out>.val.jsonl), then `eval codec` scores it on the
# held-out real recordings (scripts/real_music.py). Results land in $RUNS/ablation-*.
#
#   RUNS=/work/runs CORPUS=/work/corpus REAL=/work/realmusic MINUTES=15 \
#     bash scripts/codec_ablation.sh pitch-losses:pitch:1:1 tiny-plain:tiny:0:0
# A variant is NAME:CONFIG:PEAK_WEIGHT:LOGFREQ_WEIGHT. Runs one at a time (2 cores). CORPUS may
# name several directories (space-separated); val crops come from the first.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-/work/runs}; CORPUS=${CORPUS:-/work/corpus}; REAL=${REAL:-/work/realmusic}
MINUTES=${MINUTES:-15}; EVAL_EVERY=${EVAL_EVERY:-250}; JAM=${JAM:-.venv/bin/jamstream}
mkdir -p "$RUNS"
for variant in "$@"; do
  IFS=: read -r name config peak logfreq <<< "$variant"
  out="$RUNS/ablation-$name.safetensors"
  resume=(); [ -f "$out" ] && resume=(--resume)
  echo "== $name: config $config, peak $peak, logfreq $logfreq, $MINUTES min"
  OMP_WAIT_POLICY=PASSIVE $JAM train codec --corpus $CORPUS --config "$config" --out "$out" \
    --steps 100000 --max-minutes "$MINUTES" --checkpoint-every 500 --eval-every "$EVAL_EVERY" \
    --peak-weight "$peak" --logfreq-weight "$logfreq" --threads 2 --json "${resume[@]}" > "$RUNS/ablation-$name.train.json"
  $JAM eval codec "$REAL" --checkpoint "$out" --levels 16,32 --threads 2 --json > "$RUNS/ablation-$name.real.json"
  python3 - "$RUNS/ablation-$name" <<'PY' || echo "(summary failed; see $RUNS/ablation-$name.*)"
import json, sys
base = sys.argv[1]
train = json.load(open(base + ".train.json"))
val = [json.loads(line) for line in open(base + ".val.jsonl")]
real = json.load(open(base + ".real.json"))["mean"]["16"]
print(f"{base}: {train['step']} steps; val chroma by step {[(v['step'], round(v['val_chroma'], 3)) for v in val]}; "
      f"real 16 levels chroma {real['chroma_corr']:.3f} DAC mel {real['dac_mel']:.3f} cqt {real['cqt_distance']:.3f}")
PY
  true
done
