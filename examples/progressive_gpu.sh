#!/usr/bin/env bash
# pro-VLAE against VLAE and the beta-VAE on dSprites with the paper's networks, on one CUDA device, in
# under 10 minutes: examples/progressive_vlae.py --experiments flow compare at the paper's widths,
# batch and learning rate (32 channels, 256 hidden units, batch 128, lr 5e-4), SEEDS seeds (default 5)
# of the three models as one process per run side by side on the device (WORKERS, default 15), each
# growing over three stages of STEPS_PER_LEVEL iterations (default 5,000: 1.92M images per run, twice
# the longest CPU schedule on docs/progressive_results; the paper's 172,800 per stage does not fit).
# The training command runs under a 510 s limit; runs are saved as they finish, so the tables and the
# information-flow figure are then remade from whatever finished. Everything goes to $OUT (default
# ./progressive_gpu_out): results.json, information_flow.png, summary.md and the log.
#
#   bash examples/progressive_gpu.sh                         # on a CUDA machine
#   bash examples/progressive_gpu.sh --allow-cpu             # smoke test of the script on a CPU
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/progressive_gpu_out}"
PYTHON="${PYTHON:-python}"
SEEDS="${SEEDS:-5}"
WORKERS="${WORKERS:-15}"
STEPS_PER_LEVEL="${STEPS_PER_LEVEL:-5000}"
FADE_IN_STEPS="${FADE_IN_STEPS:-1500}"
LIMIT_S="${LIMIT_S:-510}"
mkdir -p "$OUT"

FLAGS=(--experiments flow compare --threads 1 --out "$OUT")
if [ "$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')" = "1" ]; then
  FLAGS+=(--device cuda --channels 32 --hidden-dim 256 --batch-size 128 --lr 5e-4 --seeds "$SEEDS"
          --steps-per-level "$STEPS_PER_LEVEL" --fade-in-steps "$FADE_IN_STEPS" --workers "$WORKERS")
elif [ "${1:-}" = "--allow-cpu" ]; then
  FLAGS+=(--device cpu --preset smoke --seeds 1 --workers 1)
else
  echo "progressive_gpu.sh: no CUDA device; run it on a CUDA machine (or --allow-cpu for a smoke test)"; exit 0
fi

status=0
timeout --kill-after=10 "$LIMIT_S" "$PYTHON" examples/progressive_vlae.py "${FLAGS[@]}" > "$OUT/train.log" 2>&1 \
  || status=$?
if [ ! -f "$OUT/results.json" ]; then
  echo "progressive_gpu.sh: no run finished (exit status $status); see $OUT/train.log"; tail -n 20 "$OUT/train.log"
  exit 1
fi
"$PYTHON" examples/progressive_vlae.py --from-json "$OUT/results.json" --out "$OUT" | tee "$OUT/summary.md"
echo "progressive_gpu.sh: training exit status $status (0: every run finished; 124: the limit stopped it)"
exit "$status"
