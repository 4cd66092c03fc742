#!/usr/bin/env bash
# The quality benchmark's unfinished runs on a lent GPU, several at once, inside one call.
#
#   bash benchmarks/quality/gpu_quality.sh WHAT OUT SECONDS [PARALLEL] [-- EXTRA ARGS]
#
# WHAT is `reference` (benchmarks/quality/quality_reference.py) or proxy designs, comma-separated
# (`default,px32,teacher`: benchmarks/quality/proxy_designs.py). Starts from the committed
# results, runs every unfinished (architecture, seed) run as its own process, PARALLEL at a
# time (default 8, two CPU threads each), all in float32, and stops them SECONDS after it
# began; a design's shared teacher or supernet is trained first, once. It writes OUT/
# quality_reference.json or OUT/proxy_designs.json (the committed file plus every run that
# finished) with its manifest, and OUT/runs.log. A run cut off by the time limit is left out
# whole: its checkpoint stays on the lent machine, so the next call starts it again. Copy the
# results file over the committed one, commit, and call again until nothing is left.
#
# A proxy design's CPU-minutes per candidate come from its runs on the CPU only: each run
# records its device and the analysis leaves the GPU's out of the cost.
#
# On the lent machine, benchmarks/device_env.sh says what to carry (optuna's wheels in .whl).
set -uo pipefail
what=${1:?reference or designs}; out=${2:?OUT folder}; budget=${3:?seconds}; parallel=${4:-8}
shift $(( $# < 4 ? $# : 4 )); [ "${1:-}" = "--" ] && shift
extra=("$@")
deadline=$((SECONDS + budget))
mkdir -p "$out"
log="$out/runs.log"
source benchmarks/device_env.sh
work=${WORK:-/tmp/archlab_quality}
results=benchmarks/results
reference=("$python" -m benchmarks.quality.quality_reference --work "$work/reference")
designs=("$python" -m benchmarks.quality.proxy_designs --reference "$work/reference" --work "$work/designs")

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee -a "$log"

left() { echo $((deadline - SECONDS)); }
run_one() {  # LABEL COMMAND...: one process under the time left, its lines prefixed by LABEL
    local label=$1; shift
    [ "$(left)" -lt 30 ] && { echo "$label: no time left"; return 0; }
    timeout "$(left)" "$@" 2>&1 | sed "s/^/$label | /"
}
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done; }

"${reference[@]}" --seed-from "$results/quality_reference/quality_reference.json" --todo > "$work.todo.reference" || exit 2
# a smoke run first (10 steps, 32 items, its own folder): a device that cannot run the code fails here in seconds
first=$(head -n 1 "$work.todo.reference" | cut -d' ' -f1); first=${first:-ref-mobilediffusion}
"$python" -m benchmarks.quality.quality_reference --work "$work/smoke" --seed-from "$results/quality_reference/quality_reference.json" \
    "${extra[@]}" --only "$first" --seeds 100 --steps 10 --items 32 --out "$work/smoke.json" > "$work.smoke.log" 2>&1 \
    || { echo "== smoke run failed:"; tail -n 30 "$work.smoke.log"; } | tee -a "$log"
[ -s "$work/smoke.json" ] || exit 2
echo "== smoke run: $(tail -n 1 "$work.smoke.log")" | tee -a "$log"
if [ "$what" = reference ]; then
    echo "== reference: $(wc -l < "$work.todo.reference") unfinished runs, $parallel at a time, $budget s" | tee -a "$log"
    while read -r arch seed; do
        throttle
        run_one "$arch s$seed" "${reference[@]}" "${extra[@]}" --only "$arch" --seeds "$seed" --threads 2 \
            --out "$work/parts/$arch-s$seed.json" >> "$log" &
    done < "$work.todo.reference"
    wait
    "${reference[@]}" "${extra[@]}" --collect --out "$out/quality_reference.json" >> "$log" 2>&1 || exit 2
    echo "== reference: $("${reference[@]}" "${extra[@]}" --todo | wc -l) unfinished runs left" | tee -a "$log"
    exit 0
fi

IFS=, read -ra names <<< "$what"
first=1
for d in "${names[@]}"; do  # restore from the committed file once; then each design's shared model, all at once
    seed_from=(); [ $first = 1 ] && seed_from=(--seed-from "$results/proxy_designs/proxy_designs.json"); first=0
    "${designs[@]}" --design "$d" "${seed_from[@]}" --todo > "$work.todo.$d" || exit 2
    case "$d" in teacher|supernet) run_one "$d prepare" "${designs[@]}" --design "$d" "${extra[@]}" --threads 4 --prepare-only >> "$log" & ;; esac
done
wait
for d in "${names[@]}"; do
    echo "== $d: $(wc -l < "$work.todo.$d") unfinished runs, $parallel at a time, $(left) s left" | tee -a "$log"
    while read -r arch seed; do
        throttle
        run_one "$d $arch s$seed" "${designs[@]}" --design "$d" "${extra[@]}" --only "$arch" --seeds "$seed" --threads 2 \
            --out "$work/parts/$d-$arch-s$seed.json" >> "$log" &
    done < "$work.todo.$d"
done
wait
"${designs[@]}" --design "${names[0]}" --collect --out "$out/proxy_designs.json" >> "$log" 2>&1 || exit 2
for d in "${names[@]}"; do echo "== $d: $("${designs[@]}" --design "$d" --todo | wc -l) unfinished runs left" | tee -a "$log"; done
