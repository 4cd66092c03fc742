"""How fast candidates are scored (params + FLOPs + predicted latency) without a module,
through the one predictor studies use, against building the module and counting FLOPs
with fvcore, all in one run.

    .venv/bin/python -m benchmarks.latency.scoring --table x86-2core_torch-cpu --candidates 5000 --rounds 7

Rates are medians over ``--rounds`` passes over the same candidates; the first pass over a
fresh predictor (cold caches) is reported apart. Prints one JSON object; the figures in
benchmarks/README.md come from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from archlab import LatencyTable, Predictor, build, load_space


def _oracle():
    """The tests' fvcore oracle (tests/fvcore_count.py), loaded by path: it is not part of the package."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fvcore_count", Path(__file__).resolve().parents[2] / "tests" / "fvcore_count.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rates(fn, items, rounds: int) -> list[float]:
    """Items per second, one figure per pass."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        for item in items:
            fn(item)
        out.append(len(items) / (time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--table", default="x86-2core_torch-cpu", help="a table file or a shipped table's name")
    parser.add_argument("--space", default="mobilediffusion")
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--slow", type=int, default=2, help="candidates for the module-building and fvcore baselines")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    space = load_space(args.space)
    table = LatencyTable.load(args.table)
    rng = np.random.default_rng(args.seed)
    choices = [space.pick(lambda n, o: o[int(rng.integers(len(o)))]) for _ in range(args.candidates)]
    descs = [space.decode(c) for c in choices]

    cold = Predictor([table])
    cold_rate = rates(cold.score, descs, 1)[0]  # every placed stage seen for the first time
    score = rates(cold.score, descs, args.rounds)
    decode_score = rates(lambda c: cold.score(space.decode(c)), choices, args.rounds)
    decode = rates(space.decode, choices, args.rounds)
    slow = descs[: args.slow]
    build_s, fvcore_s = [], []
    for d in slow:
        start = time.perf_counter()
        model = build(d)
        build_s.append(time.perf_counter() - start)
        del model
        start = time.perf_counter()
        _oracle().model_flops(d)
        fvcore_s.append(time.perf_counter() - start)
    med = statistics.median
    result = {
        "space": args.space, "table": table.name, "candidates": args.candidates, "rounds": args.rounds, "threads": 2,
        "score_per_s": round(med(score)), "score_per_s_range": [round(min(score)), round(max(score))],
        "score_per_s_cold": round(cold_rate),
        "decode_and_score_per_s": round(med(decode_score)), "decode_and_score_per_s_range": [round(min(decode_score)), round(max(decode_score))],
        "decode_per_s": round(med(decode)),
        "build_module_s_per_candidate": round(med(build_s), 3), "fvcore_s_per_candidate": round(med(fvcore_s), 3),
        "speedup_vs_build": round(med(score) * med(build_s)), "speedup_vs_fvcore": round(med(score) * med(fvcore_s)),
        "goals": {"score_per_s >= 50000": med(score) >= 50_000, "decode_and_score_per_s >= 10000": med(decode_score) >= 10_000},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
