#!/usr/bin/env bash
# The quality reference's unfinished runs on a lent GPU, several at once, inside one call.
#
#   bash benchmarks/quality/gpu_reference.sh OUT SECONDS [PARALLEL] [-- EXTRA REFERENCE ARGS]
#
# Starts from the committed results (benchmarks/results/quality_reference/), runs every
# unfinished (architecture, seed) run as its own process, PARALLEL at a time (default 8, two
# CPU threads each), all in float32, and stops them SECONDS after it began. It writes
# OUT/quality_reference.json (the committed file plus every run that reached its last step)
# with its manifest, and OUT/runs.log. A run cut off by the time limit is left out whole: its
# checkpoint stays on the lent machine, so the next call starts it again. Copy the results
# file over the committed one, commit, and call again until --todo prints nothing.
#
# The lent machine's python has torch but not optuna: carry its wheels in .whl (once, here:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl optuna==5.1.0 colorlog==6.12.0 alembic==1.20.1 Mako==1.4.3 SQLAlchemy==2.1.9
# and name .whl in the call's carry). A run on the CPU needs none of this: see quality_reference.py.
set -uo pipefail
out=${1:?OUT folder}; budget=${2:?seconds}; parallel=${3:-8}
shift $(( $# < 3 ? $# : 3 )); [ "${1:-}" = "--" ] && shift
extra=("$@")
deadline=$((SECONDS + budget))
mkdir -p "$out"
log="$out/runs.log"
python=${PYTHON:-python3}
if ! "$python" -c "import optuna" 2>/dev/null; then
    compgen -G ".whl/*.whl" >/dev/null || { echo "error: $python lacks optuna and .whl holds no wheels: see this script's head"; exit 2; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
work=${WORK:-/tmp/quality_reference}
committed=benchmarks/results/quality_reference/quality_reference.json
ref=("$python" -m benchmarks.quality.quality_reference --work "$work" "${extra[@]}")

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi";
  "$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } | tee -a "$log"
"${ref[@]}" --seed-from "$committed" --todo > "$work.todo" || exit 2
echo "== $(wc -l < "$work.todo") unfinished runs, $parallel at a time, $budget s" | tee -a "$log"

run_one() {  # ARCH SEED: one run under the time left, its lines prefixed by its name
    local left=$((deadline - SECONDS))
    [ "$left" -lt 30 ] && { echo "$1 s$2: no time left"; return 0; }
    timeout "$left" "${ref[@]}" --only "$1" --seeds "$2" --threads 2 --out "$work/parts/$1_s$2.json" 2>&1 | sed "s/^/$1 s$2 | /"
}
while read -r arch seed; do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
    run_one "$arch" "$seed" >> "$log" &
done < "$work.todo"
wait
"${ref[@]}" --collect --out "$out/quality_reference.json" >> "$log" 2>&1 || exit 2
echo "== left: $("${ref[@]}" --todo | wc -l) unfinished runs" | tee -a "$log"
