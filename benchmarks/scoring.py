"""How fast candidates are scored (params + FLOPs + predicted latency) without a module,
against building the module and against counting FLOPs with fvcore.

    .venv/bin/python benchmarks/scoring.py --table latency_tables/x86-2core_torch-cpu.csv

Prints one JSON object; the figures in benchmarks/README.md come from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from archlab import build
from archlab.cost.fvcore_count import model_flops
from archlab.cost.scoring import Scorer
from archlab.cost.table import LatencyTable
from archlab.search.space import load_space


def rate(fn, items, rounds: int = 5) -> float:
    """Median items per second over ``rounds`` passes."""
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        rates.append(len(items) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", required=True)
    parser.add_argument("--space", default="mobilediffusion")
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=3, help="candidates for the module-building and fvcore baselines")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    space = load_space(args.space)
    table = LatencyTable.read(args.table)
    rng = np.random.default_rng(args.seed)
    choices = [space.pick(lambda n, o: o[int(rng.integers(len(o)))]) for _ in range(args.candidates)]
    descs = [space.decode(c) for c in choices]
    scorer = Scorer(table)
    scorer.score(descs[0])
    score_rate = rate(scorer.score, descs)
    decode_and_score_rate = rate(lambda c: scorer.score(space.decode(c)), choices, rounds=3)
    slow = descs[: args.slow]
    build_s = [0.0] * len(slow)
    fvcore_s = [0.0] * len(slow)
    for i, d in enumerate(slow):
        start = time.perf_counter()
        model = build(d)
        build_s[i] = time.perf_counter() - start
        del model
        start = time.perf_counter()
        model_flops(d)
        fvcore_s[i] = time.perf_counter() - start
    result = {
        "space": args.space, "table": args.table, "candidates": args.candidates, "threads": 2,
        "score_per_s": round(score_rate), "decode_and_score_per_s": round(decode_and_score_rate),
        "build_module_s_per_candidate": round(statistics.median(build_s), 3),
        "fvcore_s_per_candidate": round(statistics.median(fvcore_s), 3),
        "speedup_vs_build": round(score_rate * statistics.median(build_s)),
        "speedup_vs_fvcore": round(score_rate * statistics.median(fvcore_s)),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
