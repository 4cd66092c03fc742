"""Time the same whole models in several fresh runtime instances, one after another, to see
whether the host has fast and slow modes that last longer than one timing.

A validation takes a model's time as the fastest of its passes, each pass a fresh instance
(``prepare``) timed ``repeats`` times. If the host has slow spells longer than one instance's
timing, every repeat of that instance is slow alike, and a model both of whose passes fall in
one is measured slow; more passes make that less likely. This shows the modes directly:
each round prepares every named model again and keeps its fastest repeat.

    .venv/bin/python -m benchmarks.latency.instance_modes --backend litert --timings out/unseen-joint-litert-2/litert.timings.json \
        --rounds 8 unseen-s2-13 unseen-s2-2 unseen-s2-20 unseen-s2-4 --out benchmarks/results/instance_modes/instance_modes_litert.json

Models are named as in a ``table validate`` / ``latency_unseen_space.py`` timings file, which
holds their descriptions. Run it with nothing else on the CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from archlab.cost.backends import get_backend
from archlab.tables import ModelTimings, time_model
from benchmarks.common import write_result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+", help="model names in the timings file")
    p.add_argument("--timings", type=Path, required=True, help="a validation's timings file (holds the descriptions)")
    p.add_argument("--backend", default="litert")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="timed runs per instance, as a validation pass")
    p.add_argument("--rounds", type=int, default=8, help="fresh instances per model")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    stored = ModelTimings.stored(json.loads(a.timings.read_text()))
    descs = [stored.description(name) for name in a.models]
    mins: dict[str, list[float]] = {name: [] for name in a.models}
    with tempfile.TemporaryDirectory() as work:  # converted once, reused by every round
        backend = get_backend(a.backend, threads=a.threads, warmup=1, repeats=a.repeats, cold=False, workdir=work)
        for _ in range(a.rounds):
            for d in descs:
                mins[d.name].append(round(time_model(backend, d, batch=1, repeats=a.repeats).min_ms, 3))
        backend.close()
    rows = []
    for name, values in mins.items():
        v = np.array(values)
        fastest = v.min()
        slow = v > fastest * 1.05  # 5%: well above one instance's own repeat-to-repeat spread
        rows.append({"name": name, "instance_min_ms": values, "slow_instances": int(slow.sum()),
                     "slow_over_fast": round(float(v[slow].mean() / v[~slow].mean()), 4) if slow.any() else None,
                     "stored_passes_ms": [r["min_ms"] for r in stored.passes(stored.description(name))]})
        print(f"{name}: {values}  slow (>5% over the fastest): {int(slow.sum())}/{len(v)}"
              + (f", {rows[-1]['slow_over_fast']:.3f}x the fast ones" if slow.any() else ""))
    if a.out is not None:
        write_result(a.out, {"backend": a.backend, "rounds": a.rounds, "repeats": a.repeats, "models": rows})


if __name__ == "__main__":
    main()
