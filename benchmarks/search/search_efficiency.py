"""Do TPE and NSGA-II beat random search on cheap objectives, and by how much?

Objectives (both cheap, so hundreds of trials take seconds):
- predicted latency from the shipped torch-cpu table (minimise);
- an analytic capacity score standing in for quality (maximise):
  log10(params) + 0.3 log2(1 + self-attention layers) + 0.3 log2(1 + cross-attention layers).
  It is not image quality; it rewards what costs latency, so the two objectives conflict
  the way a real search's do.

Hypervolume is computed against one reference point for every run (the worst latency and
capacity over all runs, 10% further out), at equal trial budgets, median over seeds.

    .venv/bin/python -m benchmarks.search.search_efficiency --trials 150 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import math
import statistics

import numpy as np
import optuna

from archlab import LatencyTable, Predictor, count, load_space
from archlab.results.pareto import hypervolume

optuna.logging.set_verbosity(optuna.logging.ERROR)


def capacity(desc) -> float:
    c = count(desc)
    return math.log10(c.params) + 0.3 * math.log2(1 + c.self_attention) + 0.3 * math.log2(1 + c.cross_attention)


def run(kind: str, seed: int, trials: int, space, predictor, label) -> np.ndarray:
    sampler = {"random": optuna.samplers.RandomSampler(seed=seed),
               "tpe": optuna.samplers.TPESampler(seed=seed, multivariate=True),
               "nsga2": optuna.samplers.NSGAIISampler(seed=seed, population_size=20)}[kind]
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)

    def objective(trial):
        _, desc = space.suggest(trial)
        return predictor.score(desc).latency_ms[label], capacity(desc)

    study.optimize(objective, n_trials=trials)
    return np.array([t.values for t in study.trials])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--table", default="x86-2core_torch-cpu")
    p.add_argument("--space", default="mobilediffusion")
    p.add_argument("--trials", type=int, default=150)
    p.add_argument("--seeds", type=int, default=5)
    a = p.parse_args()
    table = LatencyTable.load(a.table)
    space, predictor = load_space(a.space), Predictor([table])
    runs = {k: [run(k, s, a.trials, space, predictor, table.label) for s in range(a.seeds)] for k in ("random", "tpe", "nsga2")}
    allv = np.concatenate([r for rs in runs.values() for r in rs])
    ref = np.array([allv[:, 0].max() * 1.1, -(allv[:, 1].min() - 0.1 * abs(allv[:, 1].min()))])
    result = {"space": a.space, "table": a.table, "trials": a.trials, "seeds": a.seeds,
              "reference_point": {"latency_ms": float(ref[0]), "capacity": float(-ref[1])}}
    for kind, rs in runs.items():
        hvs = [hypervolume(np.c_[r[:, 0], -r[:, 1]], ref) for r in rs]
        result[kind] = {"hypervolume_median": statistics.median(hvs), "hypervolumes": hvs}
    base = result["random"]["hypervolume_median"]
    for kind in ("tpe", "nsga2"):
        result[kind]["vs_random"] = result[kind]["hypervolume_median"] / base
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
