#!/usr/bin/env bash
# Build and validate a torch-cuda latency table in one GPU lease, resumably.
#
#   bash benchmarks/latency/gpu_table.sh STATE SECONDS
#   SOURCES="snapgen preset:snapgen" SPACE=snapgen bash benchmarks/latency/gpu_table.sh STATE SECONDS
#
# STATE is a folder holding what earlier runs finished (the table, stored validation
# timings); every step resumes from it and writes back into it, so a run cut off at its
# time limit loses only the block or model in progress. SECONDS bounds the whole run.
# Steps, each skipped once done: build (blocks of the same sources as the CPU tables,
# 8 calibration models, seed 0), validation on 30 random models (seed 31), another 30
# (seed 41) for a pooled 60, and 30 where the table and FLOPs disagree most (seed 51).
# SOURCES: what the table covers (default: the CPU tables' sources); SPACE: the space the
# validation models come from (default: the table's first). benchmarks/device_env.sh says
# what the lent machine needs carried.
set -uo pipefail
sources=(${SOURCES:-mobilediffusion preset:sd15 preset:snapfusion preset:mobilediffusion preset:mobilediffusion-lite})
space=(); [ -n "${SPACE:-}" ] && space=(--space "$SPACE")
source benchmarks/device_env.sh
state=${1:?state folder}; budget=${2:?seconds}
deadline=$((SECONDS + budget))
mkdir -p "$state"
table="$state/gpu_torch-cuda.csv"
archlab=("$python" -m archlab.cli)

left() { echo $((deadline - SECONDS)); }
step() {  # step NAME DONE-FILE COMMAND...: run COMMAND under the time left unless DONE-FILE exists
    local name=$1 done=$2; shift 2
    if [ -e "$done" ]; then echo "== $name: done before"; return 0; fi
    if [ "$(left)" -lt 20 ]; then echo "== $name: no time left"; return 1; fi
    echo "== $name ($(left) s left)"
    local t0=$SECONDS
    timeout "$(left)" "$@"; local rc=$?
    echo "== $name: rc $rc, $((SECONDS - t0)) s"
    return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv || true
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"

step build "$state/build.done" "${archlab[@]}" table build "${sources[@]}" --backend torch-cuda --out "$table" --calibrate 8 \
    --calibration-seed 0 --no-progress && touch "$state/build.done" || exit 0
for seed in 31 41; do
    step "validate seed $seed" "$state/validate_$seed.json" "${archlab[@]}" table validate "$table" "${space[@]}" --samples 30 \
        --seed "$seed" --json --out "$state/validate_$seed.json" --no-progress || exit 0
done
step "validate disagreement seed 51" "$state/validate_disagreement_51.json" "${archlab[@]}" table validate "$table" \
    "${space[@]}" --samples 30 --seed 51 --pick disagreement --json --out "$state/validate_disagreement_51.json" --no-progress || exit 0
echo "== all steps done"
