#!/usr/bin/env bash
# The noise-aware search's real confirmation on a lent GPU, one slice per call:
#
#   bash benchmarks/search/gpu_confirm.sh OUT SECONDS [EXTRA ARGS]
#
# Continues from the committed progress (benchmarks/results/noise_aware/confirm_real_state: the
# studies' journals and the reference measurements), runs the confirmation on CUDA (float32, as on
# the CPU) and stops it SECONDS after it began. A study trial or reference run cut off by the limit
# is done again by the next call. It copies the progress to OUT/confirm_real_state (copy its files
# over the committed folder and commit) and, once the confirmation has finished, its result and
# manifest to OUT (copy them into benchmarks/results/noise_aware). Call again until OUT holds
# confirm_real.json. OUT/confirm.log is the run's output. EXTRA ARGS go to the confirmation last
# (`--quick --device cpu` tries the script anywhere, touching no committed file).
#
# On the lent machine, benchmarks/device_env.sh says what to carry (optuna's wheels in .whl).
set -uo pipefail
out=${1:?OUT folder}; budget=${2:?seconds}; shift 2
mkdir -p "$out"
source benchmarks/device_env.sh
results=benchmarks/results/noise_aware
"$python" -c "import benchmarks.search.noise_aware_confirm" > "$out/confirm.log" 2>&1 \
    || { echo "error: the confirmation cannot be imported here:"; tail -n 5 "$out/confirm.log"; exit 2; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$out/confirm.log"
timeout "$budget" "$python" -m benchmarks.search.noise_aware_confirm --budget 24 --device cuda --threads 2 \
    --work "${WORK:-/tmp/archlab_confirm}" --out "$results/confirm_real.json" "$@" >> "$out/confirm.log" 2>&1
rc=$?
pkill -f "benchmarks.quality.quality_reference" 2>/dev/null  # the reference seeds the time limit cut off
mkdir -p "$out/confirm_real_state"
cp "$results/confirm_real_state/"* "$out/confirm_real_state/" 2>/dev/null
[ "$rc" = 0 ] && [ -f "$results/confirm_real.json" ] && cp "$results/confirm_real.json" "$results/manifest.json" "$out/"
tail -n 5 "$out/confirm.log"
echo "== rc $rc ($([ "$rc" = 124 ] && echo "time limit: call again" || echo "finished or failed"))"
exit "$rc"
