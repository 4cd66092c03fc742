"""Blocks timed in whole sweeps or 12 at a time: which table agrees with itself and with whole models?

`archlab table build` times every block in 2 passes. Before 2026-11-24 both passes ran over
12 blocks at a time, seconds apart, so a slow spell of a shared machine could land in both
of a block's passes; now each pass is a sweep over every block (another order each time),
so a block's two passes lie minutes apart. This benchmark compares the two in one run on a
quiet machine, on the small space of benchmarks/latency/latency_unseen_space.py:

1. ``--builds`` tables per protocol, built alternately (grouped, swept, grouped, ...) so both
   see the same hours of the machine;
2. ``--samples`` whole models timed twice, interleaved (as ``archlab table validate``);
3. per protocol: build-to-build agreement (for each pair of its builds, the RMS relative
   difference of the block sums of those models once the median ratio is divided out: the
   table's own noise as a prediction sees it; a uniformly slower build is the overhead fit's
   to absorb) and held-out accuracy (block_timing_choice.py's rounds: fit on 8 spread models
   from a pool of 20, predict the other 10, the same pools for every table).

Everything is stored in ``--work`` as measured; rerun to resume.

    .venv/bin/python -m benchmarks.latency.block_sweeps --builds 3 --out benchmarks/results/block_sweeps/block_sweeps.json   # ~7 min
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from archlab.cost.backends import get_backend
from archlab.cost.predict import count
from archlab.tables import (
    ModelTimings,
    fit_points,
    measure_blocks,
    open_for_build,
    sample_table_models,
)
from archlab.tables.sources import source_specs
from benchmarks.common import write_result
from benchmarks.latency.block_timing_choice import held_out_rounds
from benchmarks.latency.latency_unseen_space import SPACE, write_space

PROTOCOLS = {"grouped": 12, "swept": None}  # keys per pass group (None: every block)


def build_to_build(sums: list[np.ndarray]) -> list[float]:
    """RMS relative difference of two builds' block sums over the same models, median ratio divided out, per pair."""
    out = []
    for x, y in itertools.combinations(sums, 2):
        r = x / y
        out.append(float(np.sqrt(np.mean((r / np.median(r) - 1) ** 2))))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--backend", default="torch-cpu")
    p.add_argument("--builds", type=int, default=3, help="tables per protocol")
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--seed", type=int, default=1, help="which whole models are timed")
    p.add_argument("--rounds", type=int, default=500)
    p.add_argument("--work", type=Path, default=Path("out/block_sweeps"))
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args()
    space_file, _ = write_space(a.work)
    specs, _, _ = source_specs([str(space_file)])
    tables: dict[str, list] = {name: [] for name in PROTOCOLS}
    minutes: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
    for build in range(a.builds):
        for name, group in PROTOCOLS.items():
            backend = get_backend(a.backend, threads=2, warmup=2, repeats=8, workdir=a.work / f"{name}-{build + 1}.work")
            table = open_for_build(str(a.work / f"{name}-{build + 1}.csv"), backend, dtype="float32", batch=1,
                                   extra={"text_tokens": SPACE["base"]["text_tokens"], "sources": [str(space_file)]})
            start = time.perf_counter()
            if measure_blocks(table, backend, specs, group=group):
                minutes[name].append(round((time.perf_counter() - start) / 60, 2))
            tables[name].append(table)
            backend.close()
    descs = sample_table_models(tables["swept"][0], n=a.samples, seed=a.seed)
    validator = get_backend(a.backend, threads=2, warmup=1, repeats=3, workdir=a.work / "models.work")
    timings = ModelTimings(a.work / "models.timings.json", validator, descs, batch=1)
    timings.run(passes=2, repeats=3, seed=a.seed, label="whole models")
    validator.close()
    truths = [timings.truth(d, "min") for d in descs]
    params = np.array([count(d).params for d in descs], float)
    points = {f"{name}-{i + 1}": fit_points(t, descs, truths) for name in PROTOCOLS for i, t in enumerate(tables[name])}
    rounds = held_out_rounds(points, truths, params, rounds=a.rounds, pool=20, models=8)
    retest = [timings.passes(d)[0]["min_ms"] / timings.passes(d)[1]["min_ms"] - 1 for d in descs]
    result = {"backend": a.backend, "space": SPACE["name"], "distinct_blocks": len(specs), "models": len(descs),
              "retest_rmspe": float(np.sqrt(np.mean(np.square(retest)))), "build_minutes": minutes, "protocols": {}}
    for name in PROTOCOLS:
        sums = [np.array([sum(fp.kind_sums) for fp in points[f"{name}-{i + 1}"]]) for i in range(a.builds)]
        pairs = build_to_build(sums)
        held = [rounds[f"{name}-{i + 1}"] for i in range(a.builds)]
        result["protocols"][name] = {
            "keys_per_group": PROTOCOLS[name] or len(specs),
            "build_to_build_rms": pairs, "build_to_build_rms_mean": float(np.mean(pairs)),
            "held_out_rmspe": [h["rmspe"] for h in held], "held_out_within_5": [h["within_5"] for h in held],
            "held_out_within_10": [h["within_10"] for h in held], "held_out_spearman": [h["spearman"] for h in held],
            "held_out_rmspe_mean": float(np.mean([h["rmspe"] for h in held])),
        }
    result["held_out"] = rounds
    print(json.dumps({k: v for k, v in result.items() if k != "held_out"}, indent=1))
    if a.out is not None:
        write_result(a.out, result)


if __name__ == "__main__":
    main()
