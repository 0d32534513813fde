#!/usr/bin/env bash
# The HFVAE paper's Table 3 models with its convolutional networks on one CUDA device, in under
# 10 minutes: examples/hfvae_dsprites.py --preset paper (conv nets, batch 512) for the four models,
# seed 0, one process per model side by side on the device, each for STEPS steps (default 6,000:
# 3.07M images, the budget of the CPU runs on docs/dsprites_results, so that the two architectures
# compare at equal images), then the summary and the curves. Everything goes to $OUT (default
# ./dsprites_gpu_out): the run directories, the result files, curves.png and summary.md.
#
#   bash examples/dsprites_gpu.sh                 # on a CUDA machine
#   STEPS=4 bash examples/dsprites_gpu.sh --allow-cpu   # smoke test of the script on a CPU
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/dsprites_gpu_out}"
STEPS="${STEPS:-6000}"
PYTHON="${PYTHON:-python}"
mkdir -p "$OUT"

DEVICE=cuda
FLAGS=(--preset paper --steps "$STEPS" --seeds 0 --runs-dir "$OUT/runs" --results "$OUT/results")
if [ "$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')" != "1" ]; then
  if [ "${1:-}" != "--allow-cpu" ]; then
    echo "dsprites_gpu.sh: no CUDA device; run it on a CUDA machine (or --allow-cpu for a smoke test)"; exit 0
  fi
  DEVICE=cpu
  FLAGS+=(--batch-size 8 --eval-every 2 --final-metrics tiny --dci forest --eval-preset none --threads 1)
fi

pids=()
for model in vae beta-vae beta-tcvae hfvae; do
  timeout --kill-after=10 540 "$PYTHON" examples/hfvae_dsprites.py "${FLAGS[@]}" --device "$DEVICE" \
    --models "$model" > "$OUT/$model.log" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
"$PYTHON" examples/hfvae_dsprites.py --summary --figure --results "$OUT/results" | tee "$OUT/summary.md"
echo "dsprites_gpu.sh: exit status of the slowest failing model: $status (0: all four finished)"
exit "$status"
